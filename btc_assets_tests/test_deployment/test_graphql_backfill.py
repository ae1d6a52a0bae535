"""The compose topology without Docker: a UI-style backfill through GraphQL on Postgres."""

import time
from collections import defaultdict

import dagster as dg
import pytest

from btc_assets.defs.checks import QUALITY
from btc_assets_tests.deployment_harness import Deployment, run_backfill

CORE = [
    "binance_spot_klines_1m",
    "binance_perp_klines_1m",
    "binance_funding_rate",
    "spot_klines_15m",
    "perp_klines_15m",
]
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.mark.slow
def test_graphql_backfill_on_postgres(live: Deployment) -> None:
    assert live.query("{ version }")["version"] == "1.13.27"
    began = time.monotonic()
    backfill = run_backfill(live, CORE, DAYS)
    elapsed = time.monotonic() - began
    print(f"\n3-day GraphQL backfill on Postgres: {elapsed:.1f} s end to end")
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["numPartitions"] == 3
    # single_run backfill policy: the whole range is one run.
    (run,) = backfill["runs"]
    assert run["status"] == "SUCCESS"

    with live.instance() as instance:
        assert "Postgres" in type(instance.event_log_storage).__name__
        materialized: dict[str, set[str | None]] = defaultdict(set)
        records = instance.get_records_for_run(
            run["runId"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        for record in records:
            assert record.asset_key is not None
            materialized[record.asset_key.to_user_string()].add(record.partition_key)
        assert materialized == {name: set(DAYS) for name in CORE}
        for name in CORE:
            key = dg.AssetKey(name)
            infos = instance.event_log_storage.get_asset_check_partition_info(
                [dg.AssetCheckKey(key, QUALITY)], partition_keys=DAYS
            )
            statuses = {i.partition_key: i.latest_execution_status.value for i in infos}
            assert statuses == dict.fromkeys(DAYS, "SUCCEEDED"), (name, statuses)
