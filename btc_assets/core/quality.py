"""Quality figures per partition day, for a whole range of days in one Polars query.

A Dagster range run evaluates checks for hundreds of days at once, so every function here
takes the full window and returns one row per requested day (days with no rows included)
rather than being called day by day. The day of a row is ``schema.partition_day_expr()``:
``ts`` in ``(D 00:00, D+1 00:00]`` belongs to ``D``. Rows with a null ``ts`` have no day and
are not counted (the lake refuses to store them).

The frames are expected to hold a single symbol (call once per symbol): ``present_bars`` and
the gap figures count distinct timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import polars as pl

from btc_assets.core.bars import bar_duration, expected_source_count
from btc_assets.core.schema import (
    BAR_SCHEMA,
    NON_NEGATIVE_COLUMNS,
    OHLC_COLUMNS,
    TS,
    VOLUME_COLUMNS,
    day_bounds,
    floor_to_grid,
    partition_day_expr,
)
from btc_assets.core.tables import Table

ONE_DAY = timedelta(days=1)
# Resampled volumes are float sums, so taker_buy may exceed total by rounding noise only.
VOLUME_REL_EPS = 1e-9
VOLUME_ABS_EPS = 1e-9

_GAP_SCHEMA = {"gap_start": TS, "gap_end": TS, "missing_bars": pl.Int64()}


# ---------------------------------------------------------------- row-level expressions


def ohlc_violation(columns: Iterable[str] = OHLC_COLUMNS) -> pl.Expr:
    """True where a bar is impossible: OHLC null/NaN/<=0, or not low <= open, close <= high.

    NaN is tested explicitly because Polars orders NaN above every number, so comparisons
    alone would accept a NaN high. A table without the four OHLC columns has no violation.
    """
    if not set(OHLC_COLUMNS) <= set(columns):
        return pl.lit(False)
    o, h, l, c = (pl.col(x) for x in OHLC_COLUMNS)  # noqa: E741
    bad_value = [x.is_null() | x.is_nan() | (x <= 0) for x in (o, h, l, c)]
    return pl.any_horizontal(*bad_value, l > o, l > c, o > h, c > h).fill_null(True)


def volume_violation(columns: Iterable[str] = (*VOLUME_COLUMNS, "trades")) -> pl.Expr:
    """True where an amount that cannot be negative is negative or NaN (volumes, trades,
    USD amounts), or a taker-buy part exceeds its total. Only the columns present count."""
    present = set(columns)
    amounts = [c for c in NON_NEGATIVE_COLUMNS if c in present]
    negative = [pl.col(c).lt(0) | pl.col(c).is_nan() for c in amounts]
    if "trades" in present:
        negative.append(pl.col("trades") < 0)

    def exceeds(part: str, total: str) -> pl.Expr:
        slack = VOLUME_REL_EPS * pl.col(total).abs() + VOLUME_ABS_EPS
        return (pl.col(part) - pl.col(total)) > slack

    parts = [
        exceeds(part, total)
        for part, total in (("taker_buy_volume", "volume"),
                            ("taker_buy_quote_volume", "quote_volume"))
        if {part, total} <= present
    ]  # fmt: skip
    if not negative and not parts:
        return pl.lit(False)
    return pl.any_horizontal(*negative, *parts).fill_null(False)


def null_count(columns: Iterable[str]) -> pl.Expr:
    """Number of null cells per row among ``columns``."""
    return pl.sum_horizontal(*[pl.col(c).is_null().cast(pl.Int64) for c in columns])


def non_monotonic_step() -> pl.Expr:
    """True where ``ts`` does not strictly increase over the previous row of the same symbol,
    in stored order (so it must be evaluated before any sort or filter)."""
    return (pl.col("ts").diff().over("symbol") <= timedelta(0)).fill_null(False)


# ---------------------------------------------------------------- shared plumbing


def every_day(
    stats: pl.LazyFrame, days: Iterable[date], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """Per-day figures (``stats``, keyed by ``day``) for every requested day, in ``schema``:
    a day with no row gets zero counts and null times."""
    counts = [c for c, t in schema.items() if t == pl.Int64()]
    return (
        days_frame(days)
        .select("day")
        .join(stats, on="day", how="left")
        .with_columns(pl.col(counts).fill_null(0).cast(pl.Int64))
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("day")
        .collect()
    )


def days_frame(days: Iterable[date], as_of: datetime | None = None) -> pl.LazyFrame:
    """day, start, end per requested day: (start, end] is what the day should hold.

    With ``as_of`` (a partial day such as today), ``end`` stops there: bars that have not
    closed yet are not expected.
    """
    unique = sorted(set(days))
    day = pl.col("day").cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
    frame = pl.LazyFrame({"day": unique}, schema={"day": pl.Date()}).with_columns(
        start=day, end=day + ONE_DAY
    )
    if as_of is None:
        return frame
    cutoff = pl.lit(as_of).cast(TS)
    return frame.with_columns(end=pl.max_horizontal("start", pl.min_horizontal("end", cutoff)))


def expected_slots(step: timedelta) -> pl.Expr:
    """Grid bars in a ``days_frame`` row's (start, end], the end floored to the grid."""
    step_ms = step // timedelta(milliseconds=1)
    return ((pl.col("end") - pl.col("start")).dt.total_milliseconds() // step_ms).cast(pl.Int64)


def _rows_in_days(frame: pl.LazyFrame, days: pl.LazyFrame, lo: date, hi: date) -> pl.LazyFrame:
    """Tag rows with their partition day and keep the requested days.

    The stored-order figures are computed first, so a filter cannot reorder or hide steps.
    """
    start, _ = day_bounds(lo)
    _, end = day_bounds(hi)
    return (
        frame.with_columns(
            _non_monotonic=non_monotonic_step(),
            _spacing=pl.col("ts").diff().over("symbol"),
            day=partition_day_expr(),
        )
        .filter((pl.col("ts") > start) & (pl.col("ts") <= end))
        .join(days.select("day"), on="day", how="semi")
    )


def _on_grid(step: timedelta) -> pl.Expr:
    return pl.col("ts").dt.epoch("ms") % (step // timedelta(milliseconds=1)) == 0


def _gap_runs(slots: pl.LazyFrame, bounds: pl.LazyFrame, step: timedelta) -> pl.LazyFrame:
    """Maximal runs of missing grid slots per ``key``.

    ``slots`` holds (key, ts) of present on-grid bars inside each key's ``(start, end]``;
    ``bounds`` holds (key, start, end). Expected slots are start+step … end. Sentinels at
    ``start`` and ``end + step`` turn leading, trailing and whole-range gaps into ordinary
    differences between neighbours.
    """
    step_ms = step // timedelta(milliseconds=1)
    sentinels = pl.concat(
        [
            bounds.select("key", ts=pl.col("start")),
            bounds.select("key", ts=pl.col("end") + step),
        ]
    )
    prev = pl.col("ts").shift(1).over("key")
    return (
        pl.concat([slots.select("key", pl.col("ts").cast(TS)), sentinels.cast({"ts": TS})])
        .unique()
        .sort("key", "ts")
        .with_columns(prev=prev)
        .with_columns(
            missing_bars=(pl.col("ts") - pl.col("prev")).dt.total_milliseconds() // step_ms - 1
        )
        .filter(pl.col("missing_bars") > 0)
        .select(
            "key",
            gap_start=pl.col("prev") + step,
            gap_end=pl.col("ts") - step,
            missing_bars=pl.col("missing_bars").cast(pl.Int64),
        )
    )


# ---------------------------------------------------------------- public figures


def bar_quality_by_day(
    bars: pl.LazyFrame, every: str, days: list[date], as_of: datetime | None = None
) -> pl.DataFrame:
    """One row per requested day with coverage, gaps, key and value violations.

    Expected slots for day D are D 00:00+every … D+1 00:00 (1440 for 1m, 96 for 15m); with
    ``as_of``, only the slots closed by then (today's partial partition).
    ``present_bars`` counts distinct on-grid ``ts``; rows off the grid are counted in
    ``off_grid_rows`` instead of inflating coverage. ``short_bars`` counts resampled bars
    built from fewer 1m bars than a full one (0 for frames without ``source_count``).
    ``rows`` is the raw row count.
    """
    step = bar_duration(every)  # also guarantees the step divides a day
    if not days:
        return pl.DataFrame(schema=_bar_quality_schema())
    if as_of is not None:
        as_of = floor_to_grid(as_of, step)
    days_lf = days_frame(days, as_of)
    schema = bars.collect_schema()
    contract = [c for c in BAR_SCHEMA if c in schema]
    columns = schema.names()
    # Resampled bars say how many 1m bars they hold; raw 1m bars are full by definition.
    short = (
        (pl.col("source_count") < expected_source_count(every)).sum()
        if "source_count" in schema
        else pl.lit(0)
    )
    base = _rows_in_days(bars, days_lf, min(days), max(days))
    on_grid = _on_grid(step)
    stats = base.group_by("day").agg(
        rows=pl.len().cast(pl.Int64),
        present_bars=pl.col("ts").filter(on_grid).n_unique().cast(pl.Int64),
        off_grid_rows=(~on_grid).sum().cast(pl.Int64),
        short_bars=short.cast(pl.Int64),
        duplicate_keys=(pl.len() - pl.struct("symbol", "ts").n_unique()).cast(pl.Int64),
        ohlc_violations=ohlc_violation(columns).sum().cast(pl.Int64),
        negative_volumes=volume_violation(columns).sum().cast(pl.Int64),
        non_monotonic=pl.col("_non_monotonic").sum().cast(pl.Int64),
        null_values=null_count(contract).sum().cast(pl.Int64),
        first_ts=pl.col("ts").min(),
        last_ts=pl.col("ts").max(),
    )
    slots = base.filter(on_grid).select(key=pl.col("day"), ts=pl.col("ts"))
    runs = _gap_runs(slots, days_lf.rename({"day": "key"}), step)
    gap_stats = runs.group_by("key").agg(
        gap_count=pl.len().cast(pl.Int64), longest_gap_bars=pl.col("missing_bars").max()
    )
    counts = [c for c, t in _bar_quality_schema().items() if t == pl.Int64()]
    return (
        days_lf.select("day", expected_bars=expected_slots(step))
        .join(stats, on="day", how="left")
        .join(gap_stats, left_on="day", right_on="key", how="left")
        .with_columns(
            pl.col(counts).fill_null(0),
            coverage=pl.when(pl.col("expected_bars") > 0).then(
                pl.col("present_bars").fill_null(0) / pl.col("expected_bars")
            ),
        )
        .select([pl.col(c).cast(t) for c, t in _bar_quality_schema().items()])
        .sort("day")
        .collect()
    )


def _bar_quality_schema() -> dict[str, pl.DataType]:
    i64 = pl.Int64()
    return {
        "day": pl.Date(),
        "expected_bars": i64,
        "present_bars": i64,
        "coverage": pl.Float64(),
        "duplicate_keys": i64,
        "gap_count": i64,
        "longest_gap_bars": i64,
        "ohlc_violations": i64,
        "negative_volumes": i64,
        "non_monotonic": i64,
        "null_values": i64,
        "off_grid_rows": i64,
        "short_bars": i64,
        "rows": i64,
        "first_ts": TS,
        "last_ts": TS,
    }


def event_quality_by_day(
    events: pl.LazyFrame,
    days: list[date],
    expected_interval: timedelta | None = None,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """One row per requested day for point-in-time tables such as funding.

    ``expected_events`` = whole intervals in a day (3 for 8h, 6 for 4h). Without
    ``expected_interval`` the interval is the median spacing of the distinct timestamps in
    the requested days, reported in ``expected_interval`` (null, with null coverage, when
    fewer than two events exist). ``max_spacing`` is the longest wait from the previous
    event (the previous event may sit in an earlier day if the frame holds it).
    ``null_values`` counts nulls in every column of the frame. With ``as_of`` only the
    intervals that have ended by then are expected (today's partial partition).
    """
    if expected_interval is not None and expected_interval <= timedelta(0):
        raise ValueError(f"expected_interval must be positive, got {expected_interval}")
    if not days:
        return pl.DataFrame(schema=_event_quality_schema())
    days_lf = days_frame(days, as_of)
    columns = list(events.collect_schema())
    base = _rows_in_days(events, days_lf, min(days), max(days))
    stats = base.group_by("day").agg(
        rows=pl.len().cast(pl.Int64),
        present_events=pl.col("ts").n_unique().cast(pl.Int64),
        duplicate_keys=(pl.len() - pl.struct("symbol", "ts").n_unique()).cast(pl.Int64),
        non_monotonic=pl.col("_non_monotonic").sum().cast(pl.Int64),
        null_values=null_count(columns).sum().cast(pl.Int64),
        max_spacing=pl.col("_spacing").max(),
        first_ts=pl.col("ts").min(),
        last_ts=pl.col("ts").max(),
    )
    if expected_interval is None:
        spacing = pl.col("ts").drop_nulls().unique().sort().diff().drop_nulls()
        interval = base.select(expected_interval=spacing.median())
    else:
        interval = pl.LazyFrame({"expected_interval": [expected_interval]})
    interval = interval.select(pl.col("expected_interval").cast(pl.Duration("ms")))
    interval_ms = pl.col("expected_interval").dt.total_milliseconds()
    day_ms = (pl.col("end") - pl.col("start")).dt.total_milliseconds()
    counts = [c for c, t in _event_quality_schema().items() if t == pl.Int64()]
    counts.remove("expected_events")
    return (
        days_lf.select("day", "start", "end")
        .join(stats, on="day", how="left")
        .join(interval, how="cross")
        .with_columns(
            pl.col(counts).fill_null(0),
            expected_events=pl.when(interval_ms > 0).then(day_ms // interval_ms),
        )
        .with_columns(
            coverage=pl.when(pl.col("expected_events") > 0).then(
                pl.col("present_events") / pl.col("expected_events")
            )
        )
        .select([pl.col(c).cast(t) for c, t in _event_quality_schema().items()])
        .sort("day")
        .collect()
    )


def _event_quality_schema() -> dict[str, pl.DataType]:
    i64 = pl.Int64()
    return {
        "day": pl.Date(),
        "expected_events": i64,
        "present_events": i64,
        "coverage": pl.Float64(),
        "duplicate_keys": i64,
        "non_monotonic": i64,
        "null_values": i64,
        "rows": i64,
        "max_spacing": pl.Duration("ms"),
        "expected_interval": pl.Duration("ms"),
        "first_ts": TS,
        "last_ts": TS,
    }


def gaps(bars: pl.LazyFrame, every: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Each maximal run of missing ``every`` slots in ``(start, end]``.

    Columns: ``gap_start`` (first missing ts), ``gap_end`` (last missing ts), ``missing_bars``.
    ``start`` and ``end`` must be timezone-aware and on the bar grid.
    """
    step = bar_duration(every)  # also guarantees the step divides a day
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise ValueError(f"{name}={moment} is naive; pass a UTC-aware datetime")
        if moment.timestamp() * 1000 % (step // timedelta(milliseconds=1)):
            raise ValueError(f"{name}={moment} is not on the {every} grid")
    if end <= start:
        return pl.DataFrame(schema=_GAP_SCHEMA)
    slots = bars.filter((pl.col("ts") > start) & (pl.col("ts") <= end) & _on_grid(step)).select(
        key=pl.lit(0, pl.Int64), ts=pl.col("ts")
    )
    bounds = pl.LazyFrame({"key": [0], "start": [start], "end": [end]}).cast(
        {"start": TS, "end": TS}
    )
    return _gap_runs(slots, bounds, step).drop("key").sort("gap_start").collect()


def quality_by_day(
    table: Table, frame: pl.LazyFrame, days: list[date], as_of: datetime | None = None
) -> pl.DataFrame:
    """The per-day figures of ``table``'s checks; ``as_of`` cuts today's partial partition:
    only bars closed by then are expected."""
    if table.published:
        from btc_assets.core.published_quality import published_quality_by_day

        return published_quality_by_day(frame, days, table.key, table.required, as_of)
    if tuple(table.key) != ("symbol", "ts"):
        from btc_assets.core.keyed_quality import keyed_quality_by_day

        return keyed_quality_by_day(frame, days, table.key, table.required, as_of)
    if table.every is None:
        required = ["symbol", "ts", *table.required]
        return event_quality_by_day(frame.select(required), days, as_of=as_of)
    return bar_quality_by_day(frame, table.every, days, as_of=as_of)
