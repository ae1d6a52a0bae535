"""The stream's staging area: closed 1m candles per (table, symbol, UTC day), crash-safe.

The only code that knows its layout: ``<root>/<table>/<symbol>/<YYYY-MM-DD>.sqlite``, one
SQLite file per day (partition day of the bar: open time in the day, so the 23:59 candle,
labelled next midnight, is the day's last), plus the collector's state in
``<root>/_collector.json``.

Why SQLite: a ``kill -9`` at any instant leaves every committed transaction whole and
nothing half-written (WAL journal; ``synchronous=NORMAL`` survives a process crash, which
is what we guard against; a power cut may lose the last commits, which the REST gap fill
on restart puts back). ``open_ms`` is the primary key and rows go in with ``INSERT OR
IGNORE``, so a duplicate or a replayed candle can never be stored twice, whatever order
they come in. Each file records the env and the stream URL it was filled from; a reader
in another env refuses it (sandbox data never passes as live).

Dagster never writes here and the collector never writes the lake: the ``live_today`` job
reads a day from here when it is whole (:func:`staged_day`), else it asks REST.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from btc_assets.core.schema import KLINE_SCHEMA
from btc_assets.vendors.binance_parse import kline_frame

MINUTE_MS = 60_000
DAY_MS = 86_400_000
STATE_FILE = "_collector.json"
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume", "trades",
                 "taker_buy_volume", "taker_buy_quote_volume")  # fmt: skip
_CREATE = f"""
CREATE TABLE IF NOT EXISTS candles (
    open_ms INTEGER PRIMARY KEY,
    close_ms INTEGER NOT NULL,
    {", ".join(f"{c} {'INTEGER' if c == 'trades' else 'REAL'} NOT NULL" for c in VALUE_COLUMNS)},
    source TEXT NOT NULL,        -- ws: the stream; rest: a gap filled after a disconnect
    received_ms INTEGER NOT NULL -- when the collector stored it (lag figures)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StagingError(RuntimeError):
    """A staging file that cannot be used as asked (another env, another stream)."""


def day_of_open(open_ms: int) -> date:
    return datetime.fromtimestamp(open_ms / 1000, UTC).date()


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def last_due_open(cut_ms: int) -> int:
    """The open time of the newest 1m candle closed by ``cut_ms``."""
    return cut_ms // MINUTE_MS * MINUTE_MS - MINUTE_MS


def missing_in_day(have: Collection[int], day: date, through_open_ms: int) -> list[int]:
    """Open times from ``day``'s start to ``through_open_ms`` (within the day) not in
    ``have``: what the collector asks REST for, and what the live job and verify count."""
    start = day_start_ms(day)
    last = min(through_open_ms, start + DAY_MS - MINUTE_MS)
    return [o for o in range(start, last + 1, MINUTE_MS) if o not in have]


def minute_runs(opens: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted open times as runs of consecutive minutes, (first, last) each."""
    runs: list[tuple[int, int]] = []
    for o in opens:
        if runs and o == runs[-1][1] + MINUTE_MS:
            runs[-1] = (runs[-1][0], o)
        else:
            runs.append((o, o))
    return runs


@dataclass(frozen=True)
class StagedDay:
    """The closed candles staged for one (table, symbol, day)."""

    table: str
    symbol: str
    day: date
    frame: pl.DataFrame  # KLINE_SCHEMA
    env: str
    origin: str  # the stream URL it came from
    sources: dict[str, int]  # rows by how they came (ws, rest)
    last_received_ms: int | None

    def missing_opens(self, through_open_ms: int) -> list[int]:
        """Open times of the minutes from the day's start to ``through_open_ms`` that are
        not staged."""
        have = set((self.frame["ts"].dt.epoch("ms") - MINUTE_MS).to_list())
        return missing_in_day(have, self.day, through_open_ms)


class Staging:
    """Append closed candles, read a day, report what is there. Thread-safe: every call
    opens its own SQLite connection (a few hundred µs; a candle a minute per stream)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, table: str, symbol: str, day: date) -> Path:
        return self.root / table / symbol / f"{day.isoformat()}.sqlite"

    @contextmanager
    def _open(self, path: Path, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(path)
        with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if create:
                db.executescript(_CREATE)
            yield db

    def append(
        self,
        table: str,
        symbol: str,
        frame: pl.DataFrame,
        *,
        source: str,
        env: str,
        origin: str,
        received_ms: int,
    ) -> int:
        """Store closed 1m candles (``KLINE_SCHEMA``); return how many were new.

        One transaction per day file: all of a call's rows for a day are stored or none.
        """
        if frame.is_empty():
            return 0
        rows = frame.select(
            (pl.col("ts").dt.epoch("ms") - MINUTE_MS).alias("open_ms"),
            (pl.col("ts").dt.epoch("ms") - 1).alias("close_ms"),
            *VALUE_COLUMNS,
        ).rows()
        inserted = 0
        by_day: dict[date, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_day.setdefault(day_of_open(row[0]), []).append((*row, source, received_ms))
        for day, records in sorted(by_day.items()):
            with self._open(self.path(table, symbol, day), create=True) as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._claim(db, table, symbol, env, origin)
                    before = db.total_changes
                    marks = ", ".join("?" for _ in range(len(VALUE_COLUMNS) + 4))
                    db.executemany(f"INSERT OR IGNORE INTO candles VALUES ({marks})", records)
                    inserted += db.total_changes - before
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        return inserted

    def staged_opens(self, table: str, symbol: str, day: date) -> set[int]:
        """Open times staged for the day (what the gap sweep compares against)."""
        path = self.path(table, symbol, day)
        if not path.exists():
            return set()
        with self._open(path, create=False) as db:
            return {r[0] for r in db.execute("SELECT open_ms FROM candles")}

    @staticmethod
    def _claim(db: sqlite3.Connection, table: str, symbol: str, env: str, origin: str) -> None:
        """A file holds one env's one stream: refuse to mix in another's candles."""
        wanted = {"env": env, "table": table, "symbol": symbol}
        have = dict(db.execute("SELECT key, value FROM meta").fetchall())
        for key, value in wanted.items():
            if key in have and have[key] != value:
                raise StagingError(
                    f"staging file for {table} {symbol} holds {key}={have[key]!r}, not "
                    f"{value!r}: refusing to mix them (move the stream folder away)"
                )
        db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [*wanted.items(), ("origin", origin)]
        )

    def staged_day(self, table: str, symbol: str, day: date) -> StagedDay | None:
        """The day's closed candles in ``KLINE_SCHEMA``; None if nothing was staged."""
        path = self.path(table, symbol, day)
        if not path.exists():
            return None
        with self._open(path, create=False) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            cur = db.execute(
                f"SELECT open_ms, close_ms, {', '.join(VALUE_COLUMNS)}, source, received_ms "
                "FROM candles ORDER BY open_ms"
            )
            records = cur.fetchall()
        schema = {"open_ms": pl.Int64, "close_ms": pl.Int64}
        schema.update({c: pl.Int64 if c == "trades" else pl.Float64 for c in VALUE_COLUMNS})
        schema.update({"source": pl.String, "received_ms": pl.Int64})
        raw = pl.DataFrame(records, schema=schema, orient="row")
        sources = dict(raw.group_by("source").len().iter_rows()) if raw.height else {}
        return StagedDay(
            table=table,
            symbol=symbol,
            day=day,
            frame=kline_frame(raw.drop("source", "received_ms"), symbol, MINUTE_MS)
            if raw.height
            else pl.DataFrame(schema=KLINE_SCHEMA),
            env=meta.get("env", "?"),
            origin=meta.get("origin", "?"),
            sources={str(k): int(v) for k, v in sources.items()},
            last_received_ms=raw["received_ms"].max() if raw.height else None,  # type: ignore[arg-type]
        )

    def last_open_ms(self, table: str, symbol: str, day: date) -> int | None:
        """The newest staged candle's open time on ``day`` or the day before."""
        for d in (day, day - timedelta(days=1)):
            newest = self._newest_open(table, symbol, d)
            if newest is not None:
                return newest
        return None

    def _newest_open(self, table: str, symbol: str, day: date) -> int | None:
        path = self.path(table, symbol, day)
        if not path.exists():
            return None
        with self._open(path, create=False) as db:
            (newest,) = db.execute("SELECT MAX(open_ms) FROM candles").fetchone()
        return None if newest is None else int(newest)

    def watermark(self, pairs: Sequence[tuple[str, str]], day: date) -> int | None:
        """The close (ms) every (table, symbol) has staged through on ``day``: the oldest of
        their newest candles; None until each has one."""
        newest = []
        for table, symbol in pairs:
            last = self._newest_open(table, symbol, day)
            if last is None:
                return None
            newest.append(last + MINUTE_MS)
        return min(newest) if newest else None

    def integrity(self, path: Path) -> str:
        """SQLite's own verdict on a file: ``ok`` or what is wrong."""
        with self._open(path, create=False) as db:
            return ";".join(r[0] for r in db.execute("PRAGMA integrity_check").fetchall())

    def day_files(self) -> Iterator[tuple[str, str, date, Path]]:
        """(table, symbol, day, path) of every staged day, in order."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*/*/*.sqlite")):
            try:
                day = date.fromisoformat(path.stem)
            except ValueError:
                continue
            yield path.parent.parent.name, path.parent.name, day, path

    def prune(self, keep_from: date) -> list[Path]:
        """Delete staged days before ``keep_from`` (the lake has them by then)."""
        gone = []
        for _, _, day, path in list(self.day_files()):
            if day < keep_from:
                for extra in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    extra.unlink(missing_ok=True)
                gone.append(path)
        return gone

    # --- the collector's state, for ``btc-assets verify`` and the metrics -------------------

    def write_state(self, state: dict[str, Any]) -> None:
        """Atomically replace the state file (a reader never sees half of it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.root / STATE_FILE)

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None


def healthy_day(
    staged: StagedDay | None, *, env: str, now_ms: int
) -> tuple[pl.DataFrame | None, str, list[int]]:
    """The staged day if it holds every candle closed by ``now_ms``; else None, why, and the
    open times missing (empty when nothing could be used at all). Only closed candles (close
    before now) are returned."""
    if staged is None:
        return None, "no stream staging for the day (is `btc-assets stream` running?)", []
    where = f"stream staging of {staged.table} {staged.symbol} {staged.day}"
    if staged.env != env:
        return None, f"{where} was filled in env {staged.env!r}, this run is {env!r}", []
    missing = staged.missing_opens(last_due_open(now_ms))
    if missing:
        first = datetime.fromtimestamp(missing[0] / 1000, UTC)
        return (
            None,
            (
                f"{where} misses {len(missing)} closed minute(s), the first opening "
                f"{first:%H:%M} UTC (collector down or behind)"
            ),
            missing,
        )
    closed = staged.frame.filter(pl.col("ts").dt.epoch("ms") <= now_ms)
    return closed, f"{where}: {closed.height} closed candle(s), none missing", []


def wait_for_healthy_day(
    staging: Staging,
    table: str,
    symbol: str,
    day: date,
    *,
    env: str,
    grace_ms: int,
    now_ms: Callable[[], int],
    poll_s: float = 0.25,
) -> tuple[pl.DataFrame | None, str, StagedDay | None]:
    """:func:`healthy_day`, waiting up to ``grace_ms`` (data clock) while the only missing
    candles closed within the grace: the websocket delivers a close a moment after it."""
    started = now_ms()
    while True:
        staged = staging.staged_day(table, symbol, day)
        now = now_ms()
        frame, why, missing = healthy_day(staged, env=env, now_ms=now)
        recent = missing and missing[0] + MINUTE_MS >= now - grace_ms
        if frame is not None or not recent or now - started >= grace_ms:
            return frame, why, staged
        time.sleep(poll_s)
