"""The synthetic market: deterministic per (seed, day), continuous, realistic, consistent."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from btc_assets.sandbox import market as mk

DAYS = [date(2017, 1, 1) + timedelta(days=k) for k in range(0, 4000, 37)]


def test_same_seed_same_day_gives_identical_numbers() -> None:
    day = date(2023, 6, 1)
    first = mk.market_day(7, "BTCUSDT", day)
    mk.market_day.cache_clear()
    mk._anchors.cache_clear()
    again = mk.market_day(7, "BTCUSDT", day)
    for name in ("open", "high", "low", "close", "volume", "trades"):
        assert getattr(first.spot, name).tobytes() == getattr(again.spot, name).tobytes()
        assert getattr(first.perp, name).tobytes() == getattr(again.perp, name).tobytes()
    assert first.funding.rate.tobytes() == again.funding.rate.tobytes()
    other = mk.market_day(8, "BTCUSDT", day)
    assert not np.array_equal(first.spot.close, other.spot.close)


def test_day_does_not_depend_on_what_was_generated_before() -> None:
    mk.market_day.cache_clear()
    late_first = mk.market_day(7, "BTCUSDT", date(2025, 3, 3)).spot.close.copy()
    mk.market_day.cache_clear()
    for k in range(5):
        mk.market_day(7, "BTCUSDT", date(2018, 1, 1) + timedelta(days=k))
    assert np.array_equal(mk.market_day(7, "BTCUSDT", date(2025, 3, 3)).spot.close, late_first)


def test_cached_arrays_are_read_only() -> None:
    md = mk.market_day(7, "BTCUSDT", date(2024, 1, 1))
    with pytest.raises(ValueError):
        md.spot.close[0] = 1.0


@pytest.mark.parametrize("start", [date(2019, 12, 30), date(2024, 2, 27), date(2031, 7, 4)])
def test_days_join_without_a_jump(start: date) -> None:
    for k in range(3):
        today = mk.market_day(7, "BTCUSDT", start + timedelta(days=k))
        tomorrow = mk.market_day(7, "BTCUSDT", start + timedelta(days=k + 1))
        assert today.spot.close[-1] == tomorrow.spot.open[0]
        assert today.perp.close[-1] == tomorrow.perp.open[0]
        assert tomorrow.spot.open_ms[0] == today.spot.open_ms[-1] + mk.MINUTE_MS


def test_bars_always_satisfy_ohlc_and_volume_invariants() -> None:
    for day in DAYS:
        md = mk.market_day(7, "BTCUSDT", day)
        for bars in (md.spot, md.perp):
            assert len(bars) == 1440
            assert np.all(bars.low <= np.minimum(bars.open, bars.close))
            assert np.all(bars.high >= np.maximum(bars.open, bars.close))
            assert np.all(bars.volume > 0) and np.all(bars.trades >= 1)
            assert np.all(bars.taker_buy_volume <= bars.volume)
            assert np.all(bars.taker_buy_quote_volume <= bars.quote_volume)
            share = bars.taker_buy_volume / bars.volume
            assert share.min() >= 0.29 and share.max() <= 0.71
            # quote = volume x a price inside the bar (rounding aside)
            vwap = bars.quote_volume / bars.volume
            assert np.all(vwap >= bars.low * 0.999) and np.all(vwap <= bars.high * 1.001)
        assert md.spot.close.min() > 5_000 and md.spot.close.max() < 150_000


def test_levels_look_like_binance() -> None:
    """Calibrated on the shared fixtures: 1m sd 3e-4..1e-3, trades 100s-1000s a minute."""
    sd, trades, quote = [], [], []
    for day in DAYS:
        spot = mk.market_day(7, "BTCUSDT", day).spot
        sd.append(np.diff(np.log(spot.close)).std())
        trades.append(spot.trades.mean())
        quote.append(spot.quote_volume.mean())
    assert 1e-4 < float(np.median(sd)) < 2e-3
    assert 50 < float(np.median(trades)) < 5000
    assert 2e4 < float(np.median(quote)) < 5e6  # USDT a minute


def test_perp_tracks_spot_with_a_small_premium_and_more_volume() -> None:
    for day in DAYS[::3]:
        md = mk.market_day(7, "BTCUSDT", day)
        basis = md.perp.close / md.spot.close - 1
        assert np.abs(basis).max() < 0.005  # under 50 bp, also after tick rounding
        assert np.abs(md.premium).max() < 0.004
        assert md.perp.volume.sum() > 1.5 * md.spot.volume.sum()
    premia = np.concatenate([mk.market_day(7, "BTCUSDT", d).premium for d in DAYS])
    assert abs(premia.mean()) < 0.001  # a few bp on average


def test_funding_follows_binance_formula_on_the_premium() -> None:
    seen_interest_only = seen_clamped = False
    for day in DAYS:
        md = mk.market_day(7, "BTCUSDT", day)
        avg = md.premium.reshape(3, 480).mean(axis=1)
        expected = avg + np.clip(mk.FUNDING_INTEREST - avg, -0.0005, 0.0005)
        assert np.allclose(md.funding.rate, expected, atol=5e-9)
        seen_interest_only |= bool(np.any(md.funding.rate == 0.0001))
        seen_clamped |= bool(np.any(md.funding.rate != 0.0001))
        start = mk.EPOCH_MS + mk.day_index(day) * mk.DAY_MS
        offsets = md.funding.time_ms - start - np.array([8, 16, 24]) * 3_600_000
        assert np.all((offsets >= 0) & (offsets < 10))  # a few ms late, never early
        if day >= mk.MARK_PRICE_SINCE:
            assert np.allclose(md.funding.mark_price, md.perp.close[[479, 959, 1439]], rtol=1e-3)
    assert seen_interest_only and seen_clamped


def test_aggregation_keeps_totals_and_extremes() -> None:
    md = mk.market_day(7, "BTCUSDT", date(2024, 5, 5))
    hourly = md.spot.aggregate(60, mk.SPOT_DECIMALS)
    assert len(hourly) == 24
    assert hourly.open[0] == md.spot.open[0] and hourly.close[-1] == md.spot.close[-1]
    assert hourly.high.max() == md.spot.high.max() and hourly.low.min() == md.spot.low.min()
    assert hourly.trades.sum() == md.spot.trades.sum()
    assert hourly.volume.sum() == pytest.approx(md.spot.volume.sum())


def test_other_symbols_exist_and_differ() -> None:
    btc = mk.market_day(7, "BTCUSDT", date(2024, 1, 1)).spot.close
    eth = mk.market_day(7, "ETHUSDT", date(2024, 1, 1)).spot.close
    assert not np.array_equal(btc, eth) and eth.mean() < btc.mean()
