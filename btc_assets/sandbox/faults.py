"""Fault injection for the sandbox: what goes wrong, on which path, how many times.

A plan is a JSON list, so it can come from ``BTC_ASSETS_SANDBOX_FAULTS`` or a Dagster config
string::

    [{"kind": "429", "path": "/api/v3/klines", "count": 2, "retry_after": 1},
     {"kind": "gap", "path": "/fapi/v1/klines", "day": "2024-01-02",
      "start_minute": 600, "minutes": 30}]

``count`` is how many matching requests the fault hits (``-1``: all of them); ``skip`` lets
that many matching requests through first (e.g. fail only the second page). Data faults
that model the vendor's history (``gap``, ``bad_ohlc``) default to ``count: -1`` so that
re-fetching a day gives the same hole (or bad print) and a check can see it.

Archive faults (data.binance.vision paths, ``/data/...``) change what the archive has
published, so they persist (``count: -1`` by default for every fault on a ``/data/`` path)
and a fault on ``X.zip`` also governs ``X.zip.CHECKSUM`` (both requests must see one file).
``day`` (optional) picks the files that hold that day: its daily file and its month's file::

    [{"kind": "checksum_mismatch", "path": "/data/spot/*", "day": "2024-01-02"},
     {"kind": "header", "path": "/data/futures/um/*", "present": false}]

- ``checksum_mismatch``: the ``.CHECKSUM`` names a hash that is not the zip's;
- ``corrupt_zip``: the published zip is cut in half (its ``.CHECKSUM`` matches the broken
  bytes, so only unzipping finds it);
- ``archive_404``: the file is missing (HTTP 404);
- ``header``: force the CSV header row ``present`` (true) or absent (false);
- ``microseconds``: every time in the CSV in µs (spot files from 2025 always are);
- ``truncated_archive``: the last ``drop_rows`` rows of the day (each covered day without
  ``day``) are missing from an otherwise valid file;
- ``gap`` / ``bad_ohlc`` on a 1m kline file: the vendor's history, as on the REST paths
  (``day``, ``start_minute``, ``minutes``): those 1m rows are missing, or printed with high
  and low swapped, in every file holding the day;
- ``replaced``: the file was republished as ``revision`` N: the first row of each affected
  day has its third field (open price, funding rate or open interest) raised by N units of
  its last printed digit, and the zip is stamped N days later; new bytes, new checksum.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError

from btc_assets.sandbox.market import (
    DAY_MS,
    EPOCH,
    EPOCH_MS,
    HORIZON_DAYS,
    MINUTE_MS,
    MINUTES,
    day_index,
)

# Answered by the vendor's route module in the vendor's own error shape; "404" by the
# transport, as a host that does not serve the path answers (the web server's HTML page).
HTTP_KINDS = frozenset({"404", "429", "418", "451", "500", "503", "error200"})
# Answered by the wire layer: in-process they raise the httpx exception at once; over the
# loopback socket "timeout" really waits ``delay`` s and "reset"/"connect" drop the socket.
NETWORK_KINDS = frozenset({"timeout", "reset", "connect"})
BODY_KINDS = frozenset({"truncated"})
# Applied by the route to a normal answer. The CoinGlass market-structure routes
# (sandbox/coinglass_heatmap.py, coinglass_whales.py) add their own: "bad_index" (one heatmap
# cell's x_index points past the candles), "candle_ms" (heatmap candle open times in ms, not
# the documented seconds) and "seconds" (whale times in seconds, not ms).
DATA_KINDS = frozenset(
    {"empty", "duplicates", "out_of_order", "gap", "bad_ohlc", "extra_field", "microseconds",
     "bad_index", "candle_ms", "seconds"}
)  # fmt: skip
# Applied by the archive route (sandbox/binance_archive.py) to the file it publishes.
ARCHIVE_KINDS = frozenset(
    {"checksum_mismatch", "corrupt_zip", "archive_404", "header", "truncated_archive", "replaced"}
)
ARCHIVE_PREFIX = "/data/"
Row = TypeVar("Row")

KINDS = HTTP_KINDS | NETWORK_KINDS | BODY_KINDS | DATA_KINDS | ARCHIVE_KINDS
# Persistent, day-scoped data faults: history that is missing (gap) or broken at the
# vendor (bad_ohlc: high and low swapped, as a bad print would give).
DAY_KINDS = frozenset({"gap", "bad_ohlc"})


class FaultPlanError(ValueError):
    """A fault plan (JSON) the sandbox cannot use."""


# A whole number stays whole (a Retry-After header of "2", not "2.0").
Seconds = Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _path(path: str) -> str:
    if path != "*" and not path.startswith("/"):
        raise ValueError("a path starts with '/' (or is '*' for every path)")
    return path


@dataclass
class Fault:
    # The annotations double as the plan's checks (pydantic reads them when a plan is parsed;
    # building a Fault in code checks nothing).
    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: str
    path: Annotated[str, AfterValidator(_path)] = "*"  # exact, "*" for all, or a prefix + "*"
    count: Annotated[int, Field(ge=-1)] = 1
    skip: Annotated[int, Field(ge=0)] = 0
    symbol: str | None = None
    retry_after: Seconds | None = None  # 429 / 418: the Retry-After header
    # 429 / 418: a Retry-After header sent verbatim, junk included ("nan", "-5"), to test
    # what clients make of a header they cannot use; wins over retry_after.
    retry_after_header: str | None = None
    delay: Seconds = 1.0  # timeout: how long the loopback server stalls
    code: int | str | None = None  # error200: the vendor code and message to send
    msg: str | None = None
    day: date | None = None  # gap / bad_ohlc: which UTC day
    # gap / bad_ohlc: first affected bar's opening minute of the day
    start_minute: Annotated[int, Field(ge=0, lt=MINUTES)] = 0
    minutes: Annotated[int, Field(ge=1)] = 1  # gap / bad_ohlc: how many consecutive 1m bars
    present: bool = True  # header: force the CSV header row in (true) or out (false)
    drop_rows: Annotated[int, Field(ge=1)] = 60  # truncated_archive: rows cut from the day
    revision: Annotated[int, Field(ge=1)] = 1  # replaced: which republication

    def covers(self, days: Sequence[date]) -> bool:
        """An archive fault without a day hits every file; with one, the files holding it."""
        return self.day is None or self.day in days

    def matches(self, path: str, symbol: str | None) -> bool:
        if self.symbol is not None and (symbol or "").upper() != self.symbol.upper():
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def gap_range_ms(self) -> tuple[int, int]:
        """[first, last) open times of the affected (missing or broken) bars."""
        if self.day is None:
            raise FaultPlanError(f"a {self.kind} fault needs a 'day' (YYYY-MM-DD)")
        first = EPOCH_MS + day_index(self.day) * DAY_MS + self.start_minute * MINUTE_MS
        return first, first + self.minutes * MINUTE_MS


_FAULT = TypeAdapter(Fault)
_DAY_FIELDS = ("day", "start_minute", "minutes")
# Fields that mean something to one kind only: anywhere else they are a mistake.
_KIND_FIELDS = {"present": "header", "drop_rows": "truncated_archive", "revision": "replaced"}
_LAST_DAY = EPOCH + timedelta(days=HORIZON_DAYS - 1)


def _fault_from_dict(raw: Any, index: int) -> Fault:
    """One entry of a plan, checked whole: a bad entry fails when the plan is read (when the
    definitions load, for ``BTC_ASSETS_SANDBOX_FAULTS``), not when a request meets it."""
    where = f"fault #{index}"
    if not isinstance(raw, dict):
        raise FaultPlanError(f"{where}: expected an object, got {raw!r}")
    known = {f.name for f in fields(Fault)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FaultPlanError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    if "kind" not in raw:
        raise FaultPlanError(f"{where}: no 'kind'; expected one of {sorted(KINDS)}")
    kind = str(raw["kind"])
    if kind not in KINDS:
        raise FaultPlanError(f"{where}: kind {kind!r} unknown; expected one of {sorted(KINDS)}")
    where = f"{where} ({kind})"
    values = dict(raw, kind=kind)
    for name, owner in _KIND_FIELDS.items():
        if name in raw and kind != owner:
            raise FaultPlanError(f"{where}: {name!r} applies only to {owner!r} faults")
    archive = kind in ARCHIVE_KINDS or str(raw.get("path", "")).startswith(ARCHIVE_PREFIX)
    if kind in ARCHIVE_KINDS and not str(raw.get("path", "*")).startswith((ARCHIVE_PREFIX, "*")):
        raise FaultPlanError(
            f"{where}: an archive fault's path is a data.binance.vision path ('/data/...') or '*'"
        )
    if archive and kind not in DAY_KINDS:
        values.setdefault("count", -1)  # the archive's published state, seen by every request
        misplaced = [name for name in _DAY_FIELDS[1:] if name in raw]
        if misplaced:
            raise FaultPlanError(
                f"{where}: {misplaced} do not apply to archive files; 'day' picks the files"
            )
    elif kind in DAY_KINDS:
        if "day" not in raw:
            raise FaultPlanError(f"{where}: a {kind} needs 'day' as YYYY-MM-DD")
        values.setdefault("count", -1)
    else:
        misplaced = [name for name in _DAY_FIELDS if name in raw]
        if misplaced:
            raise FaultPlanError(
                f"{where}: {misplaced} apply only to {sorted(DAY_KINDS)} faults; a {kind} "
                "fault fires on every matching request, whatever its day"
            )
    try:
        # JSON's own types, strictly: "count": "2" or true is a mistake, not a number
        fault = _FAULT.validate_json(json.dumps(values), strict=True)
    except ValidationError as exc:
        # One problem per key; of a union's (whole or fractional seconds) the last, the widest.
        problems = {
            str(e["loc"][0]): f"{e['loc'][0]}={e['input']!r}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        }
        raise FaultPlanError(f"{where}: {'; '.join(problems.values())}") from None
    if fault.day is not None and not EPOCH <= fault.day <= _LAST_DAY:
        raise FaultPlanError(
            f"{where}: day={raw['day']!r} is outside the sandbox market, {EPOCH}..{_LAST_DAY}"
        )
    return fault


class FaultPlan:
    """A thread-safe list of faults with their remaining counts."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults = list(faults)
        self._seen = [0] * len(self.faults)
        self._fired = [0] * len(self.faults)
        self._lock = threading.Lock()

    @classmethod
    def from_json(cls, text: str | None, source: str = "fault plan") -> FaultPlan:
        """Parse a JSON list of faults (a single object is accepted too); blank → no faults.

        A bad plan raises :class:`FaultPlanError` naming ``source`` (where the plan came from,
        e.g. ``BTC_ASSETS_SANDBOX_FAULTS``), the entry's index and the problem."""
        if text is None or not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultPlanError(f"{source} is not valid JSON ({exc}): {text[:200]!r}") from None
        items = raw if isinstance(raw, list) else [raw]
        try:
            return cls([_fault_from_dict(item, i) for i, item in enumerate(items)])
        except FaultPlanError as exc:
            raise FaultPlanError(f"{source}: {exc}") from None

    @classmethod
    def coerce(cls, spec: FaultPlan | str | Sequence[Fault] | None) -> FaultPlan:
        if isinstance(spec, FaultPlan):
            return spec
        if spec is None or isinstance(spec, str):
            return cls.from_json(spec)
        return cls(spec)

    def take(self, path: str, symbol: str | None = None) -> list[Fault]:
        """The faults that fire for this request, consuming one of each one's count."""
        firing: list[Fault] = []
        with self._lock:
            for i, fault in enumerate(self.faults):
                if not fault.matches(path, symbol):
                    continue
                self._seen[i] += 1
                if self._seen[i] <= fault.skip:
                    continue
                if fault.count != -1 and self._fired[i] >= fault.count:
                    continue
                self._fired[i] += 1
                firing.append(fault)
        return firing

    def fired(self, kind: str | None = None) -> int:
        """How many times faults (of ``kind``) have fired so far: tests assert on it."""
        with self._lock:
            return sum(
                n
                for f, n in zip(self.faults, self._fired, strict=True)
                if kind is None or f.kind == kind
            )


def apply_row_faults(rows: list[Row], faults: Sequence[Fault]) -> list[Row]:
    """The page-level data faults, the same for every vendor: an empty page, every tenth row
    sent twice, or the rows in a shuffled (deterministic) order."""
    kinds = {f.kind for f in faults}
    if "empty" in kinds:
        return []
    if "duplicates" in kinds:
        rows = [r for i, row in enumerate(rows) for r in ((row, row) if i % 10 == 0 else (row,))]
    if "out_of_order" in kinds:
        order = np.random.default_rng(len(rows)).permutation(len(rows))
        rows = [rows[i] for i in order]
    return rows
