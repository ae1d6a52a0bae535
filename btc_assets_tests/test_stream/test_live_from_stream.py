"""The live job reads today's 1m klines from the stream staging when it is whole (no REST
call for them), and from REST when it is not, saying why; the rows are the same either way."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from btc_assets.core.tables import PERP_1M, SPOT_1M
from btc_assets.defs.definitions import all_assets
from btc_assets.lake import Lake
from btc_assets.stream.staging import Staging
from btc_assets_tests.test_assets.helpers import latest_metadata, resources
from btc_assets_tests.test_stream.helpers import accelerate, make_collector, running, truth

# Five seconds past 10:00: the staging the collector fills at connect ends with the candle
# closing 10:00:00, and the next one closes in 55 s, after the run.
NOW = datetime(2026, 12, 6, 10, 0, 5, tzinfo=UTC)
DAY = NOW.date()
KLINES = [a for a in all_assets if a.key.path[-1] in (SPOT_1M.name, PERP_1M.name)]


def _stage(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accelerate(monkeypatch, NOW, 1.0)
    collector, _ = make_collector(root)
    with running(collector):
        deadline = time.time() + 20
        while time.time() < deadline and not all(
            t.rest_candles == 600 for t in collector.status.targets.values()
        ):
            time.sleep(0.1)


def _run(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    result = dg.materialize(KLINES, instance=instance, resources=resources(tmp_path),
                            partition_key=DAY.isoformat())  # fmt: skip
    assert result.success


def _lake_equals_rest(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    for table, market in ((PERP_1M, "perp"), (SPOT_1M, "spot")):
        stored = pl.read_parquet(lake.read_days(table.name, "BTCUSDT", [DAY]).committed[DAY].path)
        day_start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        assert_frame_equal(stored, truth(market, "BTCUSDT", day_start, NOW), check_dtypes=False)
        assert stored.height == 600


def test_today_comes_from_a_whole_staging_without_rest(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage(tmp_path / "stream", monkeypatch)
    _run(tmp_path, instance)
    for table in (PERP_1M, SPOT_1M):
        meta = latest_metadata(instance, table.name, DAY)
        assert meta["source"] == "stream", meta
        assert meta["http_requests"] == 0 and meta["run_http_requests"] == 0, meta
    _lake_equals_rest(tmp_path)


def test_a_staging_with_a_hole_sends_today_to_rest_and_says_why(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage(tmp_path / "stream", monkeypatch)
    path = Staging(tmp_path / "stream").path(PERP_1M.name, "BTCUSDT", DAY)
    with sqlite3.connect(path) as db:
        first = int(datetime(2026, 12, 6, 7, 0, tzinfo=UTC).timestamp() * 1000)
        db.execute("DELETE FROM candles WHERE open_ms BETWEEN ? AND ?", (first, first + 9 * 60_000))
    _run(tmp_path, instance)
    perp = latest_metadata(instance, PERP_1M.name, DAY)
    assert perp["source"] == "rest" and perp["http_requests"] >= 1, perp
    assert "misses 10 closed minute(s), the first opening 07:00 UTC" in perp["stream_unused"]
    assert latest_metadata(instance, SPOT_1M.name, DAY)["source"] == "stream"
    _lake_equals_rest(tmp_path)
