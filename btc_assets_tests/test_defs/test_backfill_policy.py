"""Backfills that spread: the daily assets' backfill policy comes from one setting, runs of a
few days build the same lake as one run, and every vendor-calling asset queues on its vendor's
concurrency pool, whose limit the shipped instance sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from btc_assets.defs.definitions import defs
from btc_assets.defs.partitions import DAILY, backfill_policy
from btc_assets.defs.resources import VENDOR_POOLS, vendor_pool
from btc_assets_tests.test_assets.helpers import lake_digest, resources, run_range

ROOT = Path(__file__).resolve().parents[2]
# Observes the present only (the whale watch): a backfill of past days has nothing to fetch.
NO_RANGE_BACKFILL = {"whale_alerts"}
POLICIES = """
import json
from btc_assets.defs.definitions import defs
graph = defs.get_repository_def().assets_defs_by_key
print(json.dumps({k.to_user_string(): [a.partitions_def is not None and
    a.partitions_def.get_serializable_unique_identifier(),
    a.backfill_policy and a.backfill_policy.max_partitions_per_run] for k, a in graph.items()}))
"""


def _policies(days_per_run: str | None) -> dict[str, Any]:
    """The definitions as a code server with BTC_ASSETS_BACKFILL_DAYS_PER_RUN loads them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTC_ASSETS_")}
    if days_per_run is not None:
        env["BTC_ASSETS_BACKFILL_DAYS_PER_RUN"] = days_per_run
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", POLICIES],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(out.stdout)


def _daily(policies: dict[str, Any]) -> dict[str, Any]:
    daily = DAILY.get_serializable_unique_identifier()
    return {k: v[1] for k, v in policies.items() if v[0] == daily and k not in NO_RANGE_BACKFILL}


def test_the_policy_follows_the_setting() -> None:
    assert backfill_policy(None) == dg.BackfillPolicy.single_run()
    assert backfill_policy(0) == dg.BackfillPolicy.single_run()
    assert backfill_policy(15) == dg.BackfillPolicy.multi_run(15)


def test_unset_is_one_run_and_15_is_runs_of_15_days_on_every_daily_asset() -> None:
    one_run, fifteen = _daily(_policies(None)), _daily(_policies("15"))
    assert len(one_run) >= 30  # the raw feeds, bars, features, signals, forecasting, loads
    assert one_run.keys() == fifteen.keys()
    # single_run() has no cap on partitions per run; multi_run(15) caps them at 15.
    assert set(one_run.values()) == {None}, one_run
    assert set(fifteen.values()) == {15}, fifteen


def _chunks(start: date, days: int, per_run: int) -> list[tuple[str, str]]:
    keys = [(start + timedelta(d)).isoformat() for d in range(days)]
    return [(c[0], c[-1]) for c in (keys[i : i + per_run] for i in range(0, days, per_run))]


# A feature table's look-back (open interest 31 days back) crosses the runs' borders.
SPREAD_SELECTION = dg.AssetSelection.assets("signals").upstream() - dg.AssetSelection.groups(
    "bigquery"
)


def test_runs_of_two_days_build_the_same_lake_as_one_run(tmp_path: Path) -> None:
    """What the backfill daemon launches for multi_run(2): one run per 2-day slice, each
    with its range tags; each asset reads its window from ``partition_time_window``, and
    look-back inputs read the days an earlier run wrote."""
    per_run = dg.BackfillPolicy.multi_run(2).max_partitions_per_run
    assert per_run == 2
    start, days = date(2024, 3, 1), 4
    digests = []
    for name, slices in (("one", _chunks(start, days, days)), ("spread", _chunks(start, days, 2))):
        home = tmp_path / name / "home"
        home.mkdir(parents=True)
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            res = resources(tmp_path / name / "data")
            for first, last in slices:
                result = run_range(instance, res, first, last, SPREAD_SELECTION)  # type: ignore[arg-type]
                assert result.success
            partitions = instance.get_materialized_partitions(dg.AssetKey("signals"))
        assert partitions == {(start + timedelta(d)).isoformat() for d in range(days)}
        lake = tmp_path / name / "data" / "lake"
        digests.append({k: v for k, v in lake_digest(lake).items() if k.endswith(".parquet")})
    assert len(_chunks(start, days, 2)) == 2
    assert digests[0] and digests[0] == digests[1]


def test_every_vendor_calling_asset_queues_on_its_vendors_pool() -> None:
    """Derived from the resources each asset requires: a new vendor asset without its pool
    (or a pool on an asset that calls no vendor) fails here, naming it."""
    vendor_assets = 0
    for key, asset in defs.get_repository_def().assets_defs_by_key.items():
        vendors = set(asset.required_resource_keys) & VENDOR_POOLS.keys()
        pools = {asset.op.pool} - {None}
        if not vendors:
            assert not pools, f"{key.to_user_string()} calls no vendor but holds {pools}"
            continue
        vendor_assets += 1
        assert pools == {vendor_pool(vendors)}, f"{key.to_user_string()}: {pools}"
        assert pools <= {VENDOR_POOLS[v] for v in vendors}
    assert vendor_assets >= 20


def _shipped_concurrency(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["concurrency"]


@pytest.mark.parametrize("path", [ROOT / "dagster.yaml", ROOT / "docker" / "dagster.yaml"])
def test_the_shipped_instances_run_two_backfill_runs_and_one_step_per_vendor(path: Path) -> None:
    concurrency = _shipped_concurrency(path)
    with dg.instance_for_test(overrides={"concurrency": concurrency}) as instance:
        config = instance.get_concurrency_config()
        queue = config.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 3
        assert list(queue.tag_concurrency_limits) == [{"key": "dagster/backfill", "limit": 2}]
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity.value == "op"  # type: ignore[union-attr]


def test_a_vendor_step_waits_for_its_pools_slot(tmp_path: Path) -> None:
    """The pool is enforced by the instance: while another run holds vendor_binance's one
    slot, a step in that pool does not start; it starts once the slot is freed."""
    started: list[float] = []

    @dg.asset(pool=vendor_pool({"binance"}))
    def fetches_from_binance() -> None:
        started.append(time.monotonic())

    concurrency = _shipped_concurrency(ROOT / "docker" / "dagster.yaml")
    with dg.instance_for_test(
        overrides={"concurrency": concurrency}, temp_dir=str(tmp_path)
    ) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("vendor_binance")
        assert storage.claim_concurrency_slot("vendor_binance", "other-run", "step").is_claimed
        results: list[dg.ExecuteInProcessResult] = []
        worker = threading.Thread(
            target=lambda: results.append(dg.materialize([fetches_from_binance], instance=instance))
        )
        worker.start()
        time.sleep(3)
        assert started == []  # blocked on the pool for 3 s
        freed = time.monotonic()
        storage.free_concurrency_slots_for_run("other-run")
        worker.join(timeout=60)
        assert results and results[0].success
        assert started and started[0] >= freed
