"""``heatmap_png``: a liquidation heatmap (CoinGlass model1 tiles) with the price on top.

The tiles come in long form (``ts``, ``price_level``, ``intensity``: one row per non-empty
cell, ``ts`` the close of the candle the column stands for), and are drawn back on their
grid: a column per distinct ``ts`` covering ``(previous ts, ts]`` (bars are right-closed), a
row per distinct ``price_level`` reaching halfway to its neighbours (levels need not be evenly
spaced). Empty cells stay blank. Intensities span orders of magnitude (a few clusters hold
most of the leverage), so the colours follow a logarithmic scale from the 2nd percentile of
the non-zero values to the maximum; the colour bar is in USD. The candles' close is drawn
as a line at each candle's close time.

Built on ``Figure`` + ``FigureCanvasAgg`` (no pyplot: no global state, safe to call from a
server), saved without the ``Software`` entry so the bytes carry no matplotlib version.
"""

from __future__ import annotations

import io
from datetime import UTC, timedelta

import numpy as np
import polars as pl
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

FIGSIZE = (10.0, 5.6)
DPI = 100
COLOURS = "inferno"
PRICE_LINE = "#3fd0ff"
# The lower end of the colour scale: the 2nd percentile of the non-zero intensities, so a
# few near-zero cells do not stretch the scale over decades nobody can tell apart.
LOW_PERCENTILE = 2.0
DEFAULT_STEP = timedelta(minutes=15)


def heatmap_png(tiles: pl.DataFrame, candles: pl.DataFrame, title: str) -> bytes:
    """The tiles (``ts``, ``price_level``, ``intensity``) as a heatmap, the candles' ``close``
    (with their ``ts``) as a line over it; PNG bytes, equal for equal inputs.

    Empty ``tiles`` give a picture saying there are none (with the price line if any), never
    an exception; rows with a null or non-positive intensity are not drawn.
    """
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    cells = _cells(tiles)
    if cells.is_empty():
        axes.text(
            0.5,
            0.5,
            "no liquidation heatmap tiles for this selection",
            ha="center",
            va="center",
            transform=axes.transAxes,
            fontsize=12,
            color="#555555",
        )
    else:
        mesh = _draw_tiles(axes, cells)
        colour_bar = figure.colorbar(mesh, ax=axes, pad=0.02)
        colour_bar.set_label("estimated liquidation leverage (USD)")
    line = _price_line(candles)
    if line is not None:
        axes.plot(line[0], line[1], color=PRICE_LINE, linewidth=1.4, label="close (USD)")
        axes.legend(loc="upper left", fontsize=8, framealpha=0.7)
    if cells.is_empty() and line is None:
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        locator = mdates.AutoDateLocator(tz=UTC)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    axes.set_xlabel("time (UTC)")
    axes.set_ylabel("price (USD)")
    axes.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    # No Software entry: the file does not name the matplotlib version, so equal data
    # gives equal bytes across upgrades that do not change the drawing.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _cells(tiles: pl.DataFrame) -> pl.DataFrame:
    """The drawable cells: one per (ts, price_level), positive intensity, sorted."""
    if tiles.is_empty():
        return pl.DataFrame(
            schema={
                "ts": pl.Datetime("ms", "UTC"),
                "price_level": pl.Float64,
                "intensity": pl.Float64,
            }
        )
    return (
        tiles.select(
            "ts", pl.col("price_level").cast(pl.Float64), pl.col("intensity").cast(pl.Float64)
        )
        .filter(
            pl.col("ts").is_not_null()
            & pl.col("price_level").is_finite()
            & (pl.col("intensity") > 0)
            & pl.col("intensity").is_finite()
        )
        .group_by("ts", "price_level")
        .agg(pl.col("intensity").sum())  # a duplicated cell: its leverage adds up
        .sort("ts", "price_level")
    )


def _draw_tiles(axes: Axes, cells: pl.DataFrame) -> QuadMesh:
    stamps = cells["ts"].unique().sort()
    levels = cells["price_level"].unique().sort().to_numpy()
    column = {ts: i for i, ts in enumerate(stamps.to_list())}
    row = {level: i for i, level in enumerate(levels.tolist())}
    grid = np.full((len(levels), len(stamps)), np.nan)
    cols = np.fromiter((column[t] for t in cells["ts"].to_list()), dtype=np.int64)
    rows = np.fromiter((row[v] for v in cells["price_level"].to_list()), dtype=np.int64)
    values = cells["intensity"].to_numpy()
    grid[rows, cols] = values
    x_edges = _time_edges(stamps)
    y_edges = _level_edges(levels)
    low = float(np.percentile(values, LOW_PERCENTILE))
    high = float(values.max())
    norm = LogNorm(vmin=low, vmax=high if high > low else low * 10)
    return axes.pcolormesh(
        x_edges,
        y_edges,
        np.ma.masked_invalid(grid),
        cmap=COLOURS,
        norm=norm,
        shading="flat",
        rasterized=True,
    )


def _time_edges(stamps: pl.Series) -> np.ndarray:
    """Column edges in matplotlib date numbers: each column is (previous close, close]."""
    closes = stamps.to_list()
    gaps = np.diff([t.timestamp() for t in closes])
    step = timedelta(seconds=float(np.median(gaps))) if len(gaps) else DEFAULT_STEP
    return mdates.date2num([closes[0] - step, *closes])


def _level_edges(levels: np.ndarray) -> np.ndarray:
    """Row edges halfway between neighbouring levels; the outer rows as wide as their
    neighbour's half-gap (a single level gets +-0.05 % of its price)."""
    if len(levels) == 1:
        half = max(abs(levels[0]) * 5e-4, 1e-9)
        return np.array([levels[0] - half, levels[0] + half])
    middles = (levels[1:] + levels[:-1]) / 2
    first = levels[0] - (middles[0] - levels[0])
    last = levels[-1] + (levels[-1] - middles[-1])
    return np.concatenate([[first], middles, [last]])


def _price_line(candles: pl.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    if candles.is_empty() or "close" not in candles.columns:
        return None
    line = candles.select("ts", "close").drop_nulls().filter(pl.col("close").is_finite())
    line = line.unique("ts", keep="last", maintain_order=True).sort("ts")
    if line.is_empty():
        return None
    return mdates.date2num(line["ts"].to_list()), line["close"].to_numpy()
