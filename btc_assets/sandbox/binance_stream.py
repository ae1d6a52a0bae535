"""The sandbox's Binance kline websocket: the same URLs and messages, from the same market.

In-process, :class:`SandboxStream` is a connector (``url -> socket``) the collector takes in
place of ``websockets``; on loopback, ``sandbox/stream_server.py`` serves the very same feed
over a real websocket. Each candle is the row ``/klines`` serves (``binance_klines``), so a
minute is identical whether it came by stream or by REST.

Per stream and minute the feed sends a few ``x = false`` updates of the forming candle
(every ``update_ms`` of real time, 250 ms on USD-M as documented, 2 s on spot), then the
closed candle once (``x = true``). USD-M klines come only on the routed ``/market`` path:
an unrouted URL opens and then stays silent, as Binance's does since 2026-04-23.

Faults (:class:`StreamFaults`), per connection: ``drop_after`` (TCP reset after N closed
candles), ``close_after`` (the server closes with 1001), ``stall_after`` (silence for
``stall_seconds``), ``lifetime_s`` (the 24 h limit, scaled down), for each market's first
``fault_connections`` connections; ``duplicate`` and ``out_of_order`` closed candles on
every connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from btc_assets import clock
from btc_assets.sandbox import market as mk
from btc_assets.sandbox.binance_klines import kline_row
from btc_assets.sandbox.universe import Universe

Market = Literal["spot", "perp"]
UPDATE_MS = {"perp": 250, "spot": 2000}
_POLL_S = 0.02


class StreamDropped(ConnectionResetError):
    """The server reset the TCP connection (no close frame)."""


class ServerClosed(ConnectionError):
    """The server sent a close frame (1001 going away)."""


@dataclass(frozen=True)
class StreamFaults:
    drop_after: int | None = None
    close_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float | None = None  # None: the stalled connection never speaks again
    lifetime_s: float | None = None
    fault_connections: int = 1  # wire faults hit each market's first N connections
    duplicate: bool = False
    out_of_order: bool = False
    forming_updates: bool = True

    @classmethod
    def from_json(cls, text: str) -> StreamFaults:
        return cls(**json.loads(text)) if text.strip() else cls()


def stream_url_parts(url: str) -> tuple[Market, bool, list[str]]:
    """(market, routed, stream names) of a combined-stream URL. USD-M is told by its host
    (``fstream``) or, on the loopback server, by a ``/futures`` path prefix."""
    parts = urlsplit(url)
    perp = "fstream" in parts.netloc or parts.path.startswith("/futures")
    routed = not perp or "/market/" in parts.path
    names = [s for s in parse_qs(parts.query).get("streams", [""])[0].split("/") if s]
    return ("perp" if perp else "spot"), routed, names


@dataclass
class ConnectionLog:
    url: str
    market: Market
    number: int  # the market's nth connection
    opened_ms: int
    closed_candles: int = 0
    ended: str | None = None


@dataclass
class _Stream:
    name: str
    symbol: str  # the market's key (the perp symbol) for kline_row
    current_open: int


class StreamFeed:
    """One connection's messages, generated from the market as the clock moves."""

    def __init__(self, hub: SandboxStream, url: str) -> None:
        self.hub = hub
        self.market, self.routed, names = stream_url_parts(url)
        self.log = hub._opened(url, self.market)
        self.faulty = self.log.number <= hub.faults.fault_connections
        self.opened_real = time.monotonic()
        now = hub.now_ms()
        self.streams: list[_Stream] = []
        for name in names:
            symbol, _, kind = name.partition("@")
            inst = (
                hub.universe.spot(symbol.upper())
                if self.market == "spot"
                else hub.universe.perp(symbol.upper())
            )
            if inst is None or kind != "kline_1m":
                continue  # Binance subscribes to unknown streams and sends nothing
            self.streams.append(_Stream(name, inst.perp, now // mk.MINUTE_MS * mk.MINUTE_MS))
        self.queue: deque[str] = deque()
        self.held: str | None = None  # out_of_order: a closed candle sent after the next one
        self.last_update = 0.0
        self.stalled_at: float | None = None
        self.closed = False

    def _message(self, stream: _Stream, open_ms: int, now: int) -> str:
        row = json.loads(kline_row(self.hub.seed, stream.symbol, self.market, open_ms, now))
        closed = row[6] < now
        k = {"t": row[0], "T": row[6], "s": stream.name.split("@")[0].upper(), "i": "1m",
             "f": 100, "L": 200, "o": row[1], "c": row[4], "h": row[2], "l": row[3],
             "v": row[5], "n": row[8], "x": closed, "q": row[7], "V": row[9], "Q": row[10],
             "B": "0"}  # fmt: skip
        data = {"e": "kline", "E": now, "s": k["s"], "k": k}
        return json.dumps({"stream": stream.name, "data": data}, separators=(",", ":"))

    def _check_wire(self) -> None:
        f, n = self.hub.faults, self.log.closed_candles
        if not self.faulty:
            return
        if f.lifetime_s is not None and time.monotonic() - self.opened_real >= f.lifetime_s:
            raise ServerClosed("connection lifetime reached")
        if f.drop_after is not None and n >= f.drop_after:
            raise StreamDropped("sandbox stream dropped the connection")
        if f.close_after is not None and n >= f.close_after:
            raise ServerClosed("server closing")

    def _stalled(self) -> bool:
        f = self.hub.faults
        if not self.faulty or f.stall_after is None or self.log.closed_candles < f.stall_after:
            return False
        if self.stalled_at is None:
            self.stalled_at = time.monotonic()
        return f.stall_seconds is None or time.monotonic() - self.stalled_at < f.stall_seconds

    def _produce(self) -> None:
        now = self.hub.now_ms()
        faults = self.hub.faults
        for stream in self.streams:
            while stream.current_open + mk.MINUTE_MS <= now:  # closed since the last look
                message = self._message(stream, stream.current_open, now)
                stream.current_open += mk.MINUTE_MS
                self.log.closed_candles += 1
                copies = [message, message] if faults.duplicate else [message]
                if faults.out_of_order:
                    if self.held is None:
                        self.held = message
                        continue
                    copies, self.held = [*copies, self.held], None
                self.queue.extend(copies)
        update_ms = UPDATE_MS[self.market]
        if faults.forming_updates and time.monotonic() - self.last_update >= update_ms / 1000:
            self.last_update = time.monotonic()
            self.queue.extend(self._message(s, s.current_open, now) for s in self.streams)

    def recv(self, timeout: float | None = None) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.closed:
                raise ServerClosed("connection closed")
            self._check_wire()
            if self.routed and not self._stalled():
                if not self.queue:
                    self._produce()
                if self.queue:
                    return self.queue.popleft()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("no message")
            time.sleep(_POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic()))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.log.ended = self.log.ended or "client closed"


@dataclass
class SandboxStream:
    """The in-process connector: ``stream(url)`` opens a connection to the synthetic market.

    ``now_ms`` is the data clock (defaults to the project's), so a pinned or accelerated
    clock moves the stream with everything else. ``connections`` records every connection
    for tests.
    """

    seed: int = 7
    faults: StreamFaults = field(default_factory=StreamFaults)
    symbols: Sequence[str] | None = None
    now_ms: Callable[[], int] = field(default=lambda: clock.epoch_ms())
    connections: list[ConnectionLog] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.universe = Universe(self.symbols)
        self._lock = threading.Lock()

    def _opened(self, url: str, market: Market) -> ConnectionLog:
        with self._lock:
            number = 1 + sum(c.market == market for c in self.connections)
            log = ConnectionLog(url, market, number, self.now_ms())
            self.connections.append(log)
            return log

    def __call__(self, url: str) -> StreamFeed:
        return StreamFeed(self, url)
