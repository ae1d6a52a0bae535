"""The compose topology without Docker: a UI-style backfill through GraphQL on Postgres."""

import time
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.defs.checks import QUALITY
from btc_assets_tests.deployment_harness import deployment, fresh_database, run_backfill

CORE = [
    "binance_spot_klines_1m",
    "binance_perp_klines_1m",
    "binance_funding_rate",
    "spot_klines_15m",
    "perp_klines_15m",
]
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.mark.slow
def test_graphql_backfill_on_postgres(tmp_path: Path) -> None:
    with fresh_database() as url, deployment(tmp_path, url) as live:
        assert live.query("{ version }")["version"] == "1.13.27"
        began = time.monotonic()
        backfill = run_backfill(live, CORE, DAYS)
        elapsed = time.monotonic() - began
        print(f"\n3-day GraphQL backfill on Postgres: {elapsed:.1f} s end to end")
        assert backfill["status"] == "COMPLETED_SUCCESS", backfill
        assert backfill["numPartitions"] == 3
        # single_run backfill policy: the whole range is one run.
        assert len(backfill["runs"]) == 1 and backfill["runs"][0]["status"] == "SUCCESS"

        instance = dg.DagsterInstance.from_config(str(live.home))
        try:
            assert "Postgres" in type(instance.event_log_storage).__name__
            for name in CORE:
                key = dg.AssetKey(name)
                assert set(instance.get_materialized_partitions(key)) == set(DAYS), name
                infos = instance.event_log_storage.get_asset_check_partition_info(
                    [dg.AssetCheckKey(key, QUALITY)], partition_keys=DAYS
                )
                statuses = {i.partition_key: i.latest_execution_status.value for i in infos}
                assert statuses == dict.fromkeys(DAYS, "SUCCEEDED"), (name, statuses)
        finally:
            instance.dispose()
