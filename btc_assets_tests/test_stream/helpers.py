"""A collector on the sandbox stream, an accelerated clock, and the REST truth to compare."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest

from btc_assets import clock
from btc_assets.ops.stream import rest_filler
from btc_assets.sandbox.binance_stream import SandboxStream, StreamFaults
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.settings import (
    SANDBOX_BINANCE_FUTURES_STREAM_URL,
    SANDBOX_BINANCE_FUTURES_URL,
    SANDBOX_BINANCE_SPOT_STREAM_URL,
    SANDBOX_BINANCE_SPOT_URL,
)
from btc_assets.stream.collector import StreamCollector, stream_targets
from btc_assets.stream.staging import Staging
from btc_assets.vendors.binance import BinanceClient

START = datetime(2026, 12, 6, 10, 0, 20, tzinfo=UTC)
BTC = SimpleNamespace(perp="BTCUSDT", spot="BTCUSDT")


def accelerate(monkeypatch: pytest.MonkeyPatch, start: datetime, speed: float) -> None:
    """The project's clock from ``start``, ``speed`` times real time, for everything."""
    real0 = time.time()
    monkeypatch.setattr(
        clock, "epoch_seconds", lambda: start.timestamp() + (time.time() - real0) * speed
    )


def rest_client() -> BinanceClient:
    return BinanceClient(
        SANDBOX_BINANCE_SPOT_URL, SANDBOX_BINANCE_FUTURES_URL, transport=SandboxTransport(seed=7)
    )


def make_collector(
    root: Path,
    faults: StreamFaults | None = None,
    members: tuple[Any, ...] = (BTC,),
    hub: SandboxStream | None = None,
    **options: Any,
) -> tuple[StreamCollector, SandboxStream]:
    hub = hub or SandboxStream(seed=7, faults=faults or StreamFaults())
    settings: dict[str, Any] = {
        "spot_url": SANDBOX_BINANCE_SPOT_STREAM_URL,
        "futures_url": SANDBOX_BINANCE_FUTURES_STREAM_URL,
        "connect": hub,
        "rest_fill": rest_filler(rest_client()),
        "env": "sandbox",
        "grace_ms": 2_000,
        "stall_seconds": 2.0,
        "sweep_seconds": 0.5,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        **options,
    }
    collector = StreamCollector(Staging(root), stream_targets(members), **settings)
    return collector, hub


@contextmanager
def running(collector: StreamCollector) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        STOPPED[str(collector.staging.root)] = clock.epoch_ms()
        stop.set()
        thread.join(timeout=10)


# When each staging root's collector was last stopped (data clock): a test judges the
# staging as of then, not as of a clock that kept running during teardown.
STOPPED: dict[str, int] = {}


def truth(market: str, symbol: str, day_start: datetime, end: datetime) -> pl.DataFrame:
    """What REST serves for (day_start, end]: the reference a staged day must equal."""
    client = rest_client()
    if market == "spot":
        return client.spot_klines(symbol, "1m", day_start, end)
    return client.futures_klines(symbol, "1m", day_start, end)
