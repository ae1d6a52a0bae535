"""What a user can trust: look-back windows, verified reads, honest reuse, env, ranges."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from btc_assets.core.tables import OPEN_INTEREST, lake_tables
from btc_assets.defs.checks import QUALITY
from btc_assets.defs.day_gate import GATED_INPUTS
from btc_assets.defs.definitions import SETTINGS, defs
from btc_assets.defs.resources import DatasetResource
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import (
    as_day,
    build_catalog,
    catalog_metadata,
    evaluations,
    failure_text,
    lake_digest,
    latest_metadata,
    resources,
    run_range,
)

SYMBOL = "BTCUSDT"
DAYS = [f"2024-05-0{i}" for i in range(1, 6)]  # 2024-05-01 .. 2024-05-05
BINANCE_SPOT = ["binance_spot_klines_1m"]


def _quality(result: dg.ExecuteInProcessResult, name: str, day: str) -> dg.AssetCheckEvaluation:
    return next(
        e
        for e in evaluations(result)
        if (e.asset_key.path[-1], e.check_name, e.partition) == (name, QUALITY, day)
    )


def _features(lake: Lake, day: str) -> pl.DataFrame:
    return lake.read_days("bars_15m", SYMBOL, [as_day(day)]).frame.collect()


# --- one gate for every reader ---------------------------------------------------------------


def test_every_asset_that_depends_on_a_lake_table_reads_it_through_the_gate() -> None:
    lake_keys = {dg.AssetKey(t.name) for t in lake_tables(SETTINGS.bar_intervals)}
    graph = defs.resolve_asset_graph()
    unchecked = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        upstream = {k for k in node.parent_keys if k in lake_keys}
        if not upstream:
            continue
        gated = node.metadata.get(GATED_INPUTS)
        names = set(gated.value if hasattr(gated, "value") else gated or [])
        if not {k.path[-1] for k in upstream} <= names:
            unchecked.append(key.to_user_string())
    assert unchecked == []
    # and the test can tell: an asset that only declares the dependency is caught
    rogue = dg.asset(name="rogue", deps=[dg.AssetKey("bars_15m")])(lambda: None)
    assert GATED_INPUTS not in rogue.specs_by_key[dg.AssetKey("rogue")].metadata


# --- look-back windows ----------------------------------------------------------------------


def test_an_unverifiable_lookback_day_is_left_out_of_every_window_and_counted(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path)
    assert run_range(instance, res, DAYS[0], DAYS[-1]).success
    lake = Lake(tmp_path / "lake")
    clean = _features(lake, DAYS[-1])

    # Tamper with an open-interest day inside the last day's 31-day window: new values,
    # old manifest. The one-day run must neither use them nor die on them.
    victim = lake.day_file(OPEN_INTEREST.name, SYMBOL, as_day(DAYS[1]))
    tampered = pl.read_parquet(victim).with_columns(pl.col("close") * 1000)
    tampered.write_parquet(victim)
    one_day = run_range(instance, res, DAYS[-1], DAYS[-1], ["bars_15m"])
    assert one_day.success
    meta = latest_metadata(instance, "bars_15m", DAYS[-1])
    assert meta["excluded_lookback_days"] == 1
    assert (
        str(victim) in meta["excluded_lookback"] and "does not verify" in meta["excluded_lookback"]
    )
    with_tampered = _features(lake, DAYS[-1])
    assert _quality(one_day, "bars_15m", DAYS[-1]).passed

    # Left out means exactly as if the day were absent: same features as with no file.
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])  # now truncated
    truncated = run_range(instance, res, DAYS[-1], DAYS[-1], ["bars_15m"])
    assert truncated.success  # a truncated file is named and left out, not a Polars error
    assert str(victim) in latest_metadata(instance, "bars_15m", DAYS[-1])["excluded_lookback"]
    assert _features(lake, DAYS[-1]).equals(with_tampered)
    for path in lake.day_dir(OPEN_INTEREST.name, SYMBOL, as_day(DAYS[1])).iterdir():
        path.unlink()
    assert run_range(instance, res, DAYS[-1], DAYS[-1], ["bars_15m"]).success
    absent = _features(lake, DAYS[-1])
    assert absent.equals(with_tampered)
    # ... and the day did matter: with it, the percentiles differ.
    assert not clean.select("oi_pctile_30d").equals(absent.select("oi_pctile_30d"))


def test_a_same_day_input_that_does_not_verify_blocks_the_day_at_every_depth(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path)
    assert run_range(instance, res, DAYS[0], DAYS[2]).success
    lake = Lake(tmp_path / "lake")
    raw = lake.day_file("binance_perp_klines_1m", SYMBOL, as_day(DAYS[1]))
    data = bytearray(raw.read_bytes())
    data[len(data) // 2] ^= 0xFF
    raw.write_bytes(bytes(data))
    derived = run_range(instance, res, DAYS[0], DAYS[2], ["perp_klines_15m", "bars_15m"])
    assert derived.success
    for name in ("perp_klines_15m", "bars_15m"):
        assert not _quality(derived, name, DAYS[1]).passed
        assert latest_metadata(instance, name, DAYS[1])["blocked"] is True
        assert _quality(derived, name, DAYS[0]).passed and _quality(derived, name, DAYS[2]).passed
    assert str(raw) in (_quality(derived, "perp_klines_15m", DAYS[1]).description or "")


# --- the DuckDB views read only what verifies -------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_duckdb_views_leave_out_a_day_that_does_not_verify(
    tmp_path: Path, instance: dg.DagsterInstance, damage: str
) -> None:
    res = resources(tmp_path)
    assert run_range(instance, res, DAYS[0], DAYS[2], ["binance_perp_klines_1m"]).success
    lake = Lake(tmp_path / "lake")
    victim = lake.day_file("binance_perp_klines_1m", SYMBOL, as_day(DAYS[1]))
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    victim.write_bytes(bytes(data))
    assert build_catalog(instance, res).success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    days = con.execute(
        "SELECT DISTINCT (ts - INTERVAL 1 MILLISECOND)::DATE FROM binance_perp_klines_1m"
    ).fetchall()
    assert sorted(str(d) for (d,) in days) == [DAYS[0], DAYS[2]]
    (top,) = con.execute("SELECT max(quote_volume) FROM binance_perp_klines_1m").fetchone()
    assert top < 1e12  # no garbage value from the damaged file
    excluded = catalog_metadata(instance)["excluded_days"]["binance_perp_klines_1m"]
    key = f"{SYMBOL} {DAYS[1]}"
    assert list(excluded) == [key] and str(victim) in excluded[key]


# --- honest raw days --------------------------------------------------------------------------


def test_an_empty_answer_for_a_day_with_bars_is_an_error_not_an_empty_file(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    empty = [{"kind": "empty", "path": "/api/v3/klines", "count": -1}]
    res = resources(tmp_path, sandbox_faults=json.dumps(empty))
    result = run_range(instance, res, DAYS[0], DAYS[1], [*BINANCE_SPOT, "spot_klines_15m"])
    assert result.success
    lake = Lake(tmp_path / "lake")
    for name in (*BINANCE_SPOT, "spot_klines_15m"):
        assert lake.missing_days(name, SYMBOL, [as_day(d) for d in DAYS[:2]]) == [
            as_day(d) for d in DAYS[:2]
        ]
        check = _quality(result, name, DAYS[0])
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "answered no rows" in (_quality(result, BINANCE_SPOT[0], DAYS[0]).description or "")


def test_a_gap_is_refetched_until_confirmed_then_reused_with_its_warning(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    gap = [{"kind": "gap", "path": "/api/v3/klines", "count": -1, "day": DAYS[0],
            "start_minute": 600, "minutes": 30}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(gap), tail_days=0)
    sources = []
    for _ in range(4):
        result = run_range(instance, res, DAYS[0], DAYS[0], BINANCE_SPOT)
        assert result.success
        meta = latest_metadata(instance, BINANCE_SPOT[0], DAYS[0])
        sources.append((meta["source"], meta.get("gap_confirmations")))
        check = _quality(result, BINANCE_SPOT[0], DAYS[0])
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    # Fetched, then re-fetched twice with the same answer (confirmed), then reused.
    assert sources == [("rest", 0), ("rest", 1), ("rest", 2), ("reused", None)]
    provenance = Lake(tmp_path / "lake").verify_day(BINANCE_SPOT[0], SYMBOL, as_day(DAYS[0]))
    assert provenance.provenance["confirmations"] == 2
    assert provenance.provenance["complete"] is False


def test_a_day_fetched_before_it_closed_is_fetched_again_after(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Any
) -> None:
    res = resources(tmp_path, tail_days=0)
    pinned_clock(datetime(2024, 5, 2, 12, 0, tzinfo=UTC))
    assert run_range(instance, res, DAYS[1], DAYS[1], BINANCE_SPOT).success
    lake = Lake(tmp_path / "lake")
    partial = lake.verify_day(BINANCE_SPOT[0], SYMBOL, as_day(DAYS[1]))
    assert partial.provenance["closed"] is False and partial.rows == 720
    pinned_clock(datetime(2024, 5, 4, 12, 0, tzinfo=UTC))  # two days later: out of the tail
    assert run_range(instance, res, DAYS[1], DAYS[1], BINANCE_SPOT).success
    assert latest_metadata(instance, BINANCE_SPOT[0], DAYS[1])["source"] == "rest"
    whole = lake.verify_day(BINANCE_SPOT[0], SYMBOL, as_day(DAYS[1]))
    assert whole.provenance["closed"] is True and whole.rows == 1440
    assert run_range(instance, res, DAYS[1], DAYS[1], BINANCE_SPOT).success
    assert latest_metadata(instance, BINANCE_SPOT[0], DAYS[1])["source"] == "reused"


def test_live_never_reads_reuses_or_views_a_sandbox_day(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    sandbox = resources(tmp_path)
    assert run_range(
        instance, sandbox, DAYS[0], DAYS[1], [*BINANCE_SPOT, "spot_klines_15m"]
    ).success
    # The same data dir in live mode (the vendor stays the sandbox transport: the point is
    # what the lake lets through, not where bytes come from).
    dataset = sandbox["dataset"]
    assert isinstance(dataset, DatasetResource)
    settings = {k: getattr(dataset, k) for k in ("lake_root", "reports_root", "symbols")}
    live = {**sandbox, "dataset": DatasetResource(**settings, env="live")}
    derived = run_range(instance, live, DAYS[0], DAYS[1], ["spot_klines_15m"])
    assert derived.success
    assert build_catalog(instance, live).success
    reason = _quality(derived, "spot_klines_15m", DAYS[0]).description or ""
    assert "written in sandbox env, this is live" in reason
    assert "binance_spot_klines_1m" not in _views(tmp_path)
    refetched = run_range(instance, live, DAYS[0], DAYS[1], BINANCE_SPOT)
    assert refetched.success
    assert latest_metadata(instance, BINANCE_SPOT[0], DAYS[0])["source"] == "rest"  # not reused
    written = Lake(tmp_path / "lake").verify_day(BINANCE_SPOT[0], SYMBOL, as_day(DAYS[0]))
    assert written.provenance["env"] == "live"


def _views(data_dir: Path) -> set[str]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    return {name for (name,) in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}


# --- ranges -------------------------------------------------------------------------------------


def test_a_range_into_the_future_is_refused_before_anything_is_written(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    from btc_assets import clock

    res = resources(tmp_path)
    today = clock.today_utc()
    tomorrow, after = today + timedelta(days=1), today + timedelta(days=2)
    result = run_range(instance, res, today.isoformat(), after.isoformat())
    assert not result.success
    message = failure_text(result)
    assert f"{today} .. {after}" in message and "past today" in message
    assert not (tmp_path / "lake").exists() or lake_digest(tmp_path / "lake") == {}
    assert tomorrow.isoformat() not in str(list((tmp_path).rglob("*")))


def test_a_reversed_range_is_a_clear_error(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    result = run_range(instance, resources(tmp_path), DAYS[2], DAYS[0], BINANCE_SPOT)
    assert not result.success
    assert f"{DAYS[2]} .. {DAYS[0]} is reversed" in failure_text(result)
