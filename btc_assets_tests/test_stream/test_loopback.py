"""The collector over a real websocket (``websockets`` on loopback): pings, a TCP reset, and
Binance's unrouted USD-M URL, which opens and then never sends a kline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from btc_assets.sandbox.binance_stream import SandboxStream, StreamFaults
from btc_assets.sandbox.stream_server import serve_sandbox_stream
from btc_assets.vendors.binance_stream import websocket_connector
from btc_assets_tests.test_stream.helpers import START, accelerate, make_collector, running
from btc_assets_tests.test_stream.test_collector import PERP, assert_staged_equals_rest


def test_the_collector_answers_the_servers_pings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, 60)
    hub = SandboxStream(seed=7)
    # The server pings every 0.3 s and drops a client that has not answered within 2 s:
    # without pongs the connection would be cut twice over in the 5 s below.
    with serve_sandbox_stream(hub, ping_interval=0.3, ping_timeout=2.0) as (spot, futures):
        collector, _ = make_collector(
            tmp_path, hub=hub, connect=websocket_connector(), spot_url=spot, futures_url=futures
        )
        with running(collector):
            time.sleep(5)
    assert [c.number for c in hub.connections] == [1, 1]  # no connection was ever dropped
    assert all(c.reconnects == 0 for c in collector.status.connections)
    assert_staged_equals_rest(tmp_path, PERP, "perp")


def test_a_tcp_reset_is_survived_and_the_gap_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, 60)
    hub = SandboxStream(seed=7, faults=StreamFaults(drop_after=2))
    with serve_sandbox_stream(hub) as (spot, futures):
        collector, _ = make_collector(
            tmp_path, hub=hub, connect=websocket_connector(), spot_url=spot, futures_url=futures,
            backoff_base=2.0, backoff_cap=2.0,
        )  # fmt: skip
        with running(collector):
            time.sleep(7)
    perp = next(c for c in collector.status.connections if c.name == "perp-1")
    assert perp.reconnects >= 1 and perp.connected is False
    assert next(c.ended for c in hub.connections if c.market == "perp") == "dropped"
    assert_staged_equals_rest(tmp_path, PERP, "perp")


def test_an_unrouted_usdm_url_gets_no_klines_and_is_treated_as_stalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accelerate(monkeypatch, START, 60)
    hub = SandboxStream(seed=7)
    with serve_sandbox_stream(hub) as (spot, futures):
        unrouted = futures.removesuffix("/market")  # the pre-2026-04 URL
        collector, _ = make_collector(
            tmp_path, hub=hub, connect=websocket_connector(), spot_url=spot,
            futures_url=unrouted, stall_seconds=1.0, sweep_seconds=0.5,
        )  # fmt: skip
        with running(collector):
            time.sleep(4)
    perp = next(c for c in collector.status.connections if c.name == "perp-1")
    assert perp.reconnects >= 1 and "no message" in (perp.last_error or "")
    status = collector.status.targets[f"{PERP}/BTCUSDT"]
    assert status.ws_candles == 0  # nothing came on the stream ...
    assert_staged_equals_rest(tmp_path, PERP, "perp")  # ... and REST kept the staging whole
