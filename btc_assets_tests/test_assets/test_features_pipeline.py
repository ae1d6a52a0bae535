"""CoinGlass feeds -> bars_15m -> gates -> DuckDB and the QA report, in one range run."""

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from btc_assets.assets.common import range_days
from btc_assets.core.tables import FEATURES, Table
from btc_assets.defs.checks import QUALITY, RECONCILIATION
from btc_assets.defs.day_gate import Input, gated_deps, read_gated
from btc_assets.defs.definitions import all_assets
from btc_assets.defs.partitions import DAILY, DAILY_START
from btc_assets.defs.resources import DatasetResource
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import (
    build_catalog,
    evaluations,
    latest_metadata,
    resources,
    run_range,
)

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
COINGLASS = [
    "coinglass_price_ohlc",
    "coinglass_open_interest",
    "coinglass_funding",
    "coinglass_taker_volume",
    "coinglass_aggregated_taker",
    "coinglass_liquidations",
]


def _by_key(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str, str], Any]:
    return {(e.asset_key.path[-1], e.check_name, e.partition): e for e in evaluations(result)}


def test_full_graph_builds_gated_features_catalog_and_report(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path)
    result = run_range(instance, res, DAYS[0], DAYS[-1])
    assert result.success
    lake = Lake(tmp_path / "lake")
    for day in DAYS:
        frame = pl.read_parquet(lake.day_file("bars_15m", "BTCUSDT", date.fromisoformat(day)))
        assert frame.height == 96
        assert frame["close"].null_count() == 0
        assert (frame["funding_source"] == "coinglass_oi_weight").all()
        assert frame.select(pl.col("oi_pctile_30d", "funding_pctile_30d").is_between(0, 1,
                            closed="right").all()).row(0) == (True, True)  # fmt: skip
    checks = _by_key(result)
    assert Counter((k[0], k[1]) for k in checks if k[0] == "bars_15m") == {
        ("bars_15m", QUALITY): 3,
        ("bars_15m", RECONCILIATION): 3,
    }
    for day in DAYS:
        assert checks[("bars_15m", QUALITY, day)].passed
        assert checks[("bars_15m", RECONCILIATION, day)].passed
        for name in COINGLASS:
            assert checks[(name, QUALITY, day)].passed, (name, checks[(name, QUALITY, day)])
    # CoinGlass fetches whole spans: one request per endpoint page, not per day.
    assert latest_metadata(instance, "coinglass_price_ohlc", DAYS[0])["source"] == "vendor"

    assert build_catalog(instance, res, ("duckdb_catalog", "qa_report")).success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM bars_15m").fetchone() == (288,)
    assert con.execute("SELECT count(*) FROM coinglass_open_interest").fetchone() == (288,)
    report = json.loads((tmp_path / "reports" / "p1_qa_core.json").read_text())
    assert report["bars"] == {"expected": 288, "present": 288, "missing": 0, "coverage": 1.0}
    assert report["gates"]["days_passed"] == 3 and report["gates"]["failed_days"] == []
    assert set(report["imputation_ratio"]) == {"funding", "oi"}
    assert (tmp_path / "reports" / "p1_qa_coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _downstream_of_features() -> dg.AssetsDefinition:
    """A daily consumer of bars_15m reading through the gate: blocked days not built."""

    out = Table("features_consumer", FEATURES.schema, "15m", "test consumer")

    @dg.asset(
        name=out.name,
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        **gated_deps([Input(FEATURES)]),
    )
    def features_consumer(
        context: dg.AssetExecutionContext, dataset: DatasetResource
    ) -> dg.MaterializeResult:
        (gated,) = read_gated(
            context,
            dataset.lake(),
            dataset.symbols,
            dataset.env,
            {"features": Input(FEATURES)},
            range_days(context),
            DAILY_START,
        ).values()
        for day in gated.days:  # fmt: skip
            context.add_asset_metadata({"built": True}, partition_key=day.isoformat())
        for day in gated.blocked:
            context.add_asset_metadata({"blocked": True}, partition_key=day.isoformat())
        return dg.MaterializeResult()

    return features_consumer


def test_gate_failure_stops_only_that_days_downstream(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # One 15m CoinGlass price bar missing out of 96 is 1.04 % of the day: over the 0.5 % gate.
    gap = [{"kind": "gap", "path": "/api/futures/price/history", "day": DAYS[1],
            "start_minute": 600, "minutes": 15}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(gap))
    result = run_range(instance, res, DAYS[0], DAYS[-1])
    assert result.success  # the gate failure is recorded; it blocks consumers, not bars_15m
    checks = _by_key(result)
    bad = checks[("bars_15m", QUALITY, DAYS[1])]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert "gaps 1.04%" in (bad.description or "")
    assert checks[("bars_15m", QUALITY, DAYS[0])].passed
    assert checks[("bars_15m", QUALITY, DAYS[2])].passed

    consumer = dg.materialize(
        [_downstream_of_features(), *[a for a in all_assets if a.partitions_def is not None]],
        instance=instance,
        resources=res,
        selection=["features_consumer"],
        tags={
            "dagster/asset_partition_range_start": DAYS[0],
            "dagster/asset_partition_range_end": DAYS[-1],
        },
        raise_on_error=False,
    )
    assert consumer.success
    built = {
        day for day in DAYS if latest_metadata(instance, "features_consumer", day).get("built")
    }
    assert built == {DAYS[0], DAYS[2]}
    assert latest_metadata(instance, "features_consumer", DAYS[1]) == {"blocked": True}

    assert build_catalog(instance, res).success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    days = con.execute(
        "SELECT DISTINCT (ts - INTERVAL 1 MILLISECOND)::DATE FROM bars_15m"
    ).fetchall()
    assert sorted(str(d) for (d,) in days) == [DAYS[0], DAYS[2]]


def test_funding_falls_back_and_says_so(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    plan_error = [{"kind": "error200", "path": "/api/futures/funding-rate/oi-weight-history",
                   "count": -1, "code": "401", "msg": "Upgrade plan"}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(plan_error))
    result = run_range(instance, res, DAYS[0], DAYS[0], selection=["coinglass_funding"])
    assert result.success
    meta = latest_metadata(instance, "coinglass_funding", DAYS[0])
    assert meta["funding_source"] == "coinglass_vol_weight"
    assert "Upgrade plan" in meta["fallback_reasons"]
    frame = pl.read_parquet(Lake(tmp_path / "lake").day_file(
        "coinglass_funding", "BTCUSDT", date.fromisoformat(DAYS[0])))  # fmt: skip
    assert frame.height == 96 and (frame["funding_source"] == "coinglass_vol_weight").all()

    both = [
        dict(plan_error[0]),
        dict(plan_error[0], path="/api/futures/funding-rate/vol-weight-history"),
    ]
    res = resources(tmp_path / "b", sandbox_faults=json.dumps(both))
    result = run_range(instance, res, DAYS[1], DAYS[1], selection=["coinglass_funding"])
    assert result.success
    meta = latest_metadata(instance, "coinglass_funding", DAYS[1])
    assert meta["funding_source"] == "binance_settlement"
    frame = pl.read_parquet(Lake(tmp_path / "b" / "lake").day_file(
        "coinglass_funding", "BTCUSDT", date.fromisoformat(DAYS[1])))  # fmt: skip
    # one row per bar: the Binance settlement in force at its close (test_funding_fallback.py)
    assert frame.height == 96 and (frame["funding_source"] == "binance_settlement").all()


def test_today_is_a_partial_partition_of_closed_bars(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    now = datetime(2024, 5, 2, 10, 7, 30, tzinfo=UTC)
    pinned_clock(now)  # "today" is 2024-05-02, for the assets and the sandbox alike
    today = now.date().isoformat()
    result = run_range(instance, resources(tmp_path), today, today)
    assert result.success
    lake = Lake(tmp_path / "lake")
    # Closed by 10:07:30: 1m bars to 10:07 (607), 15m bars to 10:00 (40); 10:08 and 10:15
    # are still forming and must not be written.
    for name, closed in (("binance_perp_klines_1m", 607), ("perp_klines_15m", 40),
                         ("bars_15m", 40)):  # fmt: skip
        frame = pl.read_parquet(lake.day_file(name, "BTCUSDT", now.date()))
        assert frame.height == closed, (name, frame.height)
        assert frame["ts"].max() <= now, name
    # Judged against what has closed so far, today's gates pass (no false gap alarm).
    checks = _by_key(result)
    for name in ("binance_perp_klines_1m", "perp_klines_15m", "bars_15m"):
        evaluation = checks[(name, QUALITY, today)]
        assert evaluation.severity != dg.AssetCheckSeverity.ERROR or evaluation.passed, (
            name,
            evaluation.description,
        )
    assert checks[("bars_15m", QUALITY, today)].passed, checks[("bars_15m", QUALITY, today)]
