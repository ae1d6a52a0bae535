"""Binance settlements placed on 15m bars: point in time, interval from their own spacing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from btc_assets.core.features import grid
from btc_assets.core.funding import (
    MAX_SETTLEMENT_INTERVAL,
    SETTLEMENT_LOOKBACK,
    settlements_on_bars,
)
from btc_assets.core.schema import TS

D = datetime(2024, 1, 2, tzinfo=UTC)
BAR = timedelta(minutes=15)
H = timedelta(hours=1)


def settlements(rows: list[tuple[datetime, float | None]]) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"ts": [t for t, _ in rows], "funding_rate": [r for _, r in rows]},
        schema={"ts": TS, "funding_rate": pl.Float64},
    )


def placed(
    rows: list[tuple[datetime, float | None]], start: datetime, end: datetime
) -> dict[datetime, tuple[float, datetime]]:
    """bar -> (rate, settlement time) for the bars in (start, end] that have a row."""
    out = settlements_on_bars(settlements(rows), grid(start, end)).collect()
    assert out.columns == ["ts", "funding_rate", "settled_at"]
    assert out["ts"].is_sorted() and out["ts"].is_unique().all()
    return {r["ts"]: (r["funding_rate"], r["settled_at"]) for r in out.iter_rows(named=True)}


def bars(first: datetime, last: datetime) -> list[datetime]:
    return [first + k * BAR for k in range((last - first) // BAR + 1)]


def expect(
    got: dict[datetime, tuple[float, datetime]],
    first: datetime,
    last: datetime,
    settled: tuple[float, datetime] | None,
) -> None:
    for ts in bars(first, last):
        assert got.get(ts) == settled, ts


def test_a_settlement_holds_until_the_next_and_never_before_its_time() -> None:
    rows = [(D - 16 * H, 1.0), (D - 8 * H, 2.0), (D, 3.0), (D + 8 * H, 4.0), (D + 16 * H, 5.0)]
    rows += [(D + 24 * H, 6.0), (D + 32 * H, 7.0)]
    got = placed(rows, D, D + 24 * H)
    expect(got, D + BAR, D + 8 * H - BAR, (3.0, D))  # the 00:00 settlement, from the first bar
    assert got[D + 8 * H - BAR] == (3.0, D)  # 07:45 does not see the 08:00 settlement
    expect(got, D + 8 * H, D + 16 * H - BAR, (4.0, D + 8 * H))  # 08:00 does
    expect(got, D + 16 * H, D + 24 * H - BAR, (5.0, D + 16 * H))
    assert got[D + 24 * H] == (6.0, D + 24 * H)  # the day's last bar closes at a settlement
    assert len(got) == 96


def test_first_settlement_defaults_to_8h() -> None:
    got = placed([(D, 1.0)], D - BAR, D + 9 * H)
    expect(got, D, D + 8 * H - BAR, (1.0, D))
    expect(got, D + 8 * H, D + 9 * H, None)  # nothing newer: missing, not stretched


def test_missing_settlement_leaves_bars_without_a_row() -> None:
    rows = [(D - 8 * H, 1.0), (D, 2.0), (D + 8 * H, 3.0), (D + 24 * H, 4.0), (D + 32 * H, 5.0)]
    got = placed(rows, D, D + 33 * H)  # no settlement at D+16h
    expect(got, D + 8 * H, D + 16 * H - BAR, (3.0, D + 8 * H))
    expect(got, D + 16 * H, D + 24 * H - BAR, None)  # 16:00 missing: no row, no made-up value
    expect(got, D + 24 * H, D + 32 * H - BAR, (4.0, D + 24 * H))  # min(16h, 8h): 8h
    expect(got, D + 32 * H, D + 33 * H, (5.0, D + 32 * H))


def test_interval_change_8h_to_4h() -> None:
    rows = [(D - 8 * H, 1.0), (D, 2.0), (D + 8 * H, 3.0), (D + 12 * H, 4.0), (D + 16 * H, 5.0)]
    rows += [(D + 24 * H, 7.0)]  # the 20:00 settlement is missing
    got = placed(rows, D, D + 30 * H)
    expect(got, D + 8 * H, D + 12 * H - BAR, (3.0, D + 8 * H))
    expect(got, D + 12 * H, D + 16 * H - BAR, (4.0, D + 12 * H))  # min(4h, 8h) = 4h
    expect(got, D + 16 * H, D + 20 * H - BAR, (5.0, D + 16 * H))  # the 4h schedule holds
    expect(got, D + 20 * H, D + 24 * H - BAR, None)  # 20:00 missing
    expect(got, D + 24 * H, D + 28 * H - BAR, (7.0, D + 24 * H))  # min(8h, 4h) = 4h
    expect(got, D + 28 * H, D + 30 * H, None)


def test_lengthening_4h_to_8h_is_visible_once() -> None:
    rows = [(D, 1.0), (D + 4 * H, 2.0), (D + 8 * H, 3.0), (D + 16 * H, 4.0), (D + 24 * H, 5.0)]
    got = placed(rows, D + 4 * H, D + 32 * H - BAR)
    expect(got, D + 8 * H, D + 12 * H - BAR, (3.0, D + 8 * H))
    expect(got, D + 12 * H, D + 16 * H - BAR, None)  # its 4h past, the next not yet there
    expect(got, D + 16 * H, D + 20 * H - BAR, (4.0, D + 16 * H))  # min(8h, 4h) = 4h
    expect(got, D + 20 * H, D + 24 * H - BAR, None)
    expect(got, D + 24 * H, D + 32 * H - BAR, (5.0, D + 24 * H))  # min(8h, 8h)


def test_a_settlement_after_a_long_silence_lives_8h_at_most() -> None:
    # a 1h schedule, then a day without settlements: the next one is in force 8h, not 24h
    rows = [(D - k * H, 1.0) for k in range(5, 0, -1)] + [(D + 23 * H, 2.0)]
    got = placed(rows, D - H, D + 40 * H)
    expect(got, D - H + BAR, D - BAR, (1.0, D - H))  # 1h schedule: the last one lasts 1h
    expect(got, D, D + 23 * H - BAR, None)
    expect(got, D + 23 * H, D + 31 * H - BAR, (2.0, D + 23 * H))  # spacing 24h, capped at 8h
    expect(got, D + 31 * H, D + 40 * H, None)


def test_null_or_nan_rate_is_not_a_settlement() -> None:
    rows = [(D - 8 * H, 1.0), (D, None), (D + 8 * H, float("nan")), (D + 16 * H, 4.0)]
    got = placed(rows, D, D + 24 * H)
    expect(got, D + BAR, D + 16 * H - BAR, None)  # 1.0 expired at 00:00; no value since
    expect(got, D + 16 * H, D + 24 * H - BAR, (4.0, D + 16 * H))  # spacing 24h: 8h
    assert D + 24 * H not in got


def _random_schedule(seed: int, first: datetime, days: int) -> list[tuple[datetime, float]]:
    """8h, then 4h, then 1h settlements with some missing, rates with ties."""
    rng = np.random.default_rng(seed)
    third = days * 24 // 3
    hours = [*range(0, third, 8), *range(third, 2 * third, 4), *range(2 * third, days * 24)]
    return [
        (first + h * H, float(rng.choice([-1e-4, 0.0, 1e-4]))) for h in hours if rng.random() > 0.1
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_look_ahead_and_one_day_equals_the_long_run(seed: int) -> None:
    first, days = D - timedelta(days=1), 9
    rows = _random_schedule(seed, first, days)
    start, end = D, first + timedelta(days=days)
    full = settlements_on_bars(settlements(rows), grid(start, end)).collect()
    assert (full["settled_at"] <= full["ts"]).all()
    assert ((full["ts"] - full["settled_at"]) < MAX_SETTLEMENT_INTERVAL).all()
    # Redraw every settlement after a cut-off (other times, other rates): no bar at or
    # before it changes.
    cutoff = D + timedelta(days=4, hours=8, minutes=7)
    later = [(t + 30 * timedelta(minutes=1), -r - 1e-5) for t, r in rows if t > cutoff]
    perturbed = [(t, r) for t, r in rows if t <= cutoff] + later
    other = settlements_on_bars(settlements(perturbed), grid(start, end)).collect()
    early = pl.col("ts") <= cutoff
    assert_frame_equal(full.filter(early), other.filter(early), check_exact=True)
    assert not full.filter(~early).equals(other.filter(~early))
    # Each day from its own fetch window (the day plus SETTLEMENT_LOOKBACK) equals the same
    # day in the long run: the fallback's day files do not depend on the span fetched.
    for k in range(days - 1):
        day = D + timedelta(days=k)
        window = [(t, r) for t, r in rows if day - SETTLEMENT_LOOKBACK < t <= day + 24 * H]
        alone = settlements_on_bars(settlements(window), grid(day, day + 24 * H)).collect()
        inside = full.filter((pl.col("ts") > day) & (pl.col("ts") <= day + 24 * H))
        assert_frame_equal(alone, inside, check_exact=True)
