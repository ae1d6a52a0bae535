"""CoinGlass liquidation heatmap (model1) answers → contract frames, validated (no HTTP).

``data`` is ``{"y_axis": [levels ascending], "liquidation_leverage_data": [[x, y, usd], ...],
"price_candlesticks": [[open_time, o, h, l, c, volume_usd], ...]}``: x indexes the candles,
y the levels. Open times are seconds per the doc; ms (or µs) is detected and converted.
Numbers may come as JSON numbers or numeric strings. The candle interval is the (constant)
spacing of the open times; tiles and candles are labelled by candle close, closed only.

An answer we cannot read unambiguously is refused whole, never patched: an index that is
not a whole number or is out of range, a cell given twice (summing would guess), a
negative or non-finite value, levels not strictly increasing, candles out of order or
unevenly spaced, a missing key. :class:`CoinGlassHeatmapError` names the symbol, scope,
range and the element at fault ("triple #17 [300, 5, 1.2e6]: x_index 300 outside the 288
candles").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from btc_assets.core.market_schema import HEATMAP_CANDLE_SCHEMA, HEATMAP_TILE_SCHEMA
from btc_assets.vendors.errors import VendorResponseError

VENDOR = "coinglass"
# The candle interval each range is expected to come with (the sandbox's, UNCONFIRMED for
# the real API): used only when an answer has a single candle to measure the spacing by.
EXPECTED_INTERVAL: dict[str, timedelta] = {
    "12h": timedelta(minutes=5),
    "24h": timedelta(minutes=5),
    "3d": timedelta(minutes=15),
    "7d": timedelta(minutes=30),
    "30d": timedelta(hours=2),
    "90d": timedelta(hours=6),
    "180d": timedelta(hours=12),
    "1y": timedelta(days=1),
}
# Epoch seconds stay below 1e11 until 5138; ms below 1e14 until 5138 too.
_SECONDS_BELOW, _MS_BELOW = 100_000_000_000, 100_000_000_000_000


class CoinGlassHeatmapError(VendorResponseError):
    """A heatmap answer that cannot be read unambiguously (index, order, value, shape)."""


@dataclass(frozen=True)
class HeatmapAnswer:
    """One heatmap answer in contract form (closed candles and their tiles only)."""

    tiles: pl.DataFrame  # HEATMAP_TILE_SCHEMA, sorted by (ts, price_level)
    candles: pl.DataFrame  # HEATMAP_CANDLE_SCHEMA, sorted by ts
    range: str
    candle_interval: timedelta
    y_levels: int
    endpoint: str


def epoch_ms_of(values: np.ndarray) -> np.ndarray:
    """Whole epoch times in seconds, ms or µs as int64 ms (one unit per call's values)."""
    return np.where(
        values < _SECONDS_BELOW,
        values * 1000,
        np.where(values >= _MS_BELOW, values // 1000, values),
    ).astype(np.int64)


def _unit(value: float) -> str:
    return "s" if value < _SECONDS_BELOW else "ms" if value < _MS_BELOW else "µs"


def _floats(items: Sequence[Any], width: int | None) -> np.ndarray | None:
    """``items`` (numbers or numeric strings, rows of ``width`` when given) as float64;
    None when some element is not numeric or a row has the wrong length."""
    if any(isinstance(x, bool) for x in (items if width is None else ())):
        return None
    try:
        out = np.asarray(items, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    expected = (len(items),) if width is None else (len(items), width)
    return out if out.shape == expected else None


class _HeatmapReader:
    """Validates one heatmap ``data`` object; every refusal names where it is."""

    def __init__(
        self, symbol: str, scope: str, range_: str, endpoint: str, params: Mapping[str, str]
    ) -> None:
        self.symbol, self.scope, self.range, self.endpoint = symbol, scope, range_, endpoint
        self.params = dict(params)

    def bad(self, message: str) -> CoinGlassHeatmapError:
        return CoinGlassHeatmapError(
            VENDOR,
            self.endpoint,
            self.params,
            status=200,
            message=f"{self.symbol} {self.scope} heatmap range={self.range}: {message}",
        )

    def field(self, data: Any, key: str) -> list[Any]:
        if not isinstance(data, dict):
            raise self.bad(
                f"'data' is a {type(data).__name__}, expected an object with "
                "y_axis, liquidation_leverage_data, price_candlesticks"
            )
        if key not in data:
            raise self.bad(f"'data' lacks {key!r}; has {sorted(data)}")
        value = data[key]
        if not isinstance(value, list):
            raise self.bad(f"{key} is a {type(value).__name__}, expected a list")
        return value

    def y_axis(self, raw: list[Any]) -> np.ndarray:
        if not raw:
            raise self.bad("y_axis is empty: no price levels to place the cells on")
        levels = _floats(raw, None)
        if levels is None or not np.isfinite(levels).all():
            bad = next(i for i, v in enumerate(raw) if not finite(v))
            raise self.bad(f"y_axis[{bad}] = {raw[bad]!r} is not a finite number")
        steps = np.diff(levels)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise self.bad(
                f"y_axis is not strictly increasing: y_axis[{i}] = {raw[i]!r} "
                f"after y_axis[{i - 1}] = {raw[i - 1]!r}"
            )
        return levels

    def candles(self, raw: list[Any]) -> tuple[np.ndarray, np.ndarray, int]:
        """(open times in ms, [o, h, l, c, volume] rows, interval in ms)."""
        if not raw:
            raise self.bad("price_candlesticks is empty: no candles to place the cells in")
        rows = _floats([r[:6] if isinstance(r, list) else r for r in raw], 6)
        if rows is None or not np.isfinite(rows).all():
            for i, row in enumerate(raw):
                if not isinstance(row, list) or len(row) < 6:
                    raise self.bad(
                        f"candle #{i} {shown(row)}: expected [open_time, open, "
                        "high, low, close, volume_usd]"
                    )
                culprit = next((v for v in row[:6] if not finite(v)), None)
                if culprit is not None or None in row[:6]:
                    raise self.bad(f"candle #{i} {shown(row)}: {culprit!r} is not a number")
            raise self.bad("price_candlesticks could not be read as numbers")
        times = rows[:, 0]
        if (times != np.floor(times)).any() or (times <= 0).any():
            i = int(np.argmax((times != np.floor(times)) | (times <= 0)))
            raise self.bad(f"candle #{i} open time {raw[i][0]!r} is not a whole epoch time")
        units = [_unit(t) for t in times.tolist()]
        if len(set(units)) > 1:
            i = next(i for i, u in enumerate(units) if u != units[0])
            raise self.bad(
                f"candle #{i} open time {raw[i][0]!r} is in {units[i]}, candle #0's "
                f"{raw[0][0]!r} in {units[0]}: mixed units"
            )
        opens = epoch_ms_of(times)
        gaps = np.diff(opens)
        if (gaps <= 0).any():
            i = int(np.argmax(gaps <= 0)) + 1
            raise self.bad(
                f"candles not strictly increasing: candle #{i} opens at "
                f"{raw[i][0]!r}, candle #{i - 1} at {raw[i - 1][0]!r}"
            )
        if len(gaps) and (gaps != gaps[0]).any():
            i = int(np.argmax(gaps != gaps[0])) + 1
            raise self.bad(
                f"uneven candles: candle #{i} opens {gaps[i - 1] / 1000:g} s after "
                f"#{i - 1}, but the spacing is {gaps[0] / 1000:g} s elsewhere"
            )
        step = (
            int(gaps[0])
            if len(gaps)
            else EXPECTED_INTERVAL[self.range] // timedelta(milliseconds=1)
        )
        return opens, rows[:, 1:], step

    def cells(self, raw: list[Any], n_candles: int, n_levels: int) -> np.ndarray:
        """(n, 3) float rows [x, y, value], every index and value checked."""
        triples = _floats(raw, 3) if raw else np.empty((0, 3))
        if triples is None:
            for i, t in enumerate(raw):
                if not isinstance(t, list) or len(t) != 3:
                    raise self.bad(f"triple #{i} {shown(t)}: expected [x_index, y_index, value]")
                for name, value in zip(("x_index", "y_index", "value"), t, strict=True):
                    if not finite(value):
                        raise self.bad(f"triple #{i} {shown(t)}: {name} {value!r} is not a number")
            raise self.bad("liquidation_leverage_data could not be read as numbers")
        for col, name, size, what in (
            (0, "x_index", n_candles, "candles"),
            (1, "y_index", n_levels, "y_axis levels"),
        ):
            idx = triples[:, col]
            whole = np.isfinite(idx) & (idx == np.floor(idx))
            if not whole.all():
                i = int(np.argmin(whole))
                raise self.bad(
                    f"triple #{i} {shown(raw[i])}: {name} {raw[i][col]!r} is not an integer"
                )
            outside = (idx < 0) | (idx >= size)
            if outside.any():
                i = int(np.argmax(outside))
                raise self.bad(
                    f"triple #{i} {shown(raw[i])}: {name} {raw[i][col]!r} outside the {size} {what}"
                )
        values = triples[:, 2]
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = int(np.argmax(bad))
            why = "is negative" if np.isfinite(values[i]) else "is not a finite number"
            raise self.bad(f"triple #{i} {shown(raw[i])}: value {raw[i][2]!r} {why}")
        cell = triples[:, 0].astype(np.int64) * n_levels + triples[:, 1].astype(np.int64)
        order = np.argsort(cell, kind="stable")
        same = np.flatnonzero(np.diff(cell[order]) == 0)
        if len(same):
            a, b = sorted((int(order[same[0]]), int(order[same[0] + 1])))
            raise self.bad(
                f"triples #{a} {shown(raw[a])} and #{b} {shown(raw[b])} are the same "
                "cell: ambiguous (sum? latest?), refused"
            )
        return triples


def finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def shown(item: Any) -> str:
    text = json.dumps(item) if isinstance(item, (list, dict, int, float, str)) else repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_heatmap(
    data: Any,
    *,
    symbol: str,
    scope: str,
    range_: str,
    now_ms: int,
    endpoint: str,
    params: Mapping[str, str] | None = None,
) -> HeatmapAnswer:
    """A heatmap ``data`` object as contract frames (closed candles and their cells only)."""
    reader = _HeatmapReader(symbol, scope, range_, endpoint, params or {})
    raw_levels = reader.field(data, "y_axis")
    raw_cells = reader.field(data, "liquidation_leverage_data")
    raw_candles = reader.field(data, "price_candlesticks")
    levels = reader.y_axis(raw_levels)
    opens, ohlcv, step = reader.candles(raw_candles)
    triples = reader.cells(raw_cells, len(opens), len(levels))
    closes = opens + step
    closed = closes <= now_ms
    x = triples[:, 0].astype(np.int64)
    kept = closed[x]
    tiles = pl.DataFrame(
        {
            "symbol": [symbol] * int(kept.sum()),
            "ts": closes[x[kept]],
            "scope": [scope] * int(kept.sum()),
            "price_level": levels[triples[kept, 1].astype(np.int64)],
            "intensity": triples[kept, 2],
        },
        schema_overrides={"ts": pl.Int64, "symbol": pl.String, "scope": pl.String},
    )
    candles = pl.DataFrame(
        {
            "symbol": [symbol] * int(closed.sum()),
            "ts": closes[closed],
            "scope": [scope] * int(closed.sum()),
            **{
                k: ohlcv[closed, i]
                for i, k in enumerate(("open", "high", "low", "close", "volume_usd"))
            },
        },
        schema_overrides={"ts": pl.Int64, "symbol": pl.String, "scope": pl.String},
    )
    return HeatmapAnswer(
        tiles=typed(tiles, HEATMAP_TILE_SCHEMA).sort("ts", "price_level"),
        candles=typed(candles, HEATMAP_CANDLE_SCHEMA).sort("ts"),
        range=range_,
        candle_interval=timedelta(milliseconds=step),
        y_levels=len(levels),
        endpoint=endpoint,
    )


def typed(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(t, strict=True) for c, t in schema.items())
