"""The collector against the in-process sandbox stream, its faults, and the REST truth.

The clock runs 60x (a sandbox minute a second), so each test covers several closed candles
of the stream in a few seconds. "Equal to REST" is the strongest check there is: a forming
candle stored, a duplicate, a lost minute or a mis-parsed value all make it fail.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prometheus_client import generate_latest

from btc_assets import clock
from btc_assets.sandbox.binance_stream import SandboxStream, StreamFaults
from btc_assets.stream.collector import StreamCollector
from btc_assets.stream.metrics import serve_metrics
from btc_assets.stream.staging import Staging, healthy_day
from btc_assets_tests.test_stream.helpers import (
    START,
    STOPPED,
    accelerate,
    make_collector,
    running,
    truth,
)

SPEED = 60.0
PERP, SPOT = "binance_perp_klines_1m", "binance_spot_klines_1m"


def _day_start() -> object:
    return START.replace(hour=0, minute=0, second=0)


def assert_staged_equals_rest(root: Path, table: str, market: str) -> pl.DataFrame:
    staged = Staging(root).staged_day(table, "BTCUSDT", START.date())
    assert staged is not None
    # Every candle closed half a sandbox minute before the collector stopped (a sweep's
    # period at 60x) must be there.
    stopped = STOPPED.get(str(root), clock.epoch_ms())
    frame, why, missing = healthy_day(staged, env="sandbox", now_ms=stopped - 35_000)
    assert frame is not None, why
    assert not missing
    expected = truth(market, "BTCUSDT", _day_start(), staged.frame["ts"].max())
    assert_frame_equal(staged.frame, expected)
    return staged.frame


def _run(collector: StreamCollector, seconds: float) -> None:
    with running(collector):
        time.sleep(seconds)


def test_only_closed_candles_are_staged_and_they_equal_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, hub = make_collector(tmp_path)
    _run(collector, 5)
    for table, market in ((PERP, "perp"), (SPOT, "spot")):
        frame = assert_staged_equals_rest(tmp_path, table, market)
        status = collector.status.targets[f"{table}/BTCUSDT"]
        assert status.ws_candles >= 3, status  # the stream, not only the start-up fill
        assert status.rest_candles == 600  # 00:00..09:59, closed before it connected
        assert status.forming_ignored > 0  # x=false updates came and were not stored
        assert frame["ts"].max() <= clock.now_utc()  # nothing still forming
    assert len(hub.connections) == 2  # one per market, no reconnects
    assert all(c.reconnects == 0 for c in collector.status.connections)


def test_duplicate_and_out_of_order_candles_are_stored_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, _ = make_collector(tmp_path, StreamFaults(duplicate=True, out_of_order=True))
    _run(collector, 6)
    frame = assert_staged_equals_rest(tmp_path, PERP, "perp")
    assert frame["ts"].is_unique().all() and frame["ts"].is_sorted()
    status = collector.status.targets[f"{PERP}/BTCUSDT"]
    assert status.duplicates >= 2, status


@pytest.mark.parametrize(
    "faults",
    [
        StreamFaults(drop_after=2),  # TCP reset
        StreamFaults(close_after=2),  # the server's close frame
        StreamFaults(stall_after=2),  # silence: the collector gives up on it
    ],
    ids=["drop", "server-close", "stall"],
)
def test_after_a_disconnect_the_missed_minutes_are_filled_over_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: StreamFaults
) -> None:
    accelerate(monkeypatch, START, SPEED)
    # 2-3 s of backoff at 60x: two or three candles close while it is away.
    collector, hub = make_collector(
        tmp_path, faults, backoff_base=2.5, backoff_cap=2.5, stall_seconds=1.5, sweep_seconds=60
    )
    _run(collector, 10)
    frame = assert_staged_equals_rest(tmp_path, PERP, "perp")
    perp = next(c for c in collector.status.connections if c.name == "perp-1")
    assert perp.reconnects >= 1, perp
    status = collector.status.targets[f"{PERP}/BTCUSDT"]
    # Beyond the start-up fill, REST gave the minutes that closed while disconnected.
    assert status.rest_candles > 600, status
    assert frame.height == status.rest_candles + status.ws_candles
    assert next(c.ended for c in hub.connections if c.market == "perp") is not None


def test_connections_roll_over_before_the_servers_lifetime_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    # The server cuts every connection at 3 s (Binance: 24 h); the collector renews at 1.5.
    faults = StreamFaults(lifetime_s=3.0, fault_connections=1000)
    collector, hub = make_collector(tmp_path, faults, max_connection_age_s=1.5, sweep_seconds=60)
    _run(collector, 6.5)
    perp = next(c for c in collector.status.connections if c.name == "perp-1")
    assert perp.rollovers >= 3, perp
    assert perp.reconnects == 0, perp  # never cut by the server
    assert not [c for c in hub.connections if c.ended and "lifetime" in c.ended]
    assert_staged_equals_rest(tmp_path, PERP, "perp")


def test_a_restart_resumes_from_the_staging_without_loss_or_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    first, _ = make_collector(tmp_path)
    _run(first, 3)
    time.sleep(3)  # three sandbox minutes with no collector at all
    second, _ = make_collector(tmp_path)
    assert second.status.targets[f"{PERP}/BTCUSDT"].last_closed_open_ms is not None
    _run(second, 3)
    assert_staged_equals_rest(tmp_path, PERP, "perp")
    # The restart asked REST only for the minutes it missed, not the whole day again.
    # (3 s at 60x is 3 minutes; start-up on a loaded machine adds a few.)
    assert 2 <= second.status.targets[f"{PERP}/BTCUSDT"].rest_candles <= 12


def test_a_malformed_message_is_counted_and_its_minute_filled_by_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, _ = make_collector(tmp_path, sweep_seconds=0.5)
    conn = collector.status.connections[0]
    collector.handle(
        "perp", "ws://x/stream", '{"stream": "btcusdt@kline_1m", "data": {"e": "kl', conn
    )
    collector.handle("perp", "ws://x/stream", '{"result": null, "id": 1}', conn)  # a reply
    assert conn.malformed == 1
    _run(collector, 3)
    assert_staged_equals_rest(tmp_path, PERP, "perp")


def test_staging_from_another_env_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, _ = make_collector(tmp_path)
    _run(collector, 2)
    staged = Staging(tmp_path).staged_day(PERP, "BTCUSDT", START.date())
    frame, why, _ = healthy_day(staged, env="live", now_ms=clock.epoch_ms())
    assert frame is None and "'sandbox'" in why and "'live'" in why


def test_metrics_expose_connection_lag_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, _ = make_collector(tmp_path)
    registry = serve_metrics(collector.status, 0)
    with running(collector):
        time.sleep(3)
        text = generate_latest(registry).decode()
    assert 'btc_assets_stream_connected{connection="perp-1"} 1.0' in text
    rest = 'candles_total{source="rest",symbol="BTCUSDT",table="binance_perp_klines_1m"} 600.0'
    assert f"btc_assets_stream_{rest}" in text
    lag = [line for line in text.splitlines() if line.startswith("btc_assets_stream_lag_seconds{")]
    assert len(lag) == 2 and all(float(line.split()[-1]) < 120 for line in lag), lag


def test_a_hole_in_the_middle_is_found_and_filled_by_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, SPEED)
    collector, _ = make_collector(tmp_path)
    _run(collector, 2)
    path = Staging(tmp_path).path(PERP, "BTCUSDT", START.date())
    import sqlite3

    with sqlite3.connect(path) as db:  # lose 05:00..05:09, as a torn message run would
        start = int((START.replace(hour=5, minute=0, second=0)).timestamp() * 1000)
        db.execute("DELETE FROM candles WHERE open_ms BETWEEN ? AND ?", (start, start + 9 * 60_000))
    again, _ = make_collector(tmp_path, sweep_seconds=0.3)
    _run(again, 2)
    assert_staged_equals_rest(tmp_path, PERP, "perp")
    assert again.status.targets[f"{PERP}/BTCUSDT"].rest_candles >= 10
    assert timedelta(0) < clock.now_utc() - START


def test_an_unknown_stream_is_ignored(tmp_path: Path) -> None:
    collector, _ = make_collector(tmp_path, hub=SandboxStream(seed=7))
    conn = collector.status.connections[0]
    message = (
        '{"stream":"ethusdt@kline_1m","data":{"e":"kline","E":1,"s":"ETHUSDT","k":{"t":0,'
        '"T":59999,"s":"ETHUSDT","i":"1m","o":"1","c":"1","h":"1","l":"1","v":"1","n":1,'
        '"x":true,"q":"1","V":"1","Q":"1"}}}'
    )
    collector.handle("perp", "ws://x/stream", message, conn)
    assert not list(Staging(tmp_path).day_files())
