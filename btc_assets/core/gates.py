"""Figures behind the feature table's gates, per partition day for a whole range at once.

Pure Polars. The thresholds live in the Dagster layer (``QualityGatesResource``); this module
only measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from btc_assets.core.bars import bar_duration
from btc_assets.core.quality import days_frame, expected_slots
from btc_assets.core.schema import (
    COINGLASS_SOURCE,
    FEATURE_SOURCES,
    floor_to_grid,
    partition_day_expr,
)

# Every column of the feature table that says where its values came from.
SOURCE_COLUMNS = (*FEATURE_SOURCES, "funding_source")


def _bad(column: str) -> pl.Expr:
    col = pl.col(column)
    return col.is_null() | col.is_nan()


def feature_quality_by_day(
    features: pl.LazyFrame,
    days: list[date],
    *,
    every: str,
    warm_from: datetime,
    derived: Sequence[str],
    imputed_flags: Sequence[str],
    percentiles: Sequence[str],
    price: str = "close",
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per requested day (days with no rows included).

    - ``expected_bars``: bars in the day at ``every``; ``present_bars``: rows whose ``price``
      is not null (the feature table keeps every grid bar, a vendor gap has a null price);
      ``gap_bars`` = expected - present;
    - ``duplicate_keys``: rows beyond the first per ``[symbol, ts]``;
    - ``<flag>_share``: share of the day's rows where an imputation flag is true;
    - ``<feature>_nulls``: null or NaN values of each derived feature, counted only for
      bars at or after ``warm_from`` (before it the look-back windows are still filling);
    - ``percentile_out_of_range``: non-null percentiles outside (0, 1].

    With ``as_of`` (today's partial partition) only the bars closed by then are expected.
    """
    step = bar_duration(every)
    warm = pl.col("ts") >= warm_from
    aggs = [
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col(price).is_not_null().sum().cast(pl.Int64).alias("present_bars"),
        (pl.len() - pl.struct("symbol", "ts").n_unique()).cast(pl.Int64).alias("duplicate_keys"),
        *[pl.col(flag).fill_null(False).mean().alias(f"{flag}_share") for flag in imputed_flags],
        *[(_bad(name) & warm).sum().cast(pl.Int64).alias(f"{name}_nulls") for name in derived],
        pl.sum_horizontal(
            [(pl.col(p).is_not_null() & ((pl.col(p) <= 0) | (pl.col(p) > 1))).sum() for p in
             percentiles]
        ).cast(pl.Int64).alias("percentile_out_of_range"),
    ]  # fmt: skip
    stats = features.with_columns(day=partition_day_expr()).group_by("day").agg(aggs)
    counts = ["rows", "present_bars", "duplicate_keys", "percentile_out_of_range"]
    counts += [f"{name}_nulls" for name in derived]
    if as_of is not None:
        as_of = floor_to_grid(as_of, step)
    return (
        days_frame(days, as_of)
        .select("day", expected_bars=expected_slots(step))
        .join(stats, on="day", how="left")
        .with_columns(pl.col(counts).fill_null(0))
        .with_columns(
            gap_bars=pl.col("expected_bars") - pl.col("present_bars"),
            derived_nulls=pl.sum_horizontal([f"{name}_nulls" for name in derived])
            if derived
            else pl.lit(0, pl.Int64),
            warm=pl.col("day").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC") >= warm_from,
        )
        .sort("day")
        .collect()
    )


def price_divergence_by_day(
    ours: pl.LazyFrame, reference: pl.LazyFrame, days: list[date], tolerance_bp: float
) -> pl.DataFrame:
    """Compare two close series (columns ``ts``, ``close``) bar by bar, per day.

    ``compared_bars`` counts bars present on both sides; ``max_abs_bp`` / ``mean_abs_bp`` are
    the absolute differences in basis points of the reference; ``beyond_tolerance`` the bars
    differing by more than ``tolerance_bp``. ``substituted_bars``: the compared bars whose
    ``price_source`` (when ``ours`` has one) is not CoinGlass; the feature table's Binance
    substitute is the perp close itself, so such a bar compares a series with itself (0 bp).
    """
    diff_bp = (pl.col("close") / pl.col("close_ref") - 1).abs() * 10_000
    substituted = pl.lit(False)
    if "price_source" in ours.collect_schema().names():
        substituted = (pl.col("price_source") != COINGLASS_SOURCE).fill_null(False)
    joined = (
        ours.select("ts", "close", _substituted=substituted)
        .join(reference.select("ts", close_ref="close"), on="ts", how="inner")
        .filter(pl.col("close").is_not_null() & pl.col("close_ref").is_not_null())
        .with_columns(day=partition_day_expr(), diff_bp=diff_bp)
        .group_by("day")
        .agg(
            compared_bars=pl.len().cast(pl.Int64),
            max_abs_bp=pl.col("diff_bp").max(),
            mean_abs_bp=pl.col("diff_bp").mean(),
            beyond_tolerance=(pl.col("diff_bp") > tolerance_bp).sum().cast(pl.Int64),
            substituted_bars=pl.col("_substituted").sum().cast(pl.Int64),
        )
    )
    counts = ("compared_bars", "beyond_tolerance", "substituted_bars")
    return (
        days_frame(days)
        .select("day")
        .join(joined, on="day", how="left")
        .with_columns(pl.col(counts).fill_null(0))
        .sort("day")
        .collect()
    )


def source_shares_by_day(features: pl.LazyFrame, days: list[date]) -> pl.DataFrame:
    """Where each source column's values came from, per requested day.

    One row per (``day``, ``column``, ``source``) present: ``column`` one of
    ``SOURCE_COLUMNS``, ``source`` its value (null for ``funding_source`` on bars without a
    funding value), ``bars`` how many of the day's rows have it and ``share`` = bars / the
    day's rows. A requested day without rows has no row here. Sorted by day, column, source.
    """
    wanted = days_frame(days).select("day")
    rows = (
        features.select(
            partition_day_expr().alias("day"),
            *[pl.col(c).cast(pl.String) for c in SOURCE_COLUMNS],
        )
        .join(wanted, on="day", how="semi")
        .unpivot(on=list(SOURCE_COLUMNS), index="day", variable_name="column", value_name="source")
        .group_by("day", "column", "source")
        .agg(bars=pl.len().cast(pl.Int64))
    )
    return (
        rows.with_columns(share=pl.col("bars") / pl.col("bars").sum().over("day", "column"))
        .sort("day", "column", "source", nulls_last=True)
        .collect()
    )


def source_shares_of_day(shares: pl.DataFrame, day: date) -> dict[str, dict[str, float]]:
    """``{column: {source: share}}`` of one day of ``source_shares_by_day`` (a null source
    as ``"none"``), e.g. for check metadata."""
    out: dict[str, dict[str, float]] = {}
    for row in shares.filter(pl.col("day") == day).iter_rows(named=True):
        out.setdefault(row["column"], {})[row["source"] or "none"] = row["share"]
    return out
