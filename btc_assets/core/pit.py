"""Point-in-time joins: a bar sees a series' value only from the moment it was published.

Every late-published row carries ``event_time`` (the period it describes) and
``available_at`` (when a user could first have known it: a FRED vintage date, a day's close
plus the vendor's publication delay). :func:`as_of_join` gives each bar, for each series,
the value of the **latest observation known at the bar's close**, in its **latest vintage
known then**:

- a row is visible to a bar iff ``available_at <= ts``; ``event_time`` never decides it;
- a revision of the latest observation replaces it from the revision's ``available_at``; a
  revision of an older observation changes nothing for "the latest value" (it would for a
  lagged column, which is a separate join);
- a value older than ``max_staleness`` (``ts - event_time``) is null with a reason, and so is
  a bar before anything was published.

Polars' ``join_asof`` trusts that both sides are sorted and silently gives wrong matches if
not: both sides are sorted here and the order is asserted, so a bug upstream fails loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import timedelta

import polars as pl

TS = pl.Datetime("ms", "UTC")


class PointInTimeError(ValueError):
    """The input cannot be joined point-in-time (nulls in the time keys, unsorted)."""


def knowledge_timeline(series: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """The series as "what was the latest value, as of each publication instant": rows
    sorted by ``available_at``, keeping only those that change the latest value (a new
    latest observation, or a revision of the current latest one)."""
    keys = [*by]
    for column in ("event_time", "available_at"):
        nulls = series[column].null_count()
        if nulls:
            raise PointInTimeError(f"{nulls} row(s) have no {column}: cannot place them in time")
    ordered = series.sort([*keys, "available_at", "event_time"], maintain_order=True)
    newest = pl.col("event_time").cum_max()
    if keys:
        newest = newest.over(keys)
    timeline = ordered.filter(pl.col("event_time") >= newest)
    # Two rows published at the same instant: the later observation is what was known.
    return timeline.unique(subset=[*keys, "available_at"], keep="last", maintain_order=True)


def _assert_sorted(frame: pl.DataFrame, column: str, by: Sequence[str], side: str) -> None:
    previous = pl.col(column).shift(1)
    if by:
        previous = previous.over(list(by))
    in_order = (previous.is_null() | (pl.col(column) >= previous)).all()
    if not frame.select(in_order).item():
        raise PointInTimeError(f"{side} is not sorted by {column}: the as-of join would mismatch")


def as_of_join(
    bars: pl.DataFrame,
    series: pl.DataFrame,
    *,
    values: Sequence[str],
    prefix: str,
    max_staleness: timedelta,
    by: Sequence[str] = (),
) -> pl.DataFrame:
    """``bars`` (with ``ts``, the bar close) with, per value column ``v``, ``<prefix>v``, and
    ``<prefix>event_time``, ``<prefix>available_at`` and ``<prefix>null_reason`` (null when
    the value is there). ``by`` joins per key (e.g. ``symbol``) on both sides."""
    timeline = knowledge_timeline(series.select([*by, "event_time", "available_at", *values]), by)
    right = timeline.rename(
        {c: f"{prefix}{c}" for c in ("event_time", "available_at", *values)}
    ).with_columns(pl.col(f"{prefix}available_at").alias("_known"))
    left = bars.with_row_index("_order").sort([*by, "ts"])
    _assert_sorted(left, "ts", by, "bars")
    right = right.sort([*by, "_known"])
    _assert_sorted(right, "_known", by, "series")
    with warnings.catch_warnings():
        # Polars cannot check sortedness within ``by`` groups and says so: checked above.
        warnings.filterwarnings("ignore", "Sortedness of columns cannot be checked")
        joined = left.join_asof(
            right, left_on="ts", right_on="_known", by=list(by) or None, strategy="backward"
        )
    age = pl.col("ts") - pl.col(f"{prefix}event_time")
    stale = age > pl.lit(max_staleness)
    reason = (
        pl.when(pl.col(f"{prefix}event_time").is_null())
        .then(pl.lit("nothing published yet"))
        .when(stale)
        .then(pl.lit(f"stale: the latest value known is older than {max_staleness}"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    masked = [
        pl.when(stale).then(None).otherwise(pl.col(f"{prefix}{v}")).alias(f"{prefix}{v}")
        for v in values
    ]
    out = joined.with_columns(*masked, reason.alias(f"{prefix}null_reason"))
    return out.sort("_order").drop("_order", "_known")


def lookahead_rows(frame: pl.DataFrame, prefix: str) -> int:
    """Rows whose joined value was published after their bar closed (must be 0: a blocking
    check asserts it on every day)."""
    return frame.filter(pl.col(f"{prefix}available_at") > pl.col("ts")).height
