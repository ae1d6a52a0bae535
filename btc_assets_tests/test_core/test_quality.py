from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from btc_assets.core.bars import resample
from btc_assets.core.quality import (
    bar_quality_by_day,
    event_quality_by_day,
    gaps,
    ohlc_violation,
    volume_violation,
)
from btc_assets.core.schema import FUNDING_SCHEMA, KLINE_SCHEMA, TS
from btc_assets_tests.test_core.test_bars import fixture_klines

DAY = date(2024, 9, 21)
D0 = datetime(2024, 9, 21, tzinfo=UTC)


def minute(m: int) -> datetime:
    return D0 + timedelta(minutes=m)


def quality_row(frame: pl.DataFrame, every: str = "1m", day: date = DAY) -> dict:
    out = bar_quality_by_day(frame.lazy(), every, [day])
    assert out.height == 1
    return out.row(0, named=True)


def set_value(df: pl.DataFrame, m: int, column: str, value: object) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.col("ts") == minute(m))
        .then(pl.lit(value, dtype=df.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_clean_real_day() -> None:
    row = quality_row(fixture_klines())
    assert row == {
        "day": DAY,
        "expected_bars": 1440,
        "present_bars": 1440,
        "coverage": 1.0,
        "duplicate_keys": 0,
        "gap_count": 0,
        "longest_gap_bars": 0,
        "ohlc_violations": 0,
        "negative_volumes": 0,
        "non_monotonic": 0,
        "null_values": 0,
        "off_grid_rows": 0,
        "short_bars": 0,
        "rows": 1440,
        "first_ts": minute(1),
        "last_ts": minute(1440),  # next day's 00:00 closes this day's last bar
    }


def test_known_gaps_counted_as_maximal_runs() -> None:
    missing = {*range(100, 105), 700, 1440}  # runs of 5, 1 and 1 (the day's last slot)
    df = fixture_klines().filter(~pl.col("ts").is_in([minute(m) for m in missing]))
    row = quality_row(df)
    assert row["present_bars"] == 1440 - 7
    assert row["coverage"] == pytest.approx((1440 - 7) / 1440)
    assert (row["gap_count"], row["longest_gap_bars"]) == (3, 5)
    listed = gaps(df.lazy(), "1m", D0, D0 + timedelta(days=1))
    assert listed.rows() == [
        (minute(100), minute(104), 5),
        (minute(700), minute(700), 1),
        (minute(1440), minute(1440), 1),
    ]


def test_gap_at_day_start_and_short_15m_bars() -> None:
    one_min = fixture_klines().filter(~pl.col("ts").is_in([minute(200), minute(201)]))
    bars = resample(one_min.lazy(), "15m").collect()
    row = quality_row(bars.filter(pl.col("ts") > minute(60)), "15m")
    assert (row["expected_bars"], row["present_bars"]) == (96, 92)
    assert (row["gap_count"], row["longest_gap_bars"]) == (1, 4)
    assert row["short_bars"] == 1  # the 03:30 bar holds 13 minutes


def test_duplicates_do_not_inflate_coverage() -> None:
    df = fixture_klines()
    dup = pl.concat([df, df.filter(pl.col("ts").is_in([minute(5), minute(6), minute(6)]))])
    row = quality_row(dup.sort("ts"))
    assert (row["rows"], row["present_bars"], row["duplicate_keys"]) == (1442, 1440, 2)
    assert row["coverage"] == 1.0
    assert row["non_monotonic"] == 2  # equal consecutive ts are not strictly increasing


def test_ohlc_and_volume_violations_and_nulls() -> None:
    df = fixture_klines()
    df = set_value(df, 10, "high", 1.0)  # high below open/close
    df = set_value(df, 11, "low", float("nan"))
    df = set_value(df, 12, "open", 0.0)
    df = set_value(df, 13, "close", None)
    df = set_value(df, 14, "low", 1e9)  # low above everything
    df = set_value(df, 20, "volume", -1.0)
    df = set_value(df, 21, "taker_buy_volume", 1e6)  # more taker buys than volume
    df = set_value(df, 22, "trades", None)
    row = quality_row(df)
    assert row["ohlc_violations"] == 5
    assert row["negative_volumes"] == 2
    assert row["null_values"] == 2


def test_row_flags_treat_nan_as_bad() -> None:
    flags = pl.DataFrame(
        {
            "open": [1.0, 1.0], "high": [float("nan"), 2.0], "low": [1.0, 1.0],
            "close": [1.0, 1.0], "volume": [1.0, float("nan")], "quote_volume": [1.0, 1.0],
            "taker_buy_volume": [0.5, 0.5], "taker_buy_quote_volume": [0.5, 0.5],
            "trades": [1, 1],
        }
    ).select(ohlc=ohlc_violation(), vol=volume_violation())  # fmt: skip
    assert flags.rows() == [(True, False), (False, True)]


def test_non_monotonic_counts_backward_steps_in_stored_order() -> None:
    df = fixture_klines()
    order = list(range(1440))
    order[50], order[51] = order[51], order[50]
    order[900], order[905] = order[905], order[900]
    row = quality_row(df[order])
    assert row["non_monotonic"] == 3  # 1 for the adjacent swap, 2 for the distant one
    assert row["present_bars"] == 1440


def test_zero_row_days_are_reported_and_days_are_separate() -> None:
    df = fixture_klines().filter(pl.col("ts") != minute(30))
    days = [date(2024, 9, 22), date(2024, 9, 20), DAY]
    out = bar_quality_by_day(df.lazy(), "1m", days)
    assert out["day"].to_list() == sorted(days)
    empty = out.row(0, named=True)
    assert (empty["present_bars"], empty["rows"], empty["coverage"]) == (0, 0, 0.0)
    assert (empty["gap_count"], empty["longest_gap_bars"]) == (1, 1440)
    assert empty["first_ts"] is None and empty["last_ts"] is None
    assert out.filter(pl.col("day") == DAY)["gap_count"].item() == 1


def test_empty_frame_and_no_days() -> None:
    out = bar_quality_by_day(pl.LazyFrame(schema=KLINE_SCHEMA), "15m", [DAY])
    assert out.row(0, named=True)["longest_gap_bars"] == 96
    assert bar_quality_by_day(pl.LazyFrame(schema=KLINE_SCHEMA), "15m", []).is_empty()
    with pytest.raises(ValueError, match="divide a day"):
        bar_quality_by_day(pl.LazyFrame(schema=KLINE_SCHEMA), "7m", [DAY])


def test_gaps_requires_aware_on_grid_bounds() -> None:
    lf = fixture_klines().lazy()
    with pytest.raises(ValueError, match="naive"):
        gaps(lf, "15m", datetime(2024, 9, 21), D0 + timedelta(days=1))
    with pytest.raises(ValueError, match="grid"):
        gaps(lf, "15m", minute(1), D0 + timedelta(days=1))
    assert gaps(lf, "1m", D0, D0 + timedelta(days=1)).is_empty()


def funding(hours: list[tuple[date, int]]) -> pl.DataFrame:
    rows = [
        {
            "symbol": "BTCUSDT",
            "ts": datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(hours=h),
            "funding_rate": 0.0001,
            "mark_price": 63000.0,
        }
        for d, h in hours
    ]
    return pl.DataFrame(rows, schema=FUNDING_SCHEMA)


@pytest.mark.parametrize(("every_h", "expected"), [(8, 3), (4, 6)])
def test_funding_schedule_inferred(every_h: int, expected: int) -> None:
    days = [date(2024, 9, 20), DAY, date(2024, 9, 22)]
    # Day D holds the settlements in (D 00:00, D+1 00:00].
    settlements = [(d, h) for d in days for h in range(every_h, 25, every_h)]
    settlements.remove((DAY, every_h))  # one missed settlement on the middle day
    out = event_quality_by_day(funding(settlements).lazy(), days)
    assert out["expected_interval"].to_list() == [timedelta(hours=every_h)] * 3
    assert out["expected_events"].to_list() == [expected] * 3
    assert out["present_events"].to_list() == [expected, expected - 1, expected]
    assert out["coverage"][1] == pytest.approx((expected - 1) / expected)
    assert out["max_spacing"][1] == timedelta(hours=2 * every_h)
    assert out["duplicate_keys"].sum() == 0 and out["non_monotonic"].sum() == 0


def test_funding_explicit_interval_duplicates_nulls_and_empty_day() -> None:
    f = funding([(DAY, 8), (DAY, 16), (DAY, 16), (DAY, 24)])
    f = f.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("mark_price"))
    out = event_quality_by_day(f.lazy(), [DAY, date(2024, 9, 22)], timedelta(hours=8))
    first, empty = out.rows(named=True)
    assert (first["present_events"], first["duplicate_keys"], first["null_values"]) == (3, 1, 1)
    assert first["non_monotonic"] == 1
    assert (empty["expected_events"], empty["present_events"], empty["coverage"]) == (3, 0, 0.0)


def test_funding_interval_unknown_with_a_single_event() -> None:
    out = event_quality_by_day(funding([(DAY, 8)]).lazy(), [DAY])
    row = out.row(0, named=True)
    assert row["expected_interval"] is None and row["coverage"] is None
    assert row["present_events"] == 1


def test_stored_order_is_judged_before_days_are_filtered() -> None:
    today = fixture_klines()
    yesterday = today.with_columns(pl.col("ts") - timedelta(days=1))
    stored = pl.concat([today, yesterday])  # yesterday's file appended after today's
    out = bar_quality_by_day(stored.lazy(), "1m", [date(2024, 9, 20)])
    assert out["non_monotonic"].item() == 1  # the step back from today into yesterday
    assert out["present_bars"].item() == 1440


def test_partial_day_expects_only_the_bars_closed_by_as_of() -> None:
    day = date(2024, 3, 1)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    closed = [start + timedelta(minutes=m) for m in range(1, 608)]  # up to 10:07
    frame = pl.LazyFrame(
        {"symbol": "BTCUSDT", "ts": closed, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0},
        schema_overrides={"ts": TS},
    )
    as_of = start + timedelta(hours=10, minutes=7, seconds=42)
    row = bar_quality_by_day(frame, "1m", [day], as_of=as_of).row(0, named=True)
    assert (row["expected_bars"], row["present_bars"], row["gap_count"]) == (607, 607, 0)
    assert row["coverage"] == 1.0
    full = bar_quality_by_day(frame, "1m", [day]).row(0, named=True)
    assert (full["expected_bars"], full["gap_count"], full["longest_gap_bars"]) == (1440, 1, 833)
    # A day that has not started yet expects nothing.
    later = bar_quality_by_day(frame, "1m", [date(2024, 3, 2)], as_of=as_of).row(0, named=True)
    assert (later["expected_bars"], later["gap_count"], later["coverage"]) == (0, 0, None)


def test_partial_day_expects_only_settlements_due_by_as_of() -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    events = pl.LazyFrame(
        {"symbol": "BTCUSDT", "ts": [start + timedelta(hours=8)], "funding_rate": [1e-4]},
        schema_overrides={"ts": TS},
    )
    as_of = start + timedelta(hours=9)
    row = event_quality_by_day(events, [date(2024, 3, 1)], timedelta(hours=8), as_of=as_of).row(
        0, named=True
    )
    assert (row["expected_events"], row["present_events"], row["coverage"]) == (1, 1, 1.0)
