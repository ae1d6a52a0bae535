"""A 60-day backfill spread over runs of 15 days, on the PostgreSQL deployment: the queue runs
2 at a time, every day ends complete and verified, and the vendors' per-minute budgets hold
across the run processes (counted in PostgreSQL, as on a cluster whose pods share no disk)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from btc_assets.defs.checks import QUALITY
from btc_assets.lake import Lake
from btc_assets_tests.backfill_measures import (
    most_at_once,
    request_rates,
    run_partitions,
    run_spans,
)
from btc_assets_tests.deployment_harness import Deployment, deployment, fresh_database, run_backfill

FIRST = date(2024, 3, 1)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(60)]
# The raw feeds and their same-day bars: no look-back input, so Dagster cuts the range into
# runs of 15 days of all of them (look-back tables come in later runs: README).
RAW = ["binance_spot_klines_1m", "binance_perp_klines_1m", "binance_funding_rate",
       "coinglass_price_ohlc", "coinglass_open_interest", "coinglass_funding",
       "coinglass_taker_volume", "coinglass_liquidations"]  # fmt: skip
BARS = ["spot_klines_15m", "perp_klines_15m"]
# Below what the backfill would ask in its busiest minute unbounded (10 at 30/min), so the
# shared count has to hold it back: every CoinGlass step is its own process.
COINGLASS_PER_MINUTE = 10
SAFETY = 0.9  # WeightBudget's default share of the limit a client allows itself


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str, Path]]:
    root: Path = tmp_path_factory.mktemp("multi_run")
    log = root / "requests.log"
    with fresh_database() as url:
        env = {
            "BTC_ASSETS_BACKFILL_DAYS_PER_RUN": "15",
            "BTC_ASSETS_SANDBOX_REQUEST_LOG": str(log),
            "BTC_ASSETS_RATE_BUDGET_URL": url,
            "COINGLASS_REQUESTS_PER_MINUTE": str(COINGLASS_PER_MINUTE),
        }
        overrides = {"run_monitoring": {"poll_interval_seconds": 2}}
        with deployment(root, url, env=env, instance_overrides=overrides) as live:
            yield live, url, log


@pytest.mark.slow
def test_a_60_day_backfill_runs_as_4_runs_2_at_a_time_within_the_vendor_budgets(
    spread: tuple[Deployment, str, Path],
) -> None:
    live, url, log = spread
    began = time.monotonic()
    backfill = run_backfill(live, RAW + BARS, DAYS, timeout=1500)
    wall = time.monotonic() - began
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    run_ids = [r["runId"] for r in backfill["runs"]]
    assert all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill["runs"]

    with live.instance() as instance:
        # 4 runs of 15 days that cover the range once, at most 2 at once, and 2 at some point.
        covered = sorted(d for run_id in run_ids for d in run_partitions(instance, run_id))
        assert len(run_ids) == 4 and covered == DAYS
        spans = run_spans(instance, run_ids)
        assert most_at_once(spans) == 2
        # Every day of every asset materialized and its blocking quality check passed.
        for name in RAW + BARS:
            key = dg.AssetKey(name)
            infos = instance.event_log_storage.get_asset_check_partition_info(
                [dg.AssetCheckKey(key, QUALITY)], partition_keys=DAYS
            )
            statuses = {i.partition_key: i.latest_execution_status.value for i in infos}
            assert statuses == dict.fromkeys(DAYS, "SUCCEEDED"), (name, statuses)

    lake = Lake(live.data_dir / "lake")
    for name in RAW + BARS:
        symbol = "BTCUSDT"
        read = lake.read_days(name, symbol, [date.fromisoformat(d) for d in DAYS])
        assert (read.errors, read.missing) == ({}, []), name
        assert len(read.committed) == 60

    rates = request_rates(log)
    print(f"\n60-day backfill as {len(run_ids)} runs of <= 15 days: {wall:.0f} s; per host: "
          + "; ".join(f"{r.host} {r.requests} req from {r.processes} processes, busiest "
                      f"minute {r.busiest_minute}" for r in rates.values()))  # fmt: skip
    (coinglass,) = [r for host, r in rates.items() if "coinglass" in host]
    assert coinglass.processes >= 4  # steps of every run called it, each a process of its own
    # What the vendor saw: never more than its limit in a clock minute, though several step
    # processes (of different runs) called it within one minute.
    assert coinglass.busiest_minute <= COINGLASS_PER_MINUTE
    assert coinglass.shared_minutes >= 1
    # The shared count: every request charged, and no window past the clients' cap.
    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name, sum(used), max(used) FROM rate_budget_windows "
                "WHERE name LIKE %s GROUP BY name",
                ("%coinglass%",),
            )
            ((name, charged, most),) = cur.fetchall()
    finally:
        conn.close()
    assert charged == coinglass.requests, name
    assert most <= int(COINGLASS_PER_MINUTE * SAFETY), (name, most)
