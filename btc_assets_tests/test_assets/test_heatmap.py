"""The liquidation heatmap assets end to end on the sandbox: which range each day is asked
with, tiles that index into their candles, refusals, bad answers, the picture."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import polars as pl

from btc_assets.assets.heatmap import range_for_day
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import HEATMAP_CANDLES, HEATMAP_TILES
from btc_assets.defs.resources import CoinGlassResource
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import resources, run_range

NOW = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
HEATMAP = [HEATMAP_CANDLES.name, HEATMAP_TILES.name]
SYMBOL = "BTCUSDT"


def _quality(result: dg.ExecuteInProcessResult, table: str) -> dict[str, bool]:
    return {
        e.partition: e.passed
        for e in (ev.event_specific_data for ev in result.all_events
                  if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.asset_key.path == [table]
    }  # fmt: skip


def test_range_for_day_keeps_a_candle_before_the_day() -> None:
    assert range_for_day(date(2024, 3, 10), NOW) == "12h"  # 6 h in
    assert range_for_day(date(2024, 3, 9), NOW) == "3d"  # 30 h: past 24h
    assert range_for_day(date(2024, 3, 7), NOW) == "7d"  # 3 d 6 h
    assert range_for_day(date(2023, 3, 1), NOW) is None  # past a year
    assert range_for_day(date(2024, 3, 11), NOW) is None  # not begun
    # 23 h 40 min in: 24h would leave no candle to spare before midnight
    assert range_for_day(date(2024, 3, 9), datetime(2024, 3, 9, 23, 40, tzinfo=UTC)) == "3d"


def test_heatmap_days_with_their_candles(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    res = resources(tmp_path)
    result = run_range(instance, res, "2024-03-08", "2024-03-10", selection=HEATMAP)
    assert result.success
    lake = Lake(tmp_path / "lake")
    ranges = {}
    for day in (date(2024, 3, 8), date(2024, 3, 9), date(2024, 3, 10)):
        tiles_day = lake.verify_day(HEATMAP_TILES.name, SYMBOL, day)
        ranges[day] = tiles_day.provenance["heatmap_range"]
        assert tiles_day.provenance["scopes"] == ["pair", "coin"]
        tiles = pl.read_parquet(tiles_day.path)
        candles = pl.read_parquet(lake.verify_day(HEATMAP_CANDLES.name, SYMBOL, day).path)
        start, end = day_bounds(day)
        assert tiles.height > 100 and set(tiles["scope"]) == {"pair", "coin"}
        assert tiles["ts"].min() > start and tiles["ts"].max() <= min(end, NOW)
        assert (tiles["intensity"] > 0).all()
        for scope in ("pair", "coin"):  # every tile stands on a candle of its answer
            on = set(candles.filter(pl.col("scope") == scope)["ts"].to_list())
            assert set(tiles.filter(pl.col("scope") == scope)["ts"].to_list()) <= on
        # closed candles only: today's stop at the last bar closed by NOW
        assert candles["ts"].max() <= min(end, NOW)
    assert ranges == {date(2024, 3, 8): "3d", date(2024, 3, 9): "3d", date(2024, 3, 10): "12h"}
    spacing = lake.verify_day(HEATMAP_TILES.name, SYMBOL, date(2024, 3, 10)).provenance
    assert spacing["candle_interval_seconds"] == 300.0
    materialized = result.asset_materializations_for_node(HEATMAP_TILES.name)
    shown = [m.metadata for m in materialized if "heatmap" in m.metadata]
    assert shown and shown[0]["heatmap_day"].value == "2024-03-10"
    assert "data:image/png;base64," in shown[0]["heatmap"].value
    assert all(_quality(result, t).values() for t in HEATMAP)


def test_days_past_a_year_are_stored_empty_with_the_reason(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    result = run_range(instance, resources(tmp_path), "2023-01-02", "2023-01-02", selection=HEATMAP)
    assert result.success
    written = Lake(tmp_path / "lake").verify_day(HEATMAP_TILES.name, SYMBOL, date(2023, 1, 2))
    assert written.rows == 0
    assert "one year back" in written.provenance["unavailable"]


def test_a_plan_without_heatmaps_is_a_refusal_not_an_outage(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    res = resources(tmp_path)
    cg = res["coinglass"]
    assert isinstance(cg, CoinGlassResource)
    res["coinglass"] = CoinGlassResource(
        **{**cg.model_dump(exclude={"sandbox"}), "api_key": "sandbox-coinglass-standard"},
        sandbox=cg.sandbox,
    )
    result = run_range(instance, res, "2024-03-09", "2024-03-09", selection=HEATMAP)
    assert result.success
    written = Lake(tmp_path / "lake").verify_day(HEATMAP_TILES.name, SYMBOL, date(2024, 3, 9))
    assert written.rows == 0
    why = written.provenance["unavailable"]
    assert "pair:" in why and "coin:" in why and "plan" in why.lower()
    assert "sandbox-coinglass-standard" not in json.dumps(dict(written.provenance))


def test_a_bad_index_refuses_the_day_and_keeps_the_stored_one(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    day = date(2024, 3, 9)
    assert run_range(instance, resources(tmp_path), "2024-03-09", "2024-03-09",
                     selection=HEATMAP).success  # fmt: skip
    lake = Lake(tmp_path / "lake")
    before = lake.verify_day(HEATMAP_TILES.name, SYMBOL, day)
    faults = [{"kind": "bad_index", "path": "/api/futures/liquidation/heatmap/model1",
               "count": -1}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(faults))
    again = run_range(instance, res, "2024-03-09", "2024-03-09", selection=HEATMAP, force=True)
    assert not again.success
    failure = next(e for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert SYMBOL in text and "index" in text
    after = lake.verify_day(HEATMAP_TILES.name, SYMBOL, day)
    assert after.sha256 == before.sha256  # nothing half-written over the good day


def test_the_picture_draws_only_verified_days(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    from btc_assets.assets.heatmap import newest_picture

    pinned_clock(NOW)
    assert run_range(instance, resources(tmp_path), "2024-03-09", "2024-03-09",
                     selection=HEATMAP).success  # fmt: skip
    lake = Lake(tmp_path / "lake")
    picture, _ = newest_picture(instance, lake, "sandbox", SYMBOL, [date(2024, 3, 9)])
    assert picture is not None and picture.scope == "pair" and picture.day == date(2024, 3, 9)
    assert picture.png.startswith(b"\x89PNG") and len(picture.png) > 10_000
    assert newest_picture(instance, lake, "sandbox", SYMBOL, [date(2024, 3, 1)])[0] is None
    assert newest_picture(instance, lake, "live", SYMBOL, [date(2024, 3, 9)])[0] is None
    # a day that does not verify is not drawn
    path = lake.verify_day(HEATMAP_TILES.name, SYMBOL, date(2024, 3, 9)).path
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert newest_picture(instance, lake, "sandbox", SYMBOL, [date(2024, 3, 9)])[0] is None


def test_the_qa_report_draws_the_newest_day_that_passes_its_gate(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    from btc_assets.assets.reports import _heatmap
    from btc_assets.defs.resources import DatasetResource

    pinned_clock(NOW)
    res = resources(tmp_path)
    assert run_range(instance, res, "2024-03-08", "2024-03-09", selection=HEATMAP).success
    dataset = res["dataset"]
    assert isinstance(dataset, DatasetResource)
    path = tmp_path / "reports" / "liquidation_heatmap.png"
    path.parent.mkdir(parents=True)
    said, shown = _heatmap(instance, dataset, SYMBOL, path)
    assert said["drawn"] and said["day"] == "2024-03-09"
    assert path.read_bytes().startswith(b"\x89PNG") and "liquidation_heatmap" in shown
    # the newest day corrupted: the report draws the day before, and names the one left out
    lake = Lake(tmp_path / "lake")
    bad = lake.verify_day(HEATMAP_TILES.name, SYMBOL, date(2024, 3, 9)).path
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    said, _ = _heatmap(instance, dataset, SYMBOL, path)
    assert said["day"] == "2024-03-08"
    assert "sha256" in said["left_out"]["2024-03-09"] or "size" in said["left_out"]["2024-03-09"]
