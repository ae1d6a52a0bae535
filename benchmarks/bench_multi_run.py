"""A 60-day backfill on the PostgreSQL deployment harness: one run vs runs of 15 days.

The same selection as test_multi_run_backfill.py (the raw feeds and their 15m bars, one
symbol, sandbox vendor), once with BTC_ASSETS_BACKFILL_DAYS_PER_RUN unset (one run for the
range) and once with 15 (4 runs, the queue running 2 at once). Each on its own throwaway
PostgreSQL, code server, daemon and webserver, launched through GraphQL as the UI does.
Prints per mode: wall from launch to the backfill's end, runs, the most running at once, and
per vendor host the requests, the processes that sent them and the busiest clock minute (the
sandbox's request log), beside the CoinGlass budget. Not a test: no assertions.

    .venv/bin/python benchmarks/bench_multi_run.py [--days 60] [--per-run 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from btc_assets_tests.backfill_measures import most_at_once, request_rates, run_spans
from btc_assets_tests.deployment_harness import (
    deployment,
    fresh_database,
    run_backfill,
)
from btc_assets_tests.test_deployment.test_multi_run_backfill import (
    BARS,
    COINGLASS_PER_MINUTE,
    RAW,
    SAFETY,
)


def one_mode(root: Path, days: list[str], per_run: int | None) -> None:
    log = root / "requests.log"
    env = {
        "BTC_ASSETS_SANDBOX_REQUEST_LOG": str(log),
        "COINGLASS_REQUESTS_PER_MINUTE": str(COINGLASS_PER_MINUTE),
    }
    if per_run:
        env["BTC_ASSETS_BACKFILL_DAYS_PER_RUN"] = str(per_run)
    overrides = {"run_monitoring": {"poll_interval_seconds": 2}}
    with fresh_database() as url:
        env["BTC_ASSETS_RATE_BUDGET_URL"] = url
        with deployment(root, url, env=env, instance_overrides=overrides) as live:
            began = time.monotonic()
            backfill = run_backfill(live, RAW + BARS, days, timeout=3600)
            wall = time.monotonic() - began
            run_ids = [r["runId"] for r in backfill["runs"]]
            with live.instance() as instance:
                spans = run_spans(instance, run_ids)
    mode = f"runs of {per_run} days" if per_run else "one run"
    print(f"\n{mode}: {backfill['status']}, wall {wall:.0f} s, {len(run_ids)} run(s), "
          f"at most {most_at_once(spans)} at once")  # fmt: skip
    for rate in request_rates(log).values():
        print(f"  {rate.host:<32} {rate.requests:>5} requests from {rate.processes:>2} "
              f"process(es) over {rate.minutes} minute(s), "
              f"busiest minute {rate.busiest_minute}")  # fmt: skip
    print(f"  (CoinGlass budget: {COINGLASS_PER_MINUTE}/min, clients allow themselves "
          f"{int(COINGLASS_PER_MINUTE * SAFETY)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-run", type=int, default=15)
    args = parser.parse_args()
    first = date(2024, 3, 1)
    days = [(first + timedelta(days=i)).isoformat() for i in range(args.days)]
    print(f"{args.days}-day backfill of {len(RAW + BARS)} assets, BTCUSDT, sandbox vendor")
    with tempfile.TemporaryDirectory(prefix="btc_bench_multi_") as work:
        one_mode(Path(work) / "single", days, None)
        one_mode(Path(work) / "multi", days, args.per_run)


if __name__ == "__main__":
    main()
