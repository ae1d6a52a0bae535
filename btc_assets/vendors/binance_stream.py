"""Binance's kline websocket: stream names, combined-stream URLs, and messages → closed candles.

No Dagster, no settings, no threads: the collector (``btc_assets/stream/``) owns the loop.
USD-M klines are served only on the routed ``/market`` endpoint since 2026-04-23 (an
unrouted connection silently receives no kline data), up to 200 streams a connection;
spot takes 1024. A connection lives at most 24 h; the server pings and the client must
answer (``websockets`` does, in its background thread).

A kline message repeats the forming candle every update (``x = false``) and sends it once
more when it closes (``x = true``): only that last one is a fact, so :func:`parse_message`
returns every update and the caller keeps the closed ones. A closed candle is turned into
the REST kline array (same 12 fields), so it is parsed by the same code as REST pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from btc_assets.vendors.errors import VendorResponseError

VENDOR = "binance"
Market = Literal["spot", "perp"]
MAX_STREAMS = {"spot": 1024, "perp": 200}  # per connection
CONNECTION_LIFETIME_S = 24 * 3600  # Binance closes a connection after this
_KLINE_KEYS = ("t", "T", "o", "h", "l", "c", "v", "q", "n", "V", "Q", "x")


class StreamSocket(Protocol):
    """What the collector needs of a websocket connection (``websockets.sync`` has it)."""

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


# url -> an open connection; raises OSError (or a websockets exception) when it cannot.
Connector = Callable[[str], StreamSocket]


def websocket_connector(open_timeout: float = 10.0) -> Connector:
    """The real wire: ``websockets``' sync client, which answers the server's pings."""
    from websockets.sync.client import connect

    def open_connection(url: str) -> StreamSocket:
        # Our own pings as well: a half-open TCP connection is found within a minute.
        # legacy=True: a plain connection object (the collector closes it itself).
        return connect(url, legacy=True, open_timeout=open_timeout, ping_interval=20,
                       ping_timeout=20, close_timeout=2, max_size=2**20)  # fmt: skip

    return open_connection


def stream_name(symbol: str, interval: str = "1m") -> str:
    return f"{symbol.lower()}@kline_{interval}"


def combined_url(base_url: str, streams: Sequence[str]) -> str:
    """``<base>/stream?streams=a/b``: each message wrapped as ``{"stream":..,"data":..}``."""
    return f"{base_url.rstrip('/')}/stream?streams={'/'.join(streams)}"


def connection_groups(market: Market, streams: Sequence[str]) -> list[list[str]]:
    """Streams split into connections within Binance's per-connection limit."""
    size = MAX_STREAMS[market]
    return [list(streams[i : i + size]) for i in range(0, len(streams), size)]


@dataclass(frozen=True)
class KlineUpdate:
    """One kline update of one stream; ``row`` is the REST kline array of the candle."""

    stream: str
    symbol: str
    interval: str
    open_ms: int
    close_ms: int
    closed: bool
    event_ms: int
    row: list[Any]


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def parse_message(text: str | bytes, endpoint: str) -> KlineUpdate | None:
    """A combined-stream message → its kline update; None for a non-kline message (a
    subscription's ``{"result": null, "id": 1}``). A malformed one raises
    :class:`VendorResponseError` naming the endpoint and what was wrong."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise _bad(endpoint, f"not JSON ({exc}): {str(text)[:120]!r}") from None
    if not isinstance(message, dict):
        raise _bad(endpoint, f"expected an object, got {type(message).__name__}")
    if "stream" not in message:
        if "result" in message or "id" in message:
            return None
        if "code" in message:
            raise _bad(endpoint, f"error {message.get('code')}: {message.get('msg')}")
        raise _bad(endpoint, f"neither a stream message nor a reply: {str(message)[:120]}")
    data = message.get("data")
    if not isinstance(data, dict) or data.get("e") != "kline":
        return None  # another stream's event: not ours to read
    k = data.get("k")
    if not isinstance(k, dict) or any(key not in k for key in _KLINE_KEYS):
        missing = [key for key in _KLINE_KEYS if not isinstance(k, dict) or key not in k]
        raise _bad(endpoint, f"{message['stream']}: kline lacks {missing}")
    if not isinstance(k["x"], bool):
        raise _bad(endpoint, f"{message['stream']}: 'x' is {k['x']!r}, not a boolean")
    try:
        open_ms, close_ms = int(k["t"]), int(k["T"])
    except (TypeError, ValueError):
        raise _bad(endpoint, f"{message['stream']}: times {k['t']!r}, {k['T']!r}") from None
    row = [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"],
           k["Q"], "0"]  # fmt: skip
    return KlineUpdate(
        stream=str(message["stream"]),
        symbol=str(k.get("s") or data.get("s", "")),
        interval=str(k.get("i", "")),
        open_ms=open_ms,
        close_ms=close_ms,
        closed=k["x"],
        event_ms=int(data.get("E") or close_ms),
        row=row,
    )
