"""Per-day figures of a published table (``core/forecast_schema.py``): what its gate reads.

A published day may hold no row (no publication that day: a weekend, a holiday), so there
is no expected count and no coverage to fall short of. Its integrity figures, each of which
must be zero (``defs.checks.INTEGRITY_FIGURES``):

- ``duplicate_keys``: rows sharing the table's key (``Table.key``);
- ``null_values``: nulls in the key, the clocks or the table's required columns;
- ``published_early``: rows whose ``available_at`` is before their ``event_time`` (known
  before the period began: a look-ahead the as-of join would pass on);
- ``off_clock_rows``: rows whose ``ts`` is not their ``available_at`` (the partition would
  not be "what became known that day").

``observations`` counts distinct ``event_time`` values and ``latest_event`` the newest one,
so the check's history shows how current each day left the series.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from btc_assets.core.quality import every_day
from btc_assets.core.schema import partition_day_expr

CLOCKS = ("symbol", "ts", "event_time", "available_at")


def published_quality_schema() -> dict[str, pl.DataType]:
    ts = pl.Datetime("ms", "UTC")
    return {
        "day": pl.Date(),
        "rows": pl.Int64(),
        "observations": pl.Int64(),
        "duplicate_keys": pl.Int64(),
        "null_values": pl.Int64(),
        "published_early": pl.Int64(),
        "off_clock_rows": pl.Int64(),
        "first_ts": ts,
        "last_ts": ts,
        "latest_event": ts,
    }


def published_quality_by_day(
    frame: pl.LazyFrame,
    days: list[date],
    key: Sequence[str],
    required: Sequence[str] = (),
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per requested day (``as_of`` is accepted for symmetry with the bar tables:
    a published day has no expected count to cut)."""
    del as_of
    schema = published_quality_schema()
    if not days:
        return pl.DataFrame(schema=schema)
    checked = list(dict.fromkeys([*CLOCKS, *key, *required]))
    stats = (
        frame.with_columns(day=partition_day_expr())
        .group_by("day")
        .agg(
            rows=pl.len(),
            observations=pl.col("event_time").n_unique(),
            duplicate_keys=pl.len() - pl.struct(list(key)).n_unique(),
            null_values=pl.sum_horizontal(*[pl.col(c).is_null() for c in checked]).sum(),
            published_early=(pl.col("available_at") < pl.col("event_time")).sum(),
            off_clock_rows=(pl.col("ts") != pl.col("available_at")).sum(),
            first_ts=pl.col("ts").min(),
            last_ts=pl.col("ts").max(),
            latest_event=pl.col("event_time").max(),
        )
    )
    return every_day(stats, days, schema)
