from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from btc_assets.core.percentile import rolling_percentile, window_sum

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pl.Datetime("ms", "UTC")


def frame(minutes: list[int], values: list[float | None]) -> pl.DataFrame:
    ts = [T0 + timedelta(minutes=m) for m in minutes]
    return pl.DataFrame({"ts": ts, "v": values}, schema={"ts": TS, "v": pl.Float64()})


def percentile(df: pl.DataFrame, window: str) -> list[float | None]:
    return df.select(rolling_percentile("v", "ts", window))["percentile"].to_list()


def naive(minutes: list[int], values: list[float | None], window: int) -> list[float | None]:
    """Share of non-null, non-NaN values in (t - window, t] that are <= the current one."""

    def missing(x: float | None) -> bool:
        return x is None or math.isnan(x)

    out: list[float | None] = []
    for t, x in zip(minutes, values, strict=True):
        if missing(x):
            out.append(None)
            continue
        inside = [
            y
            for s, y in zip(minutes, values, strict=True)
            if t - window < s <= t and not missing(y)
        ]
        out.append(sum(1 for y in inside if y <= x) / len(inside))
    return out


def test_ties_and_nulls_hand_computed() -> None:
    minutes = [0, 1, 2, 3, 5, 6, 9, 10, 11, 14]
    values = [3.0, None, 3.0, 1.0, None, 5.0, 3.0, 3.0, None, 1.0]
    # windows (t - 5m, t], non-null values only; ties count as <= (the current one included)
    expected = [
        1.0,  # 00:00 {3}
        None,  # 00:01 null stays null
        1.0,  # 00:02 {3, 3}: both tie with 3
        1 / 3,  # 00:03 {3, 3, 1}
        None,  # 00:05
        1.0,  # 00:06 (01, 06]: {3, 1, 5}, the null at 00:05 is not counted
        1 / 2,  # 00:09 (04, 09]: {5, 3}
        2 / 3,  # 00:10 (05, 10]: {5, 3, 3}
        None,  # 00:11
        1 / 2,  # 00:14 (09, 14]: {3, 1}; 00:09 is exactly 5m earlier, out
    ]
    assert percentile(frame(minutes, values), "5m") == expected


def test_nan_is_read_as_null_and_int_input() -> None:
    df = frame([1, 2, 3], [2.0, float("nan"), 1.0])
    assert percentile(df, "10m") == [1.0, None, 0.5]
    ints = pl.DataFrame({"ts": [1, 2, 3], "v": [5, 5, 4]})
    assert ints.select(rolling_percentile("v", "ts", "2i"))["percentile"].to_list() == [
        1.0,
        1.0,
        0.5,
    ]


def test_window_is_by_time_not_rows() -> None:
    # a gap of 50 minutes empties the window: the value is compared with itself only
    df = frame([0, 1, 2, 52], [1.0, 2.0, 3.0, 0.5])
    assert percentile(df, "30m") == [1.0, 1.0, 1.0, 1.0]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 4),  # gap to the previous row in minutes (0 = shared timestamp)
            st.sampled_from([None, float("nan"), 0.0, 1.0, 2.0, 3.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    window=st.integers(1, 15),
)
def test_matches_naive_reference(rows: list[tuple[int, float | None]], window: int) -> None:
    minutes, t = [], 0
    for gap, _ in rows:
        t += gap
        minutes.append(t)
    values = [v for _, v in rows]
    got = percentile(frame(minutes, values), f"{window}m")
    want = naive(minutes, values, window)
    assert got == want  # exact: both are ratios of the same two integers
    assert all(0.0 < p <= 1.0 for p in got if p is not None)


def test_window_sum_by_time_skips_nulls() -> None:
    df = frame([15, 30, 60, 120], [1.0, None, 4.0, None])
    total, count = window_sum("v", timedelta(minutes=45), timedelta(minutes=15))
    out = df.select(total=total, count=count)
    # (t - 45m, t]: 15 -> {1}; 30 -> {1}; 60 -> {4} (15 is exactly 45m earlier); 120 -> {}
    assert out["total"].to_list() == [1.0, 1.0, 4.0, None]
    assert out["count"].to_list() == [1, 1, 1, 0]
