"""Binance funding settlements placed on 15m bars, point in time.

A settlement at ``s`` (Binance ``fundingTime``, which lands a few ms after the scheduled
time, rounded to the minute: ``FUNDING_SCHEMA``) fixes the rate charged at ``s``; that rate is
the one in force until the next settlement. Binance settles every 8h, 4h or 1h, and the
schedule can change mid-series, so how long a settlement stays in force is inferred from
the past only, and from settlements only:

    interval(s) = min(8h, s - t1, t1 - t2)

``t1``, ``t2`` are the previous two settlements, each counted only if it lies in
``[s - 16h, s)`` (two spacings of the longest schedule); a spacing with an end outside that
window is ignored, and with none left the interval is 8h. 8h, Binance's longest schedule, is
both the default and the ceiling: a longer spacing means settlements are missing, and
holding a rate past its schedule would present a stale rate as the current one. The shorter
of two spacings keeps one missing settlement from doubling the next one's life and follows a
shortening (8h -> 4h) at its first 4h spacing; the price of using only the past is that
after a lengthening (4h -> 8h) the first 8h settlement is in force for 4h only, and the bars
after it are visibly missing until the next one. The 16h window makes the interval a
function of the settlements in ``[s - 16h, s]`` alone, so a caller holding every settlement
from ``SETTLEMENT_LOOKBACK`` before its first bar gets the same bars whatever span it
fetched (a one-day run equals the same day inside a year-long run).

``settlements_on_bars`` gives each bar ``ts`` of a grid the latest settlement ``s <= ts``
while ``ts < s + interval(s)`` (the 08:00 settlement is used from the 08:00 bar on, never by
the 07:45 bar: no look-ahead); a bar past that has no row: a missing value, never a made-up
one.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from btc_assets.core.schema import TS

MAX_SETTLEMENT_INTERVAL = timedelta(hours=8)
SPACING_WINDOW = 2 * MAX_SETTLEMENT_INTERVAL  # two spacings of the longest schedule
# Settlements a caller must hold before the first bar (24h): one in force at it can be up to
# 8h old, and its interval reads the 16h before it.
SETTLEMENT_LOOKBACK = MAX_SETTLEMENT_INTERVAL + SPACING_WINDOW


def settlement_interval(ts: str = "ts") -> pl.Expr:
    """How long each settlement is in force (module rule), over rows sorted by ``ts``."""
    now, t1, t2 = pl.col(ts), pl.col(ts).shift(1), pl.col(ts).shift(2)
    since = now - SPACING_WINDOW
    latest = pl.when(t1 >= since).then(now - t1)
    previous = pl.when(t2 >= since).then(t1 - t2)
    return pl.min_horizontal(latest, previous, pl.lit(MAX_SETTLEMENT_INTERVAL))


def settlements_on_bars(settlements: pl.LazyFrame, grid: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, ``funding_rate``, ``settled_at`` for each bar of ``grid`` with a settlement in
    force at its close, sorted by ts; bars without one are absent.

    ``settlements`` holds ``ts`` (settlement time) and ``funding_rate`` of one symbol; rows
    with a null or NaN rate are not settlements. Pass every settlement from
    ``SETTLEMENT_LOOKBACK`` before the grid's first bar (earlier ones change nothing).
    """
    settled = (
        settlements.select(
            settled_at=pl.col("ts").cast(TS),
            funding_rate=pl.col("funding_rate").cast(pl.Float64).fill_nan(None),
        )
        .filter(pl.col("settled_at").is_not_null() & pl.col("funding_rate").is_not_null())
        .sort("settled_at")
        .with_columns(_until=pl.col("settled_at") + settlement_interval("settled_at"))
    )
    return (
        grid.select(pl.col("ts").cast(TS))
        .sort("ts")
        .join_asof(settled, left_on="ts", right_on="settled_at", strategy="backward")
        .filter(pl.col("ts") < pl.col("_until"))
        .select("ts", "funding_rate", "settled_at")
    )
