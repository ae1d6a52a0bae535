"""The lake reads behind the market-data routes: only days that may be served, and why not.

A day of a table is served when it is

- committed and verified against its manifest (``Lake.read_days``: size and sha256),
- written in this service's env (``provenance["env"]``: live never serves a sandbox day),
- not blocked by its quality gate (``config.table_gate``, asked per table and symbol),

the rules ``latest.py`` applies to features_1h. Every other day of the request is reported
with its reason, never silently left out.

Hashing a day on every request would cost more than the request, so a verification is kept
with the day's fingerprint: the ``stat`` of its manifest and of the data file it names
(inode, size, mtime and ctime in ns; ``ctime`` cannot be set back by a writer). A rewritten
day (new manifest) or a file changed in place (a flipped byte changes mtime/ctime) no longer
matches and is verified again. The parsed frames are kept by the file's sha256 (files are
content-addressed and immutable), in a small LRU. The gate's answers are kept
``gate_seconds`` (the service's poll interval) per (table, symbol, day).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from btc_assets.core.tables import Table
from btc_assets.lake import MANIFEST, DayWrite, Lake
from btc_assets.lake.storage import Location
from btc_assets.service.config import TableGate

log = logging.getLogger("btc_assets.service")
NOT_IN_LAKE = "not in the lake"
# Provenance entries shown in a response's ``source`` (what the writers record).
SHOWN_PROVENANCE = ("env", "host", "endpoint", "closed", "source")
V = TypeVar("V")
Fingerprint = Hashable  # Lake.fingerprint: a stat locally, a generation on GCS


class GateUnavailable(RuntimeError):
    """The quality gate could not be asked (the instance's database is down...)."""


class LruCache(Generic[V]):
    """A thread-safe mapping that forgets its least recently used entries beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


@dataclass(frozen=True)
class _Verified:
    manifest: Fingerprint
    data_path: Location
    data: Fingerprint | None
    written: DayWrite | None
    error: str | None


@dataclass(frozen=True)
class MarketRead:
    """The rows of the served days (every column of the table's schema), the days served,
    and every other day asked for with the reason it is not."""

    frame: pl.DataFrame
    used: dict[date, DayWrite]
    skipped: dict[date, str]

    def source(self, table: str, env: str, gate: str) -> dict[str, Any]:
        """Where the rows came from, for the response: table, env, gate, each day's file."""
        days = {
            day.isoformat(): {
                "file": written.name,
                "rows": written.rows,
                "sha256": written.sha256,
                **{k: written.provenance[k] for k in SHOWN_PROVENANCE if k in written.provenance},
            }
            for day, written in sorted(self.used.items())
        }
        return {"table": table, "env": env, "gate": gate, "days": days}


class MarketData:
    """Verified, same-env, gate-open reads of the lake's market tables, with caches."""

    def __init__(
        self,
        lake_root: Path | str,
        env: str,
        gate: TableGate | None,
        gate_seconds: float,
        frames: int = 512,
    ) -> None:
        self.lake = Lake(lake_root)
        self.env = env
        self.gate = gate
        self.gate_seconds = gate_seconds
        self._verified: dict[tuple[str, str, date], _Verified] = {}
        self._frames: LruCache[pl.DataFrame] = LruCache(frames)
        self._gate_answers: dict[tuple[str, str, date], tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        self.verifications = 0  # days hashed, for tests and the curious

    # ------------------------------------------------------------------ reads

    def read(self, table: Table, symbol: str, days: Iterable[date]) -> MarketRead:
        """The served days of ``days`` for ``table``/``symbol``, concatenated and sorted by
        ``ts``; ``GateUnavailable`` when the gate cannot be asked."""
        wanted = sorted(set(days))
        blocked = self.blocked(table.name, symbol, wanted)
        used: dict[date, DayWrite] = {}
        skipped: dict[date, str] = {}
        frames: list[pl.DataFrame] = []
        for day in wanted:
            written, why = self._usable(table.name, symbol, day, blocked)
            if written is None:
                skipped[day] = str(why)
                continue
            try:
                frames.append(self._frame(table, written))
            except Exception as exc:  # a schema drift, a footer pyarrow accepted but polars not
                skipped[day] = f"unreadable: {type(exc).__name__}: {exc} ({written.path})"
                continue
            used[day] = written
        schema = dict(table.schema)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
        return MarketRead(frame.sort("ts", maintain_order=True), used, skipped)

    def days_present(self, table: str, symbol: str) -> list[date]:
        return self.lake.days_present(table, symbol)

    def newest_days(self, tables: Iterable[str], symbols: Iterable[str]) -> dict[str, Any]:
        """Per table and symbol, the newest day present (not verified: informational)."""
        out: dict[str, Any] = {}
        for table in tables:
            out[table] = {}
            for symbol in symbols:
                present = self.lake.days_present(table, symbol)
                out[table][symbol] = present[-1].isoformat() if present else None
        return out

    # ------------------------------------------------------------------ the rules

    def blocked(self, table: str, symbol: str, days: list[date]) -> dict[date, str]:
        """The gate's reasons for ``days``, asked at most every ``gate_seconds`` per day."""
        if self.gate is None or not days:
            return {}
        now = time.monotonic()
        with self._lock:
            known = {d: self._gate_answers.get((table, symbol, d)) for d in days}
        stale = [
            d for d, seen in known.items() if seen is None or now - seen[0] > self.gate_seconds
        ]
        if stale:
            try:
                answer = dict(self.gate(table, symbol, stale))
            except Exception as exc:
                raise GateUnavailable(
                    f"the quality gate of {table} could not be asked for {symbol}: {exc}"
                ) from exc
            with self._lock:
                for day in stale:
                    known[day] = self._gate_answers[table, symbol, day] = (now, answer.get(day))
        return {d: seen[1] for d, seen in known.items() if seen is not None and seen[1]}

    def _usable(
        self, table: str, symbol: str, day: date, blocked: Mapping[date, str]
    ) -> tuple[DayWrite | None, str | None]:
        if day in blocked:
            return None, f"blocked: {blocked[day]}"
        verified = self._verify(table, symbol, day)
        if verified is None:
            return None, NOT_IN_LAKE
        if verified.written is None:
            return None, f"does not verify: {verified.error}"
        written_env = verified.written.provenance.get("env")
        if written_env != self.env:
            return None, (
                f"written in {written_env or 'an unrecorded'} env, this is "
                f"{self.env} ({verified.written.path})"
            )
        return verified.written, None

    def _verify(self, table: str, symbol: str, day: date) -> _Verified | None:
        """The day's verification, reused while its manifest and file are unchanged."""
        key = (table, symbol, day)
        manifest = self.lake.fingerprint(
            self.lake.storage.join(self.lake.day_dir(table, symbol, day), MANIFEST)
        )
        if manifest is None:
            return None
        cached = self._verified.get(key)
        if (
            cached is not None
            and cached.manifest == manifest
            and cached.data == self.lake.fingerprint(cached.data_path)
        ):
            return cached
        # Fingerprints first, then the hashing: a change during the read shows next time.
        data_path = self.lake.day_file(table, symbol, day)
        data = self.lake.fingerprint(data_path)
        read = self.lake.read_days(table, symbol, [day])
        self.verifications += 1
        written = read.committed.get(day)
        error = None if written is not None else read.errors.get(day, NOT_IN_LAKE)
        if written is not None and written.path != data_path:  # rewritten in between
            data = None  # never matches: verified again on the next request
        verified = _Verified(manifest, data_path, data, written, error)
        if error is not None:
            log.warning("%s %s %s not served: %s", table, symbol, day, error)
        self._verified[key] = verified
        return verified

    def _frame(self, table: Table, written: DayWrite) -> pl.DataFrame:
        key = (table.name, written.sha256)
        frame = self._frames.get(key)
        if frame is None:
            frame = self.lake.scan([written], dict(table.schema)).collect()
            frame = self._frames.put(key, frame)
        return frame
