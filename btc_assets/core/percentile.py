"""Time-windowed rolling percentile rank, and exact time-windowed sums on a bar grid.

``rolling_percentile(x, by, window)`` is, for each row, the share of the non-null values of
``x`` in the window ``(by - window, by]`` that are ``<=`` the row's own value:

    pctile = #{j : by_j in (by - window, by], x_j not null, x_j <= x} / #{j : ... , x_j not null}

The current value is in its own window, so a non-null result lies in ``(0, 1]``; it is null
where ``x`` is null. Ties count as ``<=`` (the largest value of the window is 1.0 however many
rows share it). Nulls, and NaN, which is read as null here, are neither ranked nor counted.
The window is by time, not by row count, so a missing bar shortens it instead of reaching
further back; rows sharing a timestamp are all in each other's window.

Implementation: Polars' native ``rolling_rank_by(method="max", min_samples=1)`` (the number
of window values ``<=`` x) divided by ``rolling_sum_by`` of the non-null indicator. Both are
integer counts, so the ratio is exact. ``min_samples`` is set explicitly: the count it tests
is of non-null values, and the current value is one, so 1 never hides a result. A property
test checks this against a naive O(n·w) count under ties, nulls, NaN and irregular
timestamps; Polars 2.1 needed no workaround.
"""

from __future__ import annotations

import operator
from datetime import timedelta
from functools import reduce

import polars as pl


def _col(x: str | pl.Expr) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x


def rolling_percentile(
    x: str | pl.Expr, by: str | pl.Expr = "ts", window: str | timedelta = "30d"
) -> pl.Expr:
    """Share of non-null values in ``(by - window, by]`` that are ``<=`` ``x`` (see module).

    ``x`` is compared as Float64 (NaN is read as null). ``by`` is a Datetime, Date or integer
    column (integer windows use the ``"<n>i"`` form); it need not be sorted. Returns Float64.
    """
    value = _col(x).cast(pl.Float64).fill_nan(None)
    key = _col(by)
    rank = value.rolling_rank_by(key, window, method="max", min_samples=1)
    count = value.is_not_null().cast(pl.Int64).rolling_sum_by(key, window)
    return (rank.cast(pl.Float64) / count.cast(pl.Float64)).alias("percentile")


def window_terms(
    x: str | pl.Expr, window: timedelta, step: timedelta, ts: str = "ts"
) -> list[pl.Expr]:
    """The values of ``x`` in ``(ts - window, ts]`` of each row, as lagged expressions.

    The frame must be sorted by ``ts`` (unique) with spacing no finer than ``step``, so the
    window holds at most ``ceil(window / step)`` rows: lag ``k`` is kept when its row lies
    inside the window by time, so missing bars never stretch the window.
    """
    lags = -(-window // step)
    value, time = _col(x), pl.col(ts)
    return [
        pl.when(time.shift(k) > time - window).then(value.shift(k)) if k else value
        for k in range(lags)
    ]


def window_sum(
    x: str | pl.Expr, window: timedelta, step: timedelta, ts: str = "ts"
) -> tuple[pl.Expr, pl.Expr]:
    """(sum, count) of the non-null values of ``x`` in ``(ts - window, ts]``; sum null when
    count is 0. See ``window_terms`` for the frame's requirements.

    The sum is added up afresh for every row, in a fixed order (newest first, see
    ``ordered_sum``), so it depends on the window's values only. Polars' ``rolling_sum_by``
    adds and subtracts incrementally, which leaves rounding from values that left the window
    long ago: the same bar would get different last bits from a one-day run and a year-long
    backfill.
    """
    terms = window_terms(x, window, step, ts)
    count = pl.sum_horizontal([t.is_not_null().cast(pl.Int64) for t in terms])
    return pl.when(count > 0).then(ordered_sum(terms)), count


def ordered_sum(terms: list[pl.Expr]) -> pl.Expr:
    """``terms[0] + terms[1] + ...`` left to right, nulls as 0.0 (all-null gives 0.0).

    Written as a chain of additions on purpose: ``pl.sum_horizontal`` of floats gave
    different last bits under the streaming and the in-memory engine (Polars 2.1), and the
    lake's files must not depend on which engine collected them.
    """
    return reduce(operator.add, [t.fill_null(0.0) for t in terms])
