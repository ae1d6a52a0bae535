"""The newest usable ``features_1h`` row of each symbol, kept in memory for ``/predict/latest``.

``refresh`` (the background poll) looks at the newest ``lookback_days`` days present for each
symbol, newest first, and takes the row with the greatest ``ts`` of the first day that is

- not blocked by its quality gate (``config.gate``: a failed day is never served);
- verified against its manifest (``Lake.read_days``: a rotten file is never read);
- written in this env (live never serves a sandbox day, nor the reverse).

The same rules ``defs/day_gate.py`` applies to every asset, restated without Dagster. Each day
passed over is kept with its reason, so a 503 says why. A day whose file did not change since
the last poll (same path and sha256, verified again) is not parsed again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl

from btc_assets.lake import DayWrite, Lake
from btc_assets.service.config import ServiceConfig
from btc_assets.service.models import ServedModel

log = logging.getLogger("btc_assets.service")


@dataclass(eq=False)
class LatestRow:
    """One features row: every column's value, and where it came from."""

    symbol: str
    ts: datetime
    day: date
    written: DayWrite
    values: Mapping[str, Any]
    # model version -> its input row (1 x features, float32), or the problems that stop it
    _inputs: dict[str, np.ndarray | list[str]] = field(default_factory=dict)

    def inputs_for(self, model: ServedModel) -> np.ndarray | list[str]:
        """The row in ``model``'s columns, or (409) the columns it lacks or cannot use."""
        found = self._inputs.get(model.version)
        if found is None:
            found = self._inputs[model.version] = _inputs(self.values, model.features)
        return found


def _inputs(values: Mapping[str, Any], features: tuple[str, ...]) -> np.ndarray | list[str]:
    problems, row = [], []
    for name in features:
        if name not in values:
            problems.append(f"{name} (no such column)")
            continue
        value = values[name]
        if value is None:
            row.append(math.nan)
        elif isinstance(value, int | float):  # bool is an int: a Boolean column is 0/1
            row.append(float(value))
        else:
            problems.append(f"{name} (holds {type(value).__name__}, not a number)")
    if problems:
        return problems
    return np.array([row], dtype=np.float32)


@dataclass(frozen=True)
class SymbolState:
    """What the last refresh found for a symbol: the row served (or None and why), the
    newer days passed over with their reasons, and an error of the refresh itself (the
    previous row is kept then)."""

    symbol: str
    row: LatestRow | None
    problem: str | None = None
    skipped: Mapping[date, str] = field(default_factory=dict)
    error: str | None = None


class LatestFeatures:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.lake = Lake(config.lake_root)
        self.gate = config.gate_or_open()
        self.states: dict[str, SymbolState] = {
            s: SymbolState(s, None, "not looked at yet") for s in config.symbols
        }

    def refresh(self) -> None:
        """Look again at every symbol; the new states replace the old ones at once."""
        states = {}
        for symbol in self.config.symbols:
            previous = self.states.get(symbol)
            try:
                states[symbol] = self._look(symbol, previous)
            except Exception as exc:  # the gate's database, an unreadable folder...
                log.error("features of %s not refreshed: %s", symbol, exc)
                row = previous.row if previous is not None else None
                problem = previous.problem if previous is not None else str(exc)
                states[symbol] = SymbolState(symbol, row, problem, {}, f"refresh failed: {exc}")
        self.states = states

    def _look(self, symbol: str, previous: SymbolState | None) -> SymbolState:
        table, env = self.config.features_table, self.config.env
        days = self.lake.days_present(table, symbol)[-self.config.lookback_days :]
        if not days:
            where = f"{self.lake.url}/{table}/{symbol}"
            return SymbolState(symbol, None, f"{table} never built for {symbol} ({where})")
        blocked = self.gate(symbol, list(days))
        skipped: dict[date, str] = {}
        for day in reversed(days):
            if day in blocked:
                skipped[day] = f"blocked: {blocked[day]}"
                continue
            read = self.lake.read_days(table, symbol, [day])
            written = read.committed.get(day)
            if written is None:
                skipped[day] = (
                    f"does not verify: {read.errors[day]}" if day in read.errors else "never built"
                )
                continue
            written_env = written.provenance.get("env")
            if written_env != env:
                skipped[day] = (
                    f"written in {written_env or 'an unrecorded'} env, this is {env} "
                    f"({written.path})"
                )
                continue
            row = self._reuse(previous, day, written) or self._newest_row(
                symbol, day, written, read.frame
            )
            if row is None:
                skipped[day] = f"no rows ({written.path})"
                continue
            return SymbolState(symbol, row, None, skipped)
        why = "; ".join(f"{d}: {reason}" for d, reason in skipped.items())
        return SymbolState(
            symbol, None, f"no usable {table} row in the newest {len(days)} day(s): {why}", skipped
        )

    @staticmethod
    def _reuse(previous: SymbolState | None, day: date, written: DayWrite) -> LatestRow | None:
        old = previous.row if previous is not None else None
        same = old is not None and old.day == day and old.written.path == written.path
        return old if same and old.written.sha256 == written.sha256 else None

    def _newest_row(
        self, symbol: str, day: date, written: DayWrite, scan: pl.LazyFrame
    ) -> LatestRow | None:
        # read_days' scan, not the path: on GCS it is the very bytes downloaded and verified.
        frame = scan.sort("ts").tail(1).collect()
        if frame.is_empty():
            return None
        values = frame.row(0, named=True)
        ts = values["ts"]
        if not isinstance(ts, datetime) or frame.schema["ts"] != pl.Datetime("ms", "UTC"):
            raise ValueError(f"{written.path}: ts is {frame.schema['ts']}, not Datetime(ms, UTC)")
        return LatestRow(symbol, ts, day, written, values)
