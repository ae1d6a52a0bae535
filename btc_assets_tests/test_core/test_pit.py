"""Point-in-time joins: visibility by publication, revisions, staleness, sortedness, and a
perturbation property (nothing published after t can change a bar at or before t)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btc_assets.core.pit import (
    PointInTimeError,
    _assert_sorted,
    as_of_join,
    knowledge_timeline,
    lookahead_rows,
)

T0 = datetime(2024, 6, 3, tzinfo=UTC)


def ts(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def bars(hours: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"ts": [ts(h) for h in hours]}, schema={"ts": pl.Datetime("ms", "UTC")})


def series(rows: list[tuple[float, float, float]]) -> pl.DataFrame:
    """(event hour, available hour, value)."""
    return pl.DataFrame(
        {"event_time": [ts(e) for e, _, _ in rows], "available_at": [ts(a) for _, a, _ in rows],
         "value": [v for _, _, v in rows]},
        schema={"event_time": pl.Datetime("ms", "UTC"), "available_at": pl.Datetime("ms", "UTC"),
                "value": pl.Float64},
    )  # fmt: skip


def join(b: pl.DataFrame, s: pl.DataFrame, stale_hours: float = 100) -> pl.DataFrame:
    return as_of_join(
        b, s, values=["value"], prefix="m_", max_staleness=timedelta(hours=stale_hours)
    )


def test_a_value_published_at_16_is_not_visible_in_the_15_bar() -> None:
    # The day's value describes 00:00 but is published at 16:00.
    out = join(bars([15, 16, 17]), series([(0, 16, 1.5)]))
    assert out["m_value"].to_list() == [None, 1.5, 1.5]
    assert out["m_null_reason"].to_list()[0] == "nothing published yet"
    assert lookahead_rows(out, "m_") == 0


def test_a_revision_shows_only_from_its_vintage_and_old_revisions_do_not_regress() -> None:
    s = series([
        (0, 10, 1.0),   # day 0 first print
        (24, 34, 2.0),  # day 1 first print
        (0, 40, 9.0),   # day 0 revised later: not the latest observation any more
        (24, 50, 2.5),  # day 1 revised
    ])  # fmt: skip
    out = join(bars([9, 11, 35, 41, 49, 51]), s)
    assert out["m_value"].to_list() == [None, 1.0, 2.0, 2.0, 2.0, 2.5]
    assert knowledge_timeline(s)["value"].to_list() == [1.0, 2.0, 2.5]


def test_stale_values_are_null_with_a_reason() -> None:
    out = join(bars([20, 30]), series([(0, 16, 1.0)]), stale_hours=24)
    assert out["m_value"].to_list() == [1.0, None]
    assert out["m_null_reason"][1].startswith("stale")


def test_unsorted_inputs_are_sorted_and_per_key_joins_stay_apart() -> None:
    b = pl.DataFrame({"symbol": ["B", "A", "A"], "ts": [ts(5), ts(5), ts(1)]},
                     schema={"symbol": pl.String, "ts": pl.Datetime("ms", "UTC")})  # fmt: skip
    s = series([(0, 4, 2.0), (0, 0, 1.0)]).with_columns(symbol=pl.lit("A"))
    out = as_of_join(b, s, values=["value"], prefix="m_", max_staleness=timedelta(days=1),
                     by=["symbol"])  # fmt: skip
    assert out["symbol"].to_list() == ["B", "A", "A"]  # the caller's order is kept
    assert out["m_value"].to_list() == [None, 2.0, 1.0]


def test_rows_without_a_publication_time_are_refused() -> None:
    s = series([(0, 1, 1.0)]).with_columns(
        available_at=pl.lit(None, dtype=pl.Datetime("ms", "UTC"))
    )
    with pytest.raises(PointInTimeError, match="no available_at"):
        join(bars([2]), s)


rows = st.lists(
    st.tuples(st.integers(0, 48), st.integers(0, 72), st.floats(-10, 10, allow_nan=False)),
    min_size=1, max_size=25,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(rows=rows, cut=st.integers(0, 72), noise=st.floats(1, 5))
def test_perturbing_what_is_published_after_a_cut_changes_nothing_before_it(
    rows: list[tuple[int, int, float]], cut: int, noise: float
) -> None:
    s = series([(e, max(a, e), v) for e, a, v in rows])  # published at or after the event
    perturbed = s.with_columns(
        value=pl.when(pl.col("available_at") > ts(cut)).then(pl.col("value") + noise)
        .otherwise(pl.col("value"))
    )  # fmt: skip
    b = bars([h / 2 for h in range(0, 2 * cut + 1)])
    assert join(b, s).equals(join(b, perturbed))
    assert lookahead_rows(join(b, s), "m_") == 0


def test_the_sortedness_guard_catches_an_unsorted_side_per_key() -> None:
    frame = pl.DataFrame({"k": ["a", "a", "b"], "ts": [ts(2), ts(1), ts(0)]},
                         schema={"k": pl.String, "ts": pl.Datetime("ms", "UTC")})  # fmt: skip
    with pytest.raises(PointInTimeError, match="bars is not sorted by ts"):
        _assert_sorted(frame, "ts", ["k"], "bars")
    _assert_sorted(frame.sort("k", "ts"), "ts", ["k"], "bars")  # sorted within each key: fine
