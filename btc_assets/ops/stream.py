"""``btc-assets stream``: the websocket collector, assembled from the settings.

The one place that picks the wire: in the sandbox env the in-process sandbox stream and
REST transport, in live Binance's websockets (``websockets``) and REST hosts. Stops
cleanly on SIGTERM/SIGINT; a ``kill -9`` loses nothing the restart cannot fill over REST.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from typing import Any

import polars as pl

from btc_assets.settings import Settings, SettingsError
from btc_assets.stream.collector import RestFill, StreamCollector, StreamTarget, stream_targets
from btc_assets.stream.staging import MINUTE_MS, Staging
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.binance_stream import Connector, websocket_connector

log = logging.getLogger("btc_assets.stream")


def _wires(settings: Settings) -> tuple[Connector, Any]:
    """(websocket connector, httpx transport for the REST fills); live imports no sandbox."""
    if not settings.is_sandbox:
        return websocket_connector(), None
    from btc_assets.sandbox.binance_stream import SandboxStream, StreamFaults
    from btc_assets.sandbox.transport import SandboxTransport

    try:
        faults = StreamFaults.from_json(settings.stream.sandbox_faults)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"BTC_ASSETS_SANDBOX_STREAM_FAULTS: {exc}") from None
    stream = SandboxStream(seed=settings.sandbox_seed, faults=faults)
    return stream, SandboxTransport(seed=settings.sandbox_seed)


def rest_filler(client: BinanceClient) -> RestFill:
    """Missing minutes of a stream, asked of Binance's REST klines (closed candles only)."""

    def rest_fill(target: StreamTarget, first_open: int, last_open: int) -> pl.DataFrame:
        start = datetime.fromtimestamp(first_open / 1000, UTC)
        end = datetime.fromtimestamp((last_open + MINUTE_MS) / 1000, UTC)
        if target.market == "spot":
            return client.spot_klines(target.symbol, "1m", start, end)
        return client.futures_klines(target.symbol, "1m", start, end)

    return rest_fill


def build_collector(settings: Settings, **overrides: Any) -> StreamCollector:
    connect, transport = _wires(settings)
    client = BinanceClient(
        settings.binance_spot_base_url, settings.binance_futures_base_url, transport=transport,
        max_wait_seconds=settings.vendor_max_wait_seconds,
    )  # fmt: skip

    options: dict[str, Any] = {
        "connect": connect,
        "rest_fill": rest_filler(client),
        "env": settings.env,
        "spot_url": settings.stream.spot_url,
        "futures_url": settings.stream.futures_url,
        "max_connection_age_s": settings.stream.max_connection_hours * 3600,
        "keep_days": settings.stream.keep_days,
        **overrides,
    }
    return StreamCollector(
        Staging(settings.stream_dir), stream_targets(settings.symbols), **options
    )


def run_stream(settings: Settings, metrics_port: int | None = None) -> int:
    from btc_assets.stream.metrics import serve_metrics

    collector = build_collector(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    port = settings.stream.metrics_port if metrics_port is None else metrics_port
    serve_metrics(collector.status, port)
    names = ", ".join(f"{t.market}:{t.symbol}" for t in collector.targets)
    log.info(
        "stream collector (%s) for %s into %s; metrics on :%s", settings.env, names,
        collector.staging.root, port or "off",
    )  # fmt: skip
    collector.run(stop)
    return 0
