"""Per-day figures of a table keyed by more than ``[symbol, ts]`` that is not published late:
heatmap tiles (many price levels per candle) and the alert history (sparse events).

Neither has an expected count per day: a heatmap's candle interval depends on the range it
was asked with, and a calm day has no alert. So, like a published day, the figures carry
``observations`` (distinct ``ts``) and ``latest_event`` instead of coverage, and integrity
figures that must each be zero (``defs.checks.INTEGRITY_FIGURES``):

- ``duplicate_keys``: rows sharing the table's key (``Table.key``);
- ``null_values``: nulls in the key or the table's required columns;
- ``negative_volumes``: negative ``intensity`` or ``volume_usd`` (a USD amount below zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from btc_assets.core.quality import every_day
from btc_assets.core.schema import TS, partition_day_expr

NON_NEGATIVE = ("intensity", "volume_usd")


def keyed_quality_schema() -> dict[str, pl.DataType]:
    return {
        "day": pl.Date(),
        "rows": pl.Int64(),
        "observations": pl.Int64(),
        "duplicate_keys": pl.Int64(),
        "null_values": pl.Int64(),
        "negative_volumes": pl.Int64(),
        "first_ts": TS,
        "last_ts": TS,
        "latest_event": TS,
    }


def keyed_quality_by_day(
    frame: pl.LazyFrame,
    days: list[date],
    key: Sequence[str],
    required: Sequence[str] = (),
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per requested day (``as_of`` accepted for symmetry: nothing is expected)."""
    del as_of
    schema = keyed_quality_schema()
    if not days:
        return pl.DataFrame(schema=schema)
    columns = frame.collect_schema().names()
    checked = list(dict.fromkeys(["symbol", "ts", *key, *required]))
    negative = [pl.col(c) < 0 for c in NON_NEGATIVE if c in columns]
    stats = (
        frame.with_columns(day=partition_day_expr())
        .group_by("day")
        .agg(
            rows=pl.len(),
            observations=pl.col("ts").n_unique(),
            duplicate_keys=pl.len() - pl.struct(list(key)).n_unique(),
            null_values=pl.sum_horizontal(*[pl.col(c).is_null() for c in checked]).sum(),
            negative_volumes=pl.sum_horizontal(*negative).sum() if negative else pl.lit(0),
            first_ts=pl.col("ts").min(),
            last_ts=pl.col("ts").max(),
            latest_event=pl.col("ts").max(),
        )
    )
    return every_day(stats, days, schema)
