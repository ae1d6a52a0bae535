"""Exchange fee snapshots: the rows of ``exchange_fees`` and their figures per day.

One row per symbol and UTC day. A snapshot holds the account's maker and taker rates in
basis points, taken at ``ts``; a day without one holds a row with null fees and a ``note``
saying why, so a missing day is visible, never filled with another day's rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

import polars as pl

from btc_assets.core.quality import days_frame
from btc_assets.core.schema import EXCHANGE_FEE_SCHEMA, partition_day_expr

# Binance's highest USD-M rate is a few bps; a figure past this is a unit error (a rate
# stored as a fraction or a percentage), not a fee.
MAX_PLAUSIBLE_BPS = 100.0

FeeRow = tuple[str, datetime, float | None, float | None, str | None, str | None]


def fee_frame(rows: Sequence[FeeRow]) -> pl.DataFrame:
    """``(symbol, ts, maker_bps, taker_bps, source, note)`` tuples in the table's contract."""
    return pl.DataFrame(rows, schema=EXCHANGE_FEE_SCHEMA, orient="row")


def no_fee_row(symbol: str, ts: datetime, note: str) -> FeeRow:
    """The row of a day without a snapshot: no fee, no source, and why."""
    return (symbol, ts, None, None, None, note)


def fee_figures_by_day(fees: pl.LazyFrame, days: Iterable[date]) -> pl.DataFrame:
    """One row per requested day of one symbol's rows: how many rows, whether they hold a
    fee, and what is wrong with them.

    ``rows`` should be 1; ``with_fees`` counts rows with both rates; ``half_null`` rows with
    only one; ``unexplained`` rows without fees and without a note; ``implausible`` rates
    beyond ``MAX_PLAUSIBLE_BPS`` (or NaN); ``note`` is the day's first note.
    """
    days_lf = days_frame(days).select("day")
    maker, taker = pl.col("maker_bps"), pl.col("taker_bps")
    both = maker.is_not_null() & taker.is_not_null()
    neither = maker.is_null() & taker.is_null()
    odd = [(c.abs() > MAX_PLAUSIBLE_BPS) | c.is_nan() for c in (maker, taker)]
    stats = (
        fees.with_columns(day=partition_day_expr())
        .group_by("day")
        .agg(
            rows=pl.len().cast(pl.Int64),
            with_fees=both.sum().cast(pl.Int64),
            half_null=(~both & ~neither).sum().cast(pl.Int64),
            unexplained=(neither & pl.col("note").is_null()).sum().cast(pl.Int64),
            implausible=pl.any_horizontal(*odd).fill_null(False).sum().cast(pl.Int64),
            maker_bps=maker.first(),
            taker_bps=taker.first(),
            ts=pl.col("ts").first(),
            note=pl.col("note").drop_nulls().first(),
        )
    )
    counts = ["rows", "with_fees", "half_null", "unexplained", "implausible"]
    return (
        days_lf.join(stats, on="day", how="left")
        .with_columns(pl.col(counts).fill_null(0))
        .sort("day")
        .collect()
    )
