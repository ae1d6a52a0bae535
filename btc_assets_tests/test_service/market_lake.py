"""Market-table days for the service tests: literal frames (synthetic test values, not market
data) written with ``Lake.write_day``, and a table-aware gate the test sets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from btc_assets.core.market_schema import (
    ALERT_SCHEMA,
    HEATMAP_CANDLE_SCHEMA,
    HEATMAP_TILE_SCHEMA,
)
from btc_assets.core.schema import COINGLASS_OI_SCHEMA
from btc_assets.core.tables import (
    HEATMAP_CANDLES,
    HEATMAP_TILES,
    OPEN_INTEREST,
)
from btc_assets.lake import Lake

ISO = "%Y-%m-%dT%H:%M:%S%.3fZ"


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def oi_day(day: date, symbol: str, base: float = 1e10) -> pl.DataFrame:
    """96 bars of 15 min, ts = bar close: (day 00:00, day+1 00:00]."""
    ts = [midnight(day) + timedelta(minutes=15 * (i + 1)) for i in range(96)]
    offset = base + day.toordinal() % 100 * 1e6
    close = [offset + 1000.0 * i for i in range(96)]
    return pl.DataFrame(
        {"symbol": [symbol] * 96, "ts": ts, "open": [c - 10 for c in close],
         "high": [c + 50 for c in close], "low": [c - 60 for c in close], "close": close},
        schema=COINGLASS_OI_SCHEMA,
    )  # fmt: skip


def heatmap_tiles(day: date, symbol: str) -> pl.DataFrame:
    """Hourly columns; 'pair' has 3 levels a column (sparse over 8), 'coin' one cell."""
    rows = []
    for hour in range(24):
        ts = midnight(day) + timedelta(hours=hour + 1)
        for k in range(3):
            level = 60000.0 + 100.0 * ((hour + 3 * k) % 8)
            rows.append((symbol, ts, "pair", level, 1e5 * (1 + hour) * 10**k))
    rows.append((symbol, midnight(day) + timedelta(hours=12), "coin", 61000.0, 2.5e7))
    return pl.DataFrame(rows, schema=HEATMAP_TILE_SCHEMA, orient="row")


def heatmap_candles(day: date, symbol: str) -> pl.DataFrame:
    rows = []
    for scope in ("pair", "coin"):
        for hour in range(24):
            close = 60300.0 + 20.0 * hour + (5.0 if scope == "coin" else 0.0)
            ts = midnight(day) + timedelta(hours=hour + 1)
            rows.append((symbol, ts, scope, close - 5, close + 15, close - 25, close, 1e6 * hour))
    return pl.DataFrame(rows, schema=HEATMAP_CANDLE_SCHEMA, orient="row")


def alert(ts: datetime, symbol: str, kind: str, severity: str, value: float) -> dict:
    details = {"inputs": [value, value / 2], "window": "15m"}
    return {
        "ts": ts, "symbol": symbol, "kind": kind, "severity": severity, "value": value,
        "threshold": value / 2, "details": json.dumps(details, sort_keys=True),
        "dedupe_key": f"{symbol}:{kind}:{severity}:{ts.isoformat()}",
    }  # fmt: skip


def alerts_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=ALERT_SCHEMA)


def write(
    lake: Path, table: str, symbol: str, day: date, frame: pl.DataFrame, env: str = "sandbox"
) -> Path:
    provenance = {"env": env, "host": "sandbox.invalid", "endpoint": f"/{table}"}
    return Lake(lake).write_day(table, symbol, day, frame, provenance).path


def write_oi(lake: Path, day: date, symbol: str, env: str = "sandbox", base: float = 1e10) -> Path:
    return write(lake, OPEN_INTEREST.name, symbol, day, oi_day(day, symbol, base), env)


def write_heatmap(lake: Path, day: date, symbol: str, env: str = "sandbox") -> Path:
    write(lake, HEATMAP_CANDLES.name, symbol, day, heatmap_candles(day, symbol), env)
    return write(lake, HEATMAP_TILES.name, symbol, day, heatmap_tiles(day, symbol), env)


def write_alerts(lake: Path, table: str, day: date, symbol: str, rows: list[dict]) -> Path:
    return write(lake, table, symbol, day, alerts_frame(rows))


def as_columns(frame: pl.DataFrame, names: tuple[str, ...]) -> dict[str, list]:
    """What the service's JSON holds for ``frame``: ts as ISO strings, columns as lists."""
    shown = frame.select(pl.col("ts").dt.strftime(ISO), *names[1:])
    return {name: shown[name].to_list() for name in names}


@dataclass
class TableGates:
    """A table-aware gate the test sets: (table, symbol) -> day -> reason; the calls made."""

    blocked: dict[tuple[str, str], dict[date, str]] = field(default_factory=dict)
    asked: list[tuple[str, str, tuple[date, ...]]] = field(default_factory=list)
    error: str | None = None

    def __call__(self, table: str, symbol: str, days: list[date]) -> Mapping[date, str]:
        self.asked.append((table, symbol, tuple(days)))
        if self.error:
            raise ConnectionError(self.error)
        mine = self.blocked.get((table, symbol), {})
        return {d: mine[d] for d in days if d in mine}
