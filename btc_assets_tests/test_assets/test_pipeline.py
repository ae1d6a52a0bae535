"""The daily graph over a 3-day range, in one run, against the in-process sandbox."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from btc_assets.assets.day_metadata import BLOCKED_TAG_PREFIX
from btc_assets.defs.checks import QUALITY
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import as_day, evaluations, resources, run_range

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
ROWS_PER_DAY = {
    "binance_spot_klines_1m": 1440,
    "binance_perp_klines_1m": 1440,
    "binance_funding_rate": 3,
    "spot_klines_15m": 96,
    "perp_klines_15m": 96,
}


BINANCE_SLICE = list(ROWS_PER_DAY)


def _materialized(instance: dg.DagsterInstance, name: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(name)))


def _metadata(instance: dg.DagsterInstance, name: str, day: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[day]), limit=1
    ).records
    return records[0].asset_materialization.metadata  # type: ignore[union-attr]


def test_range_run_materializes_checks_and_reuses(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path)
    result = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE)
    assert result.success
    lake = Lake(tmp_path / "lake")
    for name, rows in ROWS_PER_DAY.items():
        assert _materialized(instance, name) == set(DAYS)
        for day in DAYS:
            frame = pl.read_parquet(lake.day_file(name, "BTCUSDT", date.fromisoformat(day)))
            assert frame.height == rows, (name, day)
            meta = _metadata(instance, name, day)
            assert meta["dagster/row_count"].value == rows
            assert re.search(
                rf"/part-{day.replace('-', '')}-[0-9a-f]{{16}}\.parquet$", meta["lake_path"].value
            )
            if name.startswith("binance_"):  # raw: what was fetched, and that it was whole
                assert meta["closed"].value and meta["complete"].value
            assert "preview" in meta
    # One evaluation per table per day, every one recorded with its partition and passed.
    evals = evaluations(result)
    assert Counter((e.asset_key.path[-1], e.check_name) for e in evals) == {
        (name, QUALITY): 3 for name in ROWS_PER_DAY
    }
    assert {e.partition for e in evals} == set(DAYS)
    assert all(e.passed for e in evals), [e.description for e in evals if not e.passed]

    # HTTP requests per day: 2 spot (1000 + 440), 1 perp (1440 <= 1500), 1 funding.
    expected = {"binance_spot_klines_1m": 2, "binance_perp_klines_1m": 1, "binance_funding_rate": 1}
    for name, requests in expected.items():
        meta = _metadata(instance, name, DAYS[1])
        assert (meta["source"].value, meta["http_requests"].value) == ("rest", requests)

    # A second run reuses complete old days: no request, same bytes, and says so.
    before = {p: p.read_bytes() for p in (tmp_path / "lake").rglob("*.parquet")}
    again = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE)
    assert again.success
    for name in expected:
        meta = _metadata(instance, name, DAYS[1])
        assert (meta["source"].value, meta["http_requests"].value) == ("reused", 0)
    assert {p: p.read_bytes() for p in before} == before

    # Forcing re-fetches, and identical vendor data rewrites byte-identical files.
    forced = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE, force=True)
    assert forced.success
    assert _metadata(instance, "binance_spot_klines_1m", DAYS[1])["http_requests"].value == 2
    assert {p: p.read_bytes() for p in before} == before


def test_sandbox_gap_is_reported_by_coverage(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    gap = [
        {
            "kind": "gap",
            "path": "/fapi/v1/klines",
            "count": -1,
            "day": DAYS[1],
            "start_minute": 600,
            "minutes": 30,
        }
    ]
    res = resources(tmp_path, sandbox_faults=json.dumps(gap))
    result = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE)
    assert result.success  # a gap warns; it does not block
    by_key = {(e.asset_key.path[-1], e.check_name, e.partition): e for e in evaluations(result)}
    raw = by_key[("binance_perp_klines_1m", QUALITY, DAYS[1])]
    assert not raw.passed
    assert raw.severity == dg.AssetCheckSeverity.WARN  # reported, not blocking
    figures = {k: v.value for k, v in raw.metadata.items()}
    assert figures["present"] == 1440 - 30
    assert figures["gap_count"] == 1
    assert figures["longest_gap_bars"] == 30
    assert figures["ohlc_violations"] == figures["duplicate_keys"] == 0
    assert "1 gap(s), longest 30 bar(s)" in (raw.description or "")
    bars = by_key[("perp_klines_15m", QUALITY, DAYS[1])]
    assert not bars.passed  # the 15m table shows the hole too: 2 bars missing
    assert bars.severity == dg.AssetCheckSeverity.WARN
    assert {k: v.value for k, v in bars.metadata.items()}["present"] == 94
    for day in (DAYS[0], DAYS[2]):
        assert by_key[("binance_perp_klines_1m", QUALITY, day)].passed
    # A WARN failure does not block: the gap day is built downstream.
    assert _materialized(instance, "perp_klines_15m") == set(DAYS)


def test_failing_blocking_day_stops_only_its_own_downstream_day(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    broken = [
        {
            "kind": "bad_ohlc",
            "path": "/api/v3/klines",
            "day": DAYS[1],
            "start_minute": 60,
            "minutes": 2,
        }
    ]
    res = resources(tmp_path, sandbox_faults=json.dumps(broken))
    result = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE)
    assert result.success  # every buildable day was built; the bad one is recorded as blocked

    by_key = {(e.asset_key.path[-1], e.check_name, e.partition): e for e in evaluations(result)}
    bad = by_key[("binance_spot_klines_1m", QUALITY, DAYS[1])]
    assert not bad.passed
    assert bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["ohlc_violations"].value == 2
    # Every other day's results are recorded, not hidden behind the failure.
    for day in (DAYS[0], DAYS[2]):
        assert by_key[("binance_spot_klines_1m", QUALITY, day)].passed
        assert by_key[("spot_klines_15m", QUALITY, day)].passed
    blocked = by_key[("spot_klines_15m", QUALITY, DAYS[1])]
    assert not blocked.passed and blocked.severity == dg.AssetCheckSeverity.ERROR
    assert "blocked, not built" in (blocked.description or "")
    assert "binance_spot_klines_1m.quality failed: ohlc_violations=2" in (blocked.description or "")

    # The bad day is not built downstream; its neighbours and the perp side are.
    lake = Lake(tmp_path / "lake")
    assert lake.missing_days("spot_klines_15m", "BTCUSDT", [as_day(d) for d in DAYS]) == [
        as_day(DAYS[1])
    ]
    assert _metadata(instance, "spot_klines_15m", DAYS[1])["blocked"].value is True
    assert not lake.missing_days("perp_klines_15m", "BTCUSDT", [as_day(d) for d in DAYS])
    # The run says what it blocked.
    tags = instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
    assert tags[BLOCKED_TAG_PREFIX + "spot_klines_15m"] == f"1 day(s): {DAYS[1]}"


def test_corrupt_upstream_file_is_named_and_healed_by_a_rerun(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path)
    assert run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE).success
    lake = Lake(tmp_path / "lake")
    raw_file = lake.day_file("binance_perp_klines_1m", "BTCUSDT", date.fromisoformat(DAYS[2]))
    bars_file = lake.day_file("perp_klines_15m", "BTCUSDT", date.fromisoformat(DAYS[2]))
    bars_before = bars_file.read_bytes()
    data = bytearray(raw_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    raw_file.write_bytes(bytes(data))

    only_bars = run_range(instance, res, DAYS[0], DAYS[-1], selection=["perp_klines_15m"])
    assert only_bars.success
    by_key = {(e.asset_key.path[-1], e.partition): e for e in evaluations(only_bars)}
    message = by_key[("perp_klines_15m", DAYS[2])].description or ""
    assert not by_key[("perp_klines_15m", DAYS[2])].passed
    assert str(raw_file) in message and "sha256" in message
    assert by_key[("perp_klines_15m", DAYS[1])].passed
    assert bars_file.read_bytes() == bars_before  # the good 15m day was not overwritten

    # The raw asset sees the day is no longer complete and fetches it again.
    healed = run_range(instance, res, DAYS[0], DAYS[-1], BINANCE_SLICE)
    assert healed.success
    assert _metadata(instance, "binance_perp_klines_1m", DAYS[2])["source"].value == "rest"
    assert _metadata(instance, "binance_perp_klines_1m", DAYS[1])["source"].value == "reused"
    lake.verify_day("binance_perp_klines_1m", "BTCUSDT", date.fromisoformat(DAYS[2]))
