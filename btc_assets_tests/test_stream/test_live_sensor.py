"""The ``live_today`` sensor asks for a run when the stream staging has moved enough closed
minutes (or crossed a 15-minute boundary), and on the interval when there is no stream."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.core.tables import PERP_1M, SPOT_1M
from btc_assets.defs.automation import LIVE_REASON_TAG, build_live_today, stream_moved
from btc_assets.defs.definitions import live_job
from btc_assets.settings import load_settings
from btc_assets.stream.staging import Staging
from btc_assets_tests.test_stream.helpers import accelerate, truth

NOW = datetime(2026, 12, 6, 10, 7, 30, tzinfo=UTC)
MINUTE = 60_000


def test_stream_moved_by_minutes_or_across_a_quarter_hour() -> None:
    at = int(datetime(2026, 12, 6, 10, 1, tzinfo=UTC).timestamp() * 1000)
    assert not stream_moved(at, None, 5)  # no staging: never by the stream
    assert stream_moved(None, at, 5)  # the first watermark seen
    assert not stream_moved(at, at + 4 * MINUTE, 5)
    assert stream_moved(at, at + 5 * MINUTE, 5)
    quarter = int(datetime(2026, 12, 6, 10, 15, tzinfo=UTC).timestamp() * 1000)
    assert stream_moved(quarter - MINUTE, quarter, 5)  # a new bars_15m row is due


def _stage_through(root: Path, last_close: datetime) -> None:
    staging = Staging(root)
    day_start = last_close.replace(hour=0, minute=0, second=0)
    for table, market in ((PERP_1M.name, "perp"), (SPOT_1M.name, "spot")):
        frame = truth(market, "BTCUSDT", day_start, last_close)
        staging.append(table, "BTCUSDT", frame, source="ws", env="sandbox",
                       origin="ws://sandbox/stream", received_ms=0)  # fmt: skip


def test_the_sensor_follows_the_stream_and_falls_back_to_the_interval(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, NOW, 1.0)
    settings = replace(load_settings(), data_dir=tmp_path, live_interval_seconds=900)
    sensor = build_live_today(live_job, settings)
    cursor = None

    def tick() -> dg.RunRequest | dg.SkipReason:
        nonlocal cursor
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        result = sensor(context)
        cursor = context.cursor
        return result  # type: ignore[return-value]

    first = tick()  # no staging yet: the interval is due (never ran)
    assert isinstance(first, dg.RunRequest) and first.tags[LIVE_REASON_TAG] == "interval"
    assert first.partition_key == "2026-12-06"
    assert isinstance(tick(), dg.SkipReason)  # nothing moved, the interval not due
    _stage_through(tmp_path / "stream", NOW.replace(minute=3, second=0))
    moved = tick()
    assert isinstance(moved, dg.RunRequest) and moved.tags[LIVE_REASON_TAG] == "stream"
    _stage_through(tmp_path / "stream", NOW.replace(minute=6, second=0))  # 3 minutes on
    skip = tick()
    assert isinstance(skip, dg.SkipReason) and "moved 3 closed minute(s)" in str(skip.skip_message)
    _stage_through(tmp_path / "stream", NOW.replace(minute=7, second=0))  # 4 ... not yet
    assert isinstance(tick(), dg.SkipReason)
    monkeypatch.setattr(  # eight minutes later, through 10:15: a bars_15m row is due
        "btc_assets.clock.epoch_seconds", lambda: (NOW + timedelta(minutes=8)).timestamp()
    )
    _stage_through(tmp_path / "stream", NOW.replace(minute=15, second=0))
    again = tick()
    assert isinstance(again, dg.RunRequest) and again.tags[LIVE_REASON_TAG] == "stream"
    assert again.run_key != moved.run_key
