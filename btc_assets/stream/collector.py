"""The stream collector: closed 1m candles of every configured symbol into the staging area.

One thread per websocket connection (Binance's per-connection stream limits decide how many),
one sweeper thread, one state writer. Nothing here knows Dagster or the lake.

- Only closed candles (``x = true``) are stored; forming updates are counted and dropped.
- After every (re)connect, and every ``sweep_seconds``, the minutes of today (and of
  yesterday, while it is being collected) that closed more than ``grace_ms`` ago and are not
  staged are asked of REST and staged as ``source = rest``: a dropped message, a dead
  connection or a ``kill -9`` leaves no silent hole, and each fill is logged and counted.
- A connection silent for ``stall_seconds`` is treated as dead. Reconnects back off
  exponentially (``backoff_base`` doubling to ``backoff_cap`` seconds, with jitter), reset
  once a connection has stayed up a minute.
- A connection older than ``max_connection_age_s`` is replaced before Binance's 24 h limit:
  the new one is opened first, then the old one closed (make before break).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from btc_assets import clock
from btc_assets.stream.staging import (
    MINUTE_MS,
    Staging,
    day_of_open,
    last_due_open,
    minute_runs,
    missing_in_day,
)
from btc_assets.vendors.binance_parse import kline_frame, parse_kline_rows
from btc_assets.vendors.binance_stream import (
    Connector,
    Market,
    StreamSocket,
    combined_url,
    connection_groups,
    parse_message,
    stream_name,
)
from btc_assets.vendors.errors import VendorError

log = logging.getLogger("btc_assets.stream")

# (target, first missing open ms, last missing open ms) -> closed candles in KLINE_SCHEMA
RestFill = Callable[["StreamTarget", int, int], pl.DataFrame]
STABLE_AFTER_S = 60.0  # a connection up this long resets the backoff


class Stalled(Exception):
    """No message for longer than the stall limit: the connection is dead to us."""


@dataclass(frozen=True)
class StreamTarget:
    table: str  # the lake table the candles are for
    market: Market
    symbol: str  # the exchange's symbol (spot pair or perp)

    @property
    def stream(self) -> str:
        return stream_name(self.symbol)


@dataclass
class TargetStatus:
    table: str
    symbol: str
    last_closed_open_ms: int | None = None
    ws_candles: int = 0
    rest_candles: int = 0
    duplicates: int = 0
    forming_ignored: int = 0


@dataclass
class ConnectionStatus:
    name: str
    url: str
    streams: int
    connected: bool = False
    connected_since_ms: int | None = None
    connects: int = 0
    reconnects: int = 0
    rollovers: int = 0
    last_message_ms: int | None = None
    last_error: str | None = None
    malformed: int = 0


@dataclass
class CollectorStatus:
    env: str
    pid: int = field(default_factory=os.getpid)
    started_ms: int = field(default_factory=clock.epoch_ms)
    connections: list[ConnectionStatus] = field(default_factory=list)
    targets: dict[str, TargetStatus] = field(default_factory=dict)
    rest_fills: int = 0
    updated_ms: int = 0


def stream_targets(symbols: Iterable[Any]) -> list[StreamTarget]:
    """Every basket member's perp stream, and its spot pair's (once per pair)."""
    from btc_assets.core.tables import PERP_1M, SPOT_1M

    targets: dict[tuple[str, str], StreamTarget] = {}
    for spec in symbols:
        targets.setdefault(("perp", spec.perp), StreamTarget(PERP_1M.name, "perp", spec.perp))
        if spec.spot:
            targets.setdefault(("spot", spec.spot), StreamTarget(SPOT_1M.name, "spot", spec.spot))
    return list(targets.values())


class StreamCollector:
    def __init__(
        self,
        staging: Staging,
        targets: Sequence[StreamTarget],
        *,
        spot_url: str,
        futures_url: str,
        connect: Connector,
        rest_fill: RestFill,
        env: str,
        grace_ms: int = 5_000,
        stall_seconds: float = 30.0,
        sweep_seconds: float = 15.0,
        max_connection_age_s: float = 23 * 3600,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        keep_days: int = 3,
        state_every_s: float = 2.0,
    ) -> None:
        self.staging, self.targets, self.env = staging, list(targets), env
        self.connect, self.rest_fill = connect, rest_fill
        self.grace_ms, self.stall_seconds, self.sweep_seconds = (
            grace_ms,
            stall_seconds,
            sweep_seconds,
        )
        self.max_connection_age_s = max_connection_age_s
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.keep_days, self.state_every_s = keep_days, state_every_s
        self.by_stream = {(t.market, t.stream): t for t in self.targets}
        self.status = CollectorStatus(env=env)
        today = day_of_open(clock.epoch_ms())
        for t in self.targets:
            self.status.targets[self._key(t)] = TargetStatus(
                t.table,
                t.symbol,
                last_closed_open_ms=staging.last_open_ms(t.table, t.symbol, today),
            )
        self.groups: list[tuple[Market, str, list[StreamTarget]]] = []
        self.origins: dict[Market, str] = {"spot": f"{spot_url.rstrip('/')}/stream",
                                           "perp": f"{futures_url.rstrip('/')}/stream"}  # fmt: skip
        for market, base in (("spot", spot_url), ("perp", futures_url)):
            mine = [t for t in self.targets if t.market == market]
            for n, names in enumerate(connection_groups(market, [t.stream for t in mine])):
                group = [self.by_stream[(market, s)] for s in names]
                url = combined_url(base, names)
                self.groups.append((market, url, group))
                self.status.connections.append(
                    ConnectionStatus(f"{market}-{n + 1}", url.split("?")[0], len(names))
                )
        self._fill_lock = threading.Lock()
        self._started_days = {day_of_open(clock.epoch_ms())}

    @staticmethod
    def _key(target: StreamTarget) -> str:
        return f"{target.table}/{target.symbol}"

    # --- staging ---------------------------------------------------------------------------

    def _stage(self, target: StreamTarget, frame: pl.DataFrame, source: str, origin: str) -> int:
        new = self.staging.append(
            target.table, target.symbol, frame, source=source, env=self.env, origin=origin,
            received_ms=clock.epoch_ms(),
        )  # fmt: skip
        st = self.status.targets[self._key(target)]
        if new and frame.height:
            newest = int(frame["ts"].dt.epoch("ms").max()) - MINUTE_MS  # type: ignore[arg-type]
            st.last_closed_open_ms = max(st.last_closed_open_ms or 0, newest)
        if source == "ws":
            st.ws_candles += new
            st.duplicates += frame.height - new
        else:
            st.rest_candles += new
        return new

    def handle(
        self, market: Market, origin: str, text: str | bytes, conn: ConnectionStatus
    ) -> None:
        """One message: a closed candle is staged; anything else is counted."""
        try:
            update = parse_message(text, origin)
        except VendorError as exc:
            conn.malformed += 1
            log.warning("%s: skipped a malformed message (%s); the sweep fills its minute",
                        conn.name, exc)  # fmt: skip
            return
        if update is None:
            return
        target = self.by_stream.get((market, update.stream))
        if target is None:
            return
        if not update.closed:
            self.status.targets[self._key(target)].forming_ignored += 1
            return
        frame = kline_frame(parse_kline_rows([update.row], origin), target.symbol, MINUTE_MS)
        self._stage(target, frame, "ws", origin)

    def fill_gaps(
        self, targets: Sequence[StreamTarget], reason: str, connected_ms: int | None = None
    ) -> int:
        """Stage over REST every candle due and missing; return how many were filled.

        Due: closed ``grace_ms`` ago (the websocket may still be delivering it), or, right
        after connecting, closed before the connection opened (it never comes on it).
        """
        now = clock.epoch_ms()
        cut = (
            now - self.grace_ms if connected_ms is None else max(connected_ms, now - self.grace_ms)
        )
        due_through = last_due_open(cut)
        today = day_of_open(now)
        filled = 0
        with self._fill_lock:  # one sweep at a time: two would ask REST for the same minutes
            for target in targets:
                days = [today]
                yesterday = today - timedelta(days=1)
                if (
                    yesterday in self._started_days
                    or self.staging.path(target.table, target.symbol, yesterday).exists()
                ):
                    days.insert(0, yesterday)
                for day in days:
                    filled += self._fill_day(target, day, due_through, reason)
        return filled

    def _fill_day(self, target: StreamTarget, day: date, due_through: int, reason: str) -> int:
        have = self.staging.staged_opens(target.table, target.symbol, day)
        missing = missing_in_day(have, day, due_through)
        filled = 0
        for first, final in minute_runs(missing):
            try:
                frame = self.rest_fill(target, first, final)
            except VendorError as exc:
                log.warning("REST gap fill of %s %s failed (%s); the next sweep retries",
                            target.table, target.symbol, exc)  # fmt: skip
                return filled
            frame = frame.filter(
                (pl.col("ts").dt.epoch("ms") > first)
                & (pl.col("ts").dt.epoch("ms") <= final + MINUTE_MS)
            )
            new = self._stage(target, frame, "rest", self.origins[target.market])
            filled += new
            self.status.rest_fills += 1 if new else 0
            short = (final - first) // MINUTE_MS + 1 - frame.height
            log.info(
                "%s %s: filled %d of %d missing minute(s) over REST (%s..%s UTC, %s)%s",
                target.table, target.symbol, new, (final - first) // MINUTE_MS + 1,
                _hhmm(first), _hhmm(final), reason,
                f"; REST has no candle for {short} of them" if short > 0 else "",
            )  # fmt: skip
        return filled

    # --- connections -----------------------------------------------------------------------

    def _backoff(self, attempt: int, stop: threading.Event) -> None:
        wait = min(self.backoff_cap, self.backoff_base * 2**attempt)
        stop.wait(wait * random.uniform(0.5, 1.0))

    def _open(self, url: str, conn: ConnectionStatus) -> StreamSocket:
        sock = self.connect(url)
        conn.connects += 1
        conn.reconnects = conn.connects - 1
        conn.connected, conn.connected_since_ms = True, clock.epoch_ms()
        conn.last_error = None
        return sock

    def run_connection(self, index: int, stop: threading.Event) -> None:
        market, url, group = self.groups[index]
        conn = self.status.connections[index]
        origin = self.origins[market]
        attempt = 0
        while not stop.is_set():
            try:
                sock = self._open(url, conn)
            except Exception as exc:
                conn.last_error = f"connect: {exc}"
                log.warning("%s: cannot connect (%s); retrying", conn.name, exc)
                self._backoff(attempt, stop)
                attempt += 1
                continue
            # Candles that closed while we were away never come on the new connection.
            self.fill_gaps(group, "after connecting", conn.connected_since_ms)
            opened = last_message = time.monotonic()
            try:
                while not stop.is_set():
                    if time.monotonic() - opened >= self.max_connection_age_s:
                        sock = self._rollover(url, sock, conn, market, origin)
                        opened = last_message = time.monotonic()
                        self.fill_gaps(
                            group, "after rolling the connection over", conn.connected_since_ms
                        )
                    try:
                        text = sock.recv(timeout=min(1.0, self.stall_seconds))
                    except TimeoutError:
                        if time.monotonic() - last_message > self.stall_seconds:
                            raise Stalled(f"no message for {self.stall_seconds:.0f} s") from None
                        continue
                    last_message = time.monotonic()
                    conn.last_message_ms = clock.epoch_ms()
                    self.handle(market, origin, text, conn)
                    if last_message - opened > STABLE_AFTER_S:
                        attempt = 0
            except Exception as exc:
                conn.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: connection lost (%s); reconnecting", conn.name, conn.last_error)
            finally:
                conn.connected = False
                _close_quietly(sock)
            if not stop.is_set():
                self._backoff(attempt, stop)
                attempt += 1

    def _rollover(
        self, url: str, old: StreamSocket, conn: ConnectionStatus, market: Market, origin: str
    ) -> StreamSocket:
        """A fresh connection before the old one reaches Binance's 24 h limit."""
        new = self._open(url, conn)
        conn.rollovers += 1
        conn.reconnects = conn.connects - 1 - conn.rollovers
        while True:  # what the old one still holds, then close it
            try:
                self.handle(market, origin, old.recv(timeout=0), conn)
            except Exception:
                break
        _close_quietly(old)
        log.info("%s: rolled over to a new connection (age limit)", conn.name)
        return new

    # --- the whole -------------------------------------------------------------------------

    def sweep_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.sweep_seconds):
            try:
                self.fill_gaps(self.targets, "sweep")
                self.staging.prune(day_of_open(clock.epoch_ms()) - timedelta(days=self.keep_days))
            except Exception as exc:
                log.warning("gap sweep failed: %s", exc)

    def write_state(self) -> None:
        self.status.updated_ms = clock.epoch_ms()
        self.staging.write_state(asdict(self.status))

    def state_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.write_state()
            except OSError as exc:
                log.warning("cannot write the collector state: %s", exc)
            stop.wait(self.state_every_s)

    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set."""
        threads = [
            threading.Thread(target=self.run_connection, args=(i, stop), daemon=True,
                             name=f"stream-{self.status.connections[i].name}")
            for i in range(len(self.groups))
        ]  # fmt: skip
        threads.append(threading.Thread(target=self.sweep_forever, args=(stop,), daemon=True))
        threads.append(threading.Thread(target=self.state_forever, args=(stop,), daemon=True))
        for t in threads:
            t.start()
        stop.wait()
        for t in threads:
            t.join(timeout=5)
        self.write_state()


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def _close_quietly(sock: Any) -> None:
    with contextlib.suppress(Exception):
        sock.close()
