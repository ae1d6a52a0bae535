"""Resampling canonical 1m klines into right-closed bars labelled by close time.

A bar labelled ``ts`` covers ``(ts - every, ts]``: the 15m bar ``00:15`` aggregates the 1m bars
labelled 00:01 … 00:15. Windows without any source bar produce no row, so gaps stay visible
to the quality layer instead of being papered over with fabricated bars; a window that is only
partly filled is visible through ``source_count < expected_source_count(every)``.
"""

from __future__ import annotations

import re
from datetime import timedelta

import polars as pl

from btc_assets.core.schema import BAR_SCHEMA, KLINE_SCHEMA, TS

SOURCE_INTERVAL = timedelta(minutes=1)
# Binance's kline intervals that divide a UTC day into whole bars, shortest first (its 1w and
# 1M do not). "1m" is the source itself.
BINANCE_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")
# Venues quote amounts as decimals with at most this many places (Binance: 8). Volumes are
# summed as decimals at this scale, so a bar's volume is the exact sum of its 1m volumes, as
# the venue's own bar of that interval is (a float sum can differ from it in the last bit).
VOLUME_SCALE = 8
_SUMMED = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")

# Only fixed-length units: calendar units (mo, q, y) have no single bar length, and sub-minute
# units cannot be built from 1m sources.
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_TOKEN = re.compile(r"(\d+)(w|d|h|m)(?!o)")
_DAY = timedelta(days=1)
_MS = timedelta(milliseconds=1)
# Tie-break weight for the order key: the offset inside a bar (<= 1 day < 2**27 ms) times
# 2**36 plus a row index below 2**36 still fits in an Int64.
_ROW_BITS = 36


def bar_duration(every: str) -> timedelta:
    """Length of a bar given as a Polars duration string ("15m", "1h", "1h30m", "1d").

    Raises ``ValueError`` unless it is a whole number of minutes that divides a UTC day into
    whole bars, so every bar grid is aligned to midnight UTC and every day has the same
    number of bars (1440 for 1m, 96 for 15m).
    """
    text = every.strip()
    pos, total = 0, timedelta(0)
    for match in _TOKEN.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"bar interval {every!r} is not a fixed whole-minute duration such as '15m', '1h', '1d'"
        )
    if total <= timedelta(0) or _DAY % total:
        raise ValueError(f"bar interval {every!r} does not divide a day into whole bars")
    return total


def expected_source_count(every: str) -> int:
    """Number of 1m source bars in a full bar: 15 for "15m", 1440 for "1d"."""
    return bar_duration(every) // SOURCE_INTERVAL


def _decimal_sum(column: str) -> pl.Expr:
    """Sum of ``column`` as the float nearest the exact decimal sum of its values, each read
    as the decimal with ``VOLUME_SCALE`` places it was parsed from (the float nearest a
    decimal of at most 15 significant digits gives that decimal back). The decimal total is
    written out and parsed, which rounds correctly, where a cast could round twice. NaN or
    infinity anywhere keeps the plain float sum, so the bad value stays visible."""
    values = pl.col(column)
    exact = values.cast(pl.Decimal(38, VOLUME_SCALE)).sum().cast(pl.String).cast(pl.Float64)
    return pl.when(values.is_finite().all()).then(exact).otherwise(values.sum()).alias(column)


def resample(klines: pl.LazyFrame, every: str) -> pl.LazyFrame:
    """Aggregate canonical 1m klines (``KLINE_SCHEMA``) into ``every`` bars (``BAR_SCHEMA``).

    Per symbol: open first, high max, low min, close last, volumes and trades summed,
    ``source_count`` the number of 1m rows aggregated. Volumes are summed exactly as
    decimals of ``VOLUME_SCALE`` places (see ``_decimal_sum``), so they equal the venue's own
    bar of the interval, not a float sum one bit away from it. "First" and "last" are by
    ``ts``, ties (duplicate keys, a contract violation) broken by stored order, so the result
    does not depend on how the input is sorted. Rows with a null ``ts`` belong to no bar and are
    dropped. Output is sorted by symbol, ts.

    This is ``group_by_dynamic(every, closed="right", label="right", group_by="symbol")``
    written as a plain group_by on the bar's close time, which needs no global sort: on 10
    years of 1m bars (benchmarks/bench_resample.py, 2 cores) the dynamic version took 0.8-1.4 s
    and 1.7 GiB peak, this one 0.45 s and 0.6 GiB. A property test checks both agree. The
    exact decimal volume sums cost about 1.7x the float sums (0.36 s -> 0.61 s, same run).
    """
    step_ms = bar_duration(every) // _MS
    ms = pl.col("ts").dt.epoch("ms")
    close_ms = (ms + (step_ms - 1)) // step_ms * step_ms  # ceil: (end - every, end] -> end
    order = (ms - close_ms + step_ms) * (1 << _ROW_BITS) + pl.col("_row").cast(pl.Int64)
    return (
        klines.select(list(KLINE_SCHEMA))
        .with_row_index("_row")
        .filter(pl.col("ts").is_not_null())
        .with_columns(_close=close_ms, _order=order)
        .group_by("symbol", "_close")
        .agg(
            pl.col("open").min_by("_order"),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").max_by("_order"),
            *[_decimal_sum(c) for c in _SUMMED],
            pl.col("trades").sum(),
            pl.len().alias("source_count"),
        )
        .with_columns(ts=pl.col("_close").cast(TS))
        .select([pl.col(c).cast(t) for c, t in BAR_SCHEMA.items()])
        .sort("symbol", "ts")
    )
