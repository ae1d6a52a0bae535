"""Liquidation cascades and funding spikes of the synthetic market.

The signals asset looks, on 15m CoinGlass bars, for a liquidation cascade (1h liquidations
against the trailing 24h hourly mean, the price move that squeezes the dominant side, OI
falling), a funding anomaly (|z| of the funding close against 30 days) and an OI shock. These
tests build those same figures from ``coinglass_market.minute_columns`` reduced to 15m (as
the routes do) and check that every scheduled event shows up in them, that a calm day shows
none, and that events keep the market's invariants (days join, same numbers every time).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pytest

from btc_assets.sandbox import coinglass_market as cgm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import market_events as ev

SEED = 7
START = date(2024, 1, 1)
HISTORY_DAYS = 30  # the funding z-score's window comes before the 120 days examined
DAYS = 120
EXCHANGES = ("Binance", "OKX", "Bybit")
BARS_PER_DAY = 96
WINDOW_30D = 30 * BARS_PER_DAY


@dataclass(frozen=True)
class Signals:
    """The 15m figures the signals asset computes, one value per bar (NaN without history)."""

    close_ms: np.ndarray
    log_close: np.ndarray
    liq_ratio: np.ndarray  # 1h liquidations / hourly mean of the 24h before that hour
    longs_dominate: np.ndarray
    move_1h: np.ndarray  # log close change over the hour
    oi_change_1h: np.ndarray  # log change of open interest in coins (oi_now / close), 1h
    funding_z: np.ndarray  # funding close against the 30 days before

    def cascade(self, ratio: float) -> np.ndarray:
        squeeze = np.where(self.longs_dominate, -self.move_1h, self.move_1h)
        return (self.liq_ratio >= ratio) & (squeeze >= 0.005) & (self.oi_change_1h <= -0.01)


def _bars_15m(symbol: str, day: date) -> dict[str, np.ndarray]:
    def col(kind: cgm.Kind, name: str, exchanges: tuple[str, ...] = EXCHANGES) -> np.ndarray:
        values, rule = cgm.minute_columns(SEED, symbol, day, kind, exchanges)[name]
        return cgm.reduce(values, rule, 15)

    return {
        "close": col("price", "close", ("Binance",)),
        "oi": col("oi", "close"),
        "funding": col("funding_oi", "close") / 100.0,  # percent -> fraction
        "long": col("liquidation", "aggregated_long_liquidation_usd"),
        "short": col("liquidation", "aggregated_short_liquidation_usd"),
    }


def _hour(x: np.ndarray) -> np.ndarray:
    return np.convolve(x, np.ones(4))[: len(x)]  # this bar and the three before


def _lagged_change(x: np.ndarray, bars: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[bars:] = x[bars:] - x[:-bars]
    return out


_SIGNALS: dict[str, Signals] = {}


def signals(symbol: str) -> Signals:
    """Figures of HISTORY_DAYS + DAYS days from START (built once per symbol)."""
    if symbol in _SIGNALS:
        return _SIGNALS[symbol]
    parts = [_bars_15m(symbol, START + timedelta(days=k)) for k in range(HISTORY_DAYS + DAYS)]
    s = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = len(s["close"])
    liq = s["long"] + s["short"]
    total = np.concatenate([[0.0], np.cumsum(liq)])
    t = np.arange(n)
    ok = t >= 99  # the hour (t-3..t) and the 96 bars before it
    baseline = np.full(n, np.nan)
    baseline[ok] = (total[t[ok] - 3] - total[t[ok] - 99]) / 24.0
    z = np.full(n, np.nan)
    for i in range(WINDOW_30D, n):
        window = s["funding"][i - WINDOW_30D : i]
        z[i] = (s["funding"][i] - window.mean()) / window.std()
    start_ms = mk.EPOCH_MS + mk.day_index(START) * mk.DAY_MS
    out = Signals(
        close_ms=start_ms + (t + 1) * 15 * mk.MINUTE_MS,
        log_close=np.log(s["close"]),
        liq_ratio=_hour(liq) / baseline,
        longs_dominate=_hour(s["long"]) > _hour(s["short"]),
        move_1h=_lagged_change(np.log(s["close"]), 4),
        oi_change_1h=_lagged_change(np.log(s["oi"] / s["close"]), 4),
        funding_z=z,
    )
    _SIGNALS[symbol] = out
    return out


def _ms(absolute_minute: int) -> int:
    return mk.EPOCH_MS + absolute_minute * mk.MINUTE_MS


def _examined() -> tuple[int, int]:
    first = mk.day_index(START) + HISTORY_DAYS
    return first, first + DAYS - 1


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_events_happen_at_their_rates(symbol: str) -> None:
    first, last = _examined()
    cascades = ev.cascades(SEED, symbol, first, last)
    spikes = ev.funding_spikes(SEED, symbol, first, last)
    # about one cascade per 7-10 days and one spike per 10-15 days, within 3x
    assert DAYS / 10 / 3 <= len(cascades) <= DAYS / 7 * 3
    assert 1 <= len(spikes) <= DAYS / 10 * 3
    # over the whole horizon the rates are the configured ones
    every = ev.cascades(SEED, symbol, 0, mk.HORIZON_DAYS)
    assert len(every) / mk.HORIZON_DAYS == pytest.approx(ev.CASCADES_PER_DAY, rel=0.1)
    every_spike = ev.funding_spikes(SEED, symbol, 0, mk.HORIZON_DAYS)
    assert len(every_spike) / mk.HORIZON_DAYS == pytest.approx(ev.FUNDING_SPIKES_PER_DAY, rel=0.1)
    for c in every:
        assert 15 <= c.minutes <= 60 and 0.015 <= abs(c.move) <= 0.04
    assert 0.5 < np.mean([c.longs_squeezed for c in every]) < 0.7


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_every_cascade_fires_the_cascade_signal(symbol: str) -> None:
    s = signals(symbol)
    first, last = _examined()
    cascades = ev.cascades(SEED, symbol, first, last)
    assert cascades
    for c in cascades:
        near = (s.close_ms > _ms(c.start)) & (s.close_ms <= _ms(c.end) + 3_600_000)
        hits = near & s.cascade(10.0)  # liquidations >= 10x: the "high" level
        assert hits.any(), f"{symbol} cascade at minute {c.start} ({c}) did not fire"
        assert np.all(s.longs_dominate[hits] == c.longs_squeezed)
        # the move is in the price (give or take the minutes' own noise)
        at_end = np.flatnonzero(s.close_ms >= _ms(c.end))[0]
        before = np.flatnonzero(s.close_ms <= _ms(c.start))[-1]
        made = s.log_close[at_end] - s.log_close[before]
        assert np.sign(made) == np.sign(c.move) and abs(made) > 0.5 * abs(c.move)


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_every_funding_spike_is_a_funding_anomaly(symbol: str) -> None:
    s = signals(symbol)
    first, last = _examined()
    spikes = ev.funding_spikes(SEED, symbol, first, last)
    assert spikes
    for spike in spikes:
        during = (s.close_ms > _ms(spike.start)) & (s.close_ms <= _ms(spike.end))
        z = s.funding_z[during]
        peak = z[np.argmax(np.abs(z))]
        assert abs(peak) > 3 and np.sign(peak) == np.sign(spike.premium), (symbol, spike, peak)


def test_a_calm_day_far_from_events_fires_nothing() -> None:
    s = signals("BTCUSDT")
    first, last = _examined()
    sigma = mk._anchors(SEED, "BTCUSDT").sigma
    calm = [
        d for d in range(first, last + 1)
        if not ev.cascades(SEED, "BTCUSDT", d - 4, d + 1)
        and not ev.funding_spikes(SEED, "BTCUSDT", d - 2, d + 1)
        and sigma[d] <= np.median(sigma[first : last + 1])
    ]  # fmt: skip
    assert calm
    for d in calm[:3]:
        bars = (s.close_ms > mk.EPOCH_MS + d * mk.DAY_MS) & (
            s.close_ms <= mk.EPOCH_MS + (d + 1) * mk.DAY_MS
        )
        assert not s.cascade(5.0)[bars].any()
        assert np.abs(s.funding_z[bars]).max() < 3
        assert np.abs(s.oi_change_1h[bars]).max() < 0.03
        assert ev.day_effects(SEED, "BTCUSDT", d).calm


def _crossing(events: tuple, lo: int) -> object:
    for e in events:
        if e.start // ev.DAY_MINUTES != (e.end - 1) // ev.DAY_MINUTES and e.start >= lo:
            return e
    raise AssertionError("no event crosses midnight in the examined days")


def test_an_event_across_midnight_joins_the_days_and_repeats_exactly() -> None:
    first, last = _examined()
    cascade = _crossing(ev.cascades(SEED, "BTCUSDT", first, last + 200), first)
    spike = _crossing(ev.funding_spikes(SEED, "BTCUSDT", first, last + 200), first)
    for e in (cascade, spike):
        day = mk.EPOCH + timedelta(days=e.start // ev.DAY_MINUTES)
        first_build = [_snapshot(day + timedelta(days=k)) for k in (-1, 0, 1, 2)]
        for today, tomorrow in itertools.pairwise(first_build):
            for name in ("spot_close", "perp_close", "oi_usd", "oi_coin", "cg_close"):
                assert today[name][-1] == tomorrow[name.replace("close", "open")][0], name
        for cache in (mk.market_day, mk._anchors, cgm.coinglass_day, ev.day_effects, ev._schedule):
            cache.cache_clear()
        again = [_snapshot(day + timedelta(days=k)) for k in (-1, 0, 1, 2)]
        for one, two in zip(first_build, again, strict=True):
            assert all(one[k].tobytes() == two[k].tobytes() for k in one)
    # the cascade's open interest is down by the time it ends, across midnight
    d = cascade.start // ev.DAY_MINUTES
    after = cgm.coinglass_day(SEED, "BTCUSDT", mk.EPOCH + timedelta(days=d + 1)).oi_coin_path
    before = cgm.coinglass_day(SEED, "BTCUSDT", mk.EPOCH + timedelta(days=d)).oi_coin_path
    start_level = before[cascade.start - d * ev.DAY_MINUTES]
    end_level = after[cascade.end - (d + 1) * ev.DAY_MINUTES]
    assert np.log(end_level / start_level) < -0.5 * cascade.coin_drop


def _snapshot(day: date) -> dict[str, np.ndarray]:
    md = mk.market_day(SEED, "BTCUSDT", day)
    cg = cgm.coinglass_day(SEED, "BTCUSDT", day)
    return {
        "spot_close": md.spot.close, "spot_open": md.spot.open,
        "perp_close": md.perp.close, "perp_open": md.perp.open,
        "oi_usd": cg.oi_usd_path, "oi_coin": cg.oi_coin_path,
        "cg_close": cg.price[3], "cg_open": cg.price[0], "premium": md.premium,
        "liq_long": cg.liq_long, "funding": cg.funding_oi_path, "rate": md.funding.rate,
    }  # fmt: skip


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"])
def test_event_days_keep_the_market_invariants(symbol: str) -> None:
    first, last = _examined()
    days = {c.start // ev.DAY_MINUTES for c in ev.cascades(SEED, symbol, first, last)}
    days |= {s.start // ev.DAY_MINUTES for s in ev.funding_spikes(SEED, symbol, first, last)}
    for d in sorted(days)[:12]:
        md = mk.market_day(SEED, symbol, mk.EPOCH + timedelta(days=d))
        for bars in (md.spot, md.perp):
            assert np.all(bars.low <= np.minimum(bars.open, bars.close))
            assert np.all(bars.high >= np.maximum(bars.open, bars.close))
            assert np.all(bars.volume > 0) and np.all(bars.trades >= 1)
            assert np.all(bars.taker_buy_volume <= bars.volume)
            assert np.all(bars.taker_buy_quote_volume <= bars.quote_volume)
        assert np.abs(md.premium).max() < 0.005
        avg = md.premium.reshape(3, 480).mean(axis=1)
        expected = avg + np.clip(mk.FUNDING_INTEREST - avg, -mk.FUNDING_CLAMP, mk.FUNDING_CLAMP)
        assert np.allclose(md.funding.rate, expected, atol=5e-9)
        cg = cgm.coinglass_day(SEED, symbol, md.day)
        assert (cg.liq_long >= 0).all() and (cg.liq_short >= 0).all()
        assert np.isfinite(cg.oi_usd_path).all() and (cg.oi_usd_path > 0).all()
