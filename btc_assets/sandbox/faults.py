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
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any, TypeVar

import numpy as np

from btc_assets.sandbox.market import DAY_MS, EPOCH_MS, MINUTE_MS, day_index

# Answered by the vendor's route module in the vendor's own error shape; "404" by the
# transport, as a host that does not serve the path answers (the web server's HTML page).
HTTP_KINDS = frozenset({"404", "429", "418", "451", "500", "503", "error200"})
# Answered by the wire layer: in-process they raise the httpx exception at once; over the
# loopback socket "timeout" really waits ``delay`` s and "reset"/"connect" drop the socket.
NETWORK_KINDS = frozenset({"timeout", "reset", "connect"})
BODY_KINDS = frozenset({"truncated"})
# Applied by the route to a normal answer.
DATA_KINDS = frozenset(
    {"empty", "duplicates", "out_of_order", "gap", "bad_ohlc", "extra_field", "microseconds"}
)
Row = TypeVar("Row")

KINDS = HTTP_KINDS | NETWORK_KINDS | BODY_KINDS | DATA_KINDS
# Persistent, day-scoped data faults: history that is missing (gap) or broken at the
# vendor (bad_ohlc: high and low swapped, as a bad print would give).
DAY_KINDS = frozenset({"gap", "bad_ohlc"})


class FaultPlanError(ValueError):
    """A fault plan (JSON) the sandbox cannot use."""


@dataclass
class Fault:
    kind: str
    path: str = "*"  # exact path, "*" for all, or a prefix ending in "*"
    count: int = 1
    skip: int = 0
    symbol: str | None = None
    retry_after: float | None = None  # 429 / 418: the Retry-After header, seconds
    delay: float = 1.0  # timeout: how long the loopback server stalls
    code: int | None = None  # error200: the vendor code and message to send
    msg: str | None = None
    day: date | None = None  # gap / bad_ohlc: which UTC day
    start_minute: int = 0  # gap / bad_ohlc: first affected bar's opening minute of the day
    minutes: int = 1  # gap / bad_ohlc: how many consecutive 1m bars are affected

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


def _fault_from_dict(raw: Any, index: int) -> Fault:
    where = f"fault #{index}"
    if not isinstance(raw, dict):
        raise FaultPlanError(f"{where}: expected an object, got {raw!r}")
    known = {f.name for f in fields(Fault)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FaultPlanError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    kind = str(raw.get("kind", ""))
    if kind not in KINDS:
        raise FaultPlanError(f"{where}: kind {kind!r} unknown; expected one of {sorted(KINDS)}")
    values = dict(raw, kind=kind)
    if kind in DAY_KINDS:
        values.setdefault("count", -1)
        try:
            values["day"] = date.fromisoformat(str(values["day"]))
        except (KeyError, ValueError) as exc:
            raise FaultPlanError(f"{where}: a {kind} needs 'day' as YYYY-MM-DD") from exc
    fault = Fault(**values)
    if not isinstance(fault.count, int) or fault.count < -1:
        raise FaultPlanError(f"{where}: count must be a whole number >= -1")
    return fault


class FaultPlan:
    """A thread-safe list of faults with their remaining counts."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults = list(faults)
        self._seen = [0] * len(self.faults)
        self._fired = [0] * len(self.faults)
        self._lock = threading.Lock()

    @classmethod
    def from_json(cls, text: str | None) -> FaultPlan:
        """Parse a JSON list of faults (a single object is accepted too); blank → no faults."""
        if text is None or not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultPlanError(f"fault plan is not valid JSON ({exc}): {text[:200]!r}") from exc
        items = raw if isinstance(raw, list) else [raw]
        return cls(_fault_from_dict(item, i) for i, item in enumerate(items))

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
