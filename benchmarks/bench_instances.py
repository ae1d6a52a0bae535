"""Dagster's per-run overhead on sqlite vs Postgres, with and without event batching.

A 30-day single-run backfill of the Binance slice (raw 1m + funding + 15m bars) on each
instance kind, each in its own process with its own lake and DAGSTER_HOME; plus the 3-day
backfill launched through GraphQL on the full deployment (code server, daemon, webserver).

    .venv/bin/python benchmarks/bench_instances.py [--days 30] [--skip-graphql]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from btc_assets_tests.deployment_harness import (  # noqa: E402
    deployment,
    fresh_database,
    run_backfill,
    write_instance,
)

SLICE = [
    "binance_spot_klines_1m",
    "binance_perp_klines_1m",
    "binance_funding_rate",
    "spot_klines_15m",
    "perp_klines_15m",
]


def child(days: int) -> None:
    """Runs inside a fresh process: one single-run backfill, prints its timing as JSON."""
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore")
    from btc_assets.defs.definitions import all_assets, defs

    first = date(2024, 1, 1)
    last = first + timedelta(days=days - 1)
    instance = dg.DagsterInstance.get()
    assets = [a for a in all_assets if a.partitions_def is not None]
    began = time.perf_counter()
    result = dg.materialize(
        assets,
        instance=instance,
        resources=defs.resources,
        selection=SLICE,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )
    wall = time.perf_counter() - began
    events = len(instance.all_logs(result.run_id))
    print(json.dumps({"wall": wall, "success": result.success, "events": events}))


def variant(days: int, postgres_url: str | None, batch: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        write_instance(home, postgres_url)
        env = {**os.environ, "DAGSTER_HOME": str(home), "BTC_ASSETS_DATA_DIR": f"{tmp}/data",
               "BTC_ASSETS_ENV": "sandbox"}  # fmt: skip
        env.pop("DAGSTER_EVENT_BATCH_SIZE", None)
        if batch:
            env["DAGSTER_EVENT_BATCH_SIZE"] = batch
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--days", str(days)],
            env=env, capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"benchmark child failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--skip-graphql", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.days)
        return 0
    print(f"{args.days}-day single-run backfill of the Binance slice ({len(SLICE)} assets), "
          "in-process, fresh lake each:")  # fmt: skip
    for storage in ("sqlite", "postgres"):
        for batch in (None, "200"):
            if storage == "postgres":
                with fresh_database() as url:
                    figures = variant(args.days, url, batch)
            else:
                figures = variant(args.days, None, batch)
            label = f"{storage}, DAGSTER_EVENT_BATCH_SIZE={batch or 'unset'}"
            print(
                f"  {label:<44} {figures['wall']:7.1f} s  ({figures['events']} events, "
                f"{1000 * figures['wall'] / (args.days * len(SLICE)):.0f} ms per asset-day)"
            )
    if not args.skip_graphql:
        with (
            tempfile.TemporaryDirectory() as tmp,
            fresh_database() as url,
            deployment(Path(tmp), url) as live,
        ):
            began = time.monotonic()
            backfill = run_backfill(live, SLICE, ["2024-05-01", "2024-05-02", "2024-05-03"])
            print(
                f"3-day backfill through GraphQL on Postgres (launch -> COMPLETED): "
                f"{time.monotonic() - began:.1f} s, status {backfill['status']}, "
                f"{len(backfill['runs'])} run(s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
