"""A deterministic synthetic market: 1m spot and perp bars, premium and 8h funding.

Every instrument of ``sandbox.universe`` has its own market, keyed by its perp symbol: a
path drawn from its own RNG, scaled to its price level and traded value, on its own tick and
step. Spot prices are per coin, perp prices per contract unit (``multiplier`` coins), so
1000PEPEUSDT trades at 1000 times PEPEUSDT plus the premium.

Day ``d`` is a pure function of ``(seed, symbol, d)``: a daily anchor path (open price, daily
volatility, activity, perp premium) is drawn once per seed from the fixed epoch 2017-01-01,
and each day's minutes are a variance-weighted Brownian bridge between two anchors drawn
from an RNG keyed by the day. So any window of any request sees the same numbers, days join
without a jump, and one day costs O(1 day) to build whatever its date.

Rare events (``sandbox.market_events``) break the calm: a liquidation cascade adds a sharp
1.5-4 % move to the minutes it runs through (and to the anchors, so the bridge keeps it),
with more volatility and volume and the perp leading the spot; a funding spike lifts the
premium for a few hours, and with it the funding. Both are zero at midnight unless they run
through it, and then equal on both sides, so days still join exactly.

Levels are calibrated on the real Binance files in the shared fixtures (2020-01 and
2024-09): 1m log-return sd 3e-4..1e-3, bar range about 1.2 sd, average trade 400-600 USDT on
spot, taker buy share around one half, perp volume several times spot volume.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import market_events as events
from btc_assets.sandbox.universe import BY_PERP, Instrument

EPOCH = date(2017, 1, 1)
EPOCH_MS = 1_483_228_800_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
MINUTES = 1440
# Anchors are drawn for this many days after the epoch (to 2050); one draw is ~1 ms. The
# event schedule covers the same days.
HORIZON_DAYS = events.HORIZON_DAYS
# BTCUSDT perpetual went live on 2019-09-08; the real API has nothing for it before then.
# (Every instrument's listing is in ``sandbox.universe``; this is BTCUSDT's.)
PERP_LISTED = date(2019, 9, 8)
# Old funding rows carry markPrice "" on the real API (about 2019-2020).
MARK_PRICE_SINCE = date(2020, 1, 1)
FUNDING_INTEREST = 0.0001  # 0.01 % per 8h, Binance's fixed interest component
FUNDING_CLAMP = 0.0005
FUNDING_MINUTES = (480, 960, 1440)  # settlements at 08:00, 16:00 and 24:00 of the day


@dataclass(frozen=True)
class Bars:
    """Column arrays of klines; prices and sizes already on the venue's tick and step."""

    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray
    trades: np.ndarray

    def __len__(self) -> int:
        return len(self.open_ms)

    def take(self, index: np.ndarray | slice) -> Bars:
        return Bars(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def aggregate(self, minutes: int, decimals: tuple[int, int, int]) -> Bars:
        """Bars of ``minutes`` 1m bars each (``minutes`` divides the length).

        ``decimals`` = (price, base size, quote size) places. Sizes are summed as whole
        units of the last place, as the venue sums decimals: a float sum re-rounded would
        miss the last place once a total nears 15 significant digits (a 15m spot quote
        volume of 4e6 at 8 places).
        """
        if minutes == 1:
            return self
        _, size_dp, quote_dp = decimals

        def grid(a: np.ndarray) -> np.ndarray:
            return a.reshape(-1, minutes)

        def exact_sum(a: np.ndarray, places: int) -> np.ndarray:
            units = np.rint(grid(a) * 10**places).astype(np.int64).sum(axis=1)
            # Decimal to float rounds once; units / 10**places could round twice.
            return np.array([float(Decimal(int(u)).scaleb(-places)) for u in units.tolist()])

        return Bars(
            open_ms=grid(self.open_ms)[:, 0],
            open=grid(self.open)[:, 0],
            high=grid(self.high).max(axis=1),
            low=grid(self.low).min(axis=1),
            close=grid(self.close)[:, -1],
            volume=exact_sum(self.volume, size_dp),
            quote_volume=exact_sum(self.quote_volume, quote_dp),
            taker_buy_volume=exact_sum(self.taker_buy_volume, size_dp),
            taker_buy_quote_volume=exact_sum(self.taker_buy_quote_volume, quote_dp),
            trades=grid(self.trades).sum(axis=1),
        )


@dataclass(frozen=True)
class Funding:
    """Settlements whose minute-rounded time lies in (D 00:00, D+1 00:00]."""

    time_ms: np.ndarray  # as stamped by the venue: a few ms after the boundary
    rate: np.ndarray
    mark_price: np.ndarray  # NaN where the venue serves ""


@dataclass(frozen=True)
class MarketDay:
    day: date
    spot: Bars
    perp: Bars
    premium: np.ndarray  # perp/spot - 1 at each minute's close
    funding: Funding


SPOT_DECIMALS = BY_PERP["BTCUSDT"].spot_decimals  # BTCUSDT spot: tick 0.01, step 0.00001
PERP_DECIMALS = BY_PERP["BTCUSDT"].perp_decimals  # BTCUSDT perp: tick 0.1, step 0.001


def day_index(day: date) -> int:
    return (day - EPOCH).days


def day_of_ms(ms: int) -> date:
    return EPOCH + timedelta(days=(ms - EPOCH_MS) // DAY_MS)


def _symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


def instrument(symbol: str) -> Instrument:
    """The universe's instrument of a perp symbol; ValueError if the sandbox has none."""
    found = BY_PERP.get(symbol)
    if found is None:
        raise ValueError(f"the sandbox market has no instrument {symbol!r}")
    return found


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    """AR(1) filter by convolution with a truncated kernel (vectorised, no scipy)."""
    taps = int(np.ceil(np.log(1e-4) / np.log(phi)))
    return np.convolve(shocks, phi ** np.arange(taps))[: len(shocks)]


@dataclass(frozen=True)
class _Anchors:
    log_price: np.ndarray  # log open price at 00:00 of each day (len HORIZON_DAYS + 1)
    sigma: np.ndarray  # daily log-return volatility of each day
    activity: np.ndarray  # spot quote volume of each day, USDT
    premium: np.ndarray  # perp premium at 00:00 of each day
    perp_ratio: np.ndarray  # perp / spot base volume of each day


@lru_cache(maxsize=64)  # one per instrument of a basket
def _anchors(seed: int, symbol: str) -> _Anchors:
    inst = instrument(symbol)
    rng = np.random.default_rng([seed, _symbol_key(symbol), 0xA2C4])
    n = HORIZON_DAYS + 1
    d = np.arange(n)
    years = d / 365.25
    # Stochastic volatility: log-AR(1) around 2.8 %/day, clipped to calm..crash days.
    sigma = np.clip(0.028 * np.exp(_ar1(rng.normal(0.0, 0.12, n), 0.97)), 0.008, 0.12)
    # A slow secular trend with a four-year cycle; the price mean-reverts to it so a
    # random seed stays in the 10k-100k band the pipeline and its plots expect.
    trend = (
        np.log(12_000.0)
        + np.log(60_000 / 12_000) * np.minimum(years / 8.0, 1.0)
        + 0.35 * np.sin(2 * np.pi * years / 4.0)
    )
    z = rng.standard_t(4, n) / np.sqrt(2.0)
    jumps = (rng.random(n) < 0.03) * rng.normal(0.0, 0.04, n)
    # Liquidation cascades move the price for good: each day's share of their moves.
    cascade_moves = events.daily_cascade_moves(seed, symbol)
    lo, hi = np.log(8_000.0), np.log(140_000.0)
    log_price = np.empty(n)
    x = np.log(15_000.0)
    for i in range(n):  # sequential because of the reflection; ~12k steps once per seed
        log_price[i] = x
        x = x + 0.004 * (trend[i] - x) + sigma[i] * z[i] + jumps[i] + cascade_moves[i]
        if x < lo:
            x = 2 * lo - x
        elif x > hi:
            x = 2 * hi - x
    log_price += np.log(inst.price)
    weekday = (d + EPOCH.weekday()) % 7
    activity = (
        np.exp(np.log(1.5e8) + np.log(10.0) * np.minimum(years / 7.5, 1.0))
        * np.exp(_ar1(rng.normal(0.0, 0.12, n), 0.9))
        * (sigma / 0.028) ** 0.8
        * np.where(weekday >= 5, 0.65, 1.0)
        * inst.activity
    )
    premium = 0.0002 + _ar1(rng.normal(0.0, 0.00018, n), 0.9)
    perp_ratio = 4.0 * np.exp(_ar1(rng.normal(0.0, 0.1, n), 0.9))
    return _Anchors(log_price, sigma, activity, premium, perp_ratio)


def _ohlc(
    rng: np.random.Generator,
    open_raw: float,
    close_raw: np.ndarray,
    s: np.ndarray,
    tick_dp: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    close = np.round(close_raw, tick_dp)
    open_ = np.empty_like(close)
    open_[0] = np.round(open_raw, tick_dp)
    open_[1:] = close[:-1]
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    # Intra-minute excursions beyond the open/close (half-normal, about 0.4 sd each side).
    high = np.maximum(
        np.round(top * np.exp(0.5 * np.abs(rng.standard_normal(len(s))) * s), tick_dp), top
    )
    low = np.minimum(
        np.round(bottom * np.exp(-0.5 * np.abs(rng.standard_normal(len(s))) * s), tick_dp), bottom
    )
    return open_, high, low, close


def _flows(
    rng: np.random.Generator,
    base_volume: np.ndarray,
    ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    share: np.ndarray,
    trade_size_quote: float,
    decimals: tuple[int, int, int],
    open_ms: np.ndarray,
) -> Bars:
    open_, high, low, close = ohlc
    _, size_dp, quote_dp = decimals
    step = 10.0**-size_dp
    vwap = (open_ + high + low + close) / 4.0  # inside [low, high], so quote/volume is too
    volume = np.maximum(np.round(base_volume, size_dp), step)
    quote = np.round(volume * vwap, quote_dp)
    taker = np.round(volume * share, size_dp)  # share <= 0.7 keeps taker <= volume
    taker_quote = np.round(taker * vwap, quote_dp)
    size = trade_size_quote * np.exp(rng.normal(0.0, 0.2, len(volume)))
    trades = np.maximum(np.round(quote / size), 1).astype(np.int64)
    return Bars(open_ms, open_, high, low, close, volume, quote, taker, taker_quote, trades)


@lru_cache(maxsize=64)
def market_day(seed: int, symbol: str, day: date) -> MarketDay:
    """All minutes of UTC day ``day`` (bars opening 00:00..23:59) and its funding, for the
    instrument whose perp is ``symbol``; listing dates are the routes' business."""
    i = day_index(day)
    if not 0 <= i < HORIZON_DAYS:
        raise ValueError(f"sandbox market covers {EPOCH}..{EPOCH + timedelta(HORIZON_DAYS - 1)}")
    inst = instrument(symbol)
    spot_dp, perp_dp = inst.spot_decimals, inst.perp_decimals
    anchors = _anchors(seed, symbol)
    rng = np.random.default_rng([seed, _symbol_key(symbol), i])
    n = MINUTES
    a, b = anchors.log_price[i], anchors.log_price[i + 1]
    sigma = anchors.sigma[i]
    hour = (np.arange(n) + 0.5) / 60.0
    # Crypto trades round the clock but is busiest around the US open, calmest in Asia's night.
    season = 1.0 + 0.35 * np.cos(2 * np.pi * (hour - 14.5) / 24.0)
    vol_state = np.exp(_ar1(rng.normal(0.0, 0.06, n), 0.97))
    s = season * vol_state
    s *= sigma / np.sqrt(np.sum(s**2))
    # Events (``market_events``): a cascade's move joins the walk (its daily share is in the
    # anchors, so the bridge does not take it back) and shakes the minutes it runs through.
    # The bridge spreads its correction by the calm volatility, so a cascade's minutes do
    # not take a bigger share of it than any other.
    effects = events.day_effects(seed, symbol, i)
    variance_share = np.cumsum(s**2) / np.sum(s**2)
    s = s * (1.0 + events.CASCADE_VOLATILITY_BOOST * effects.intensity)
    shocks = rng.standard_t(5, n) / np.sqrt(5 / 3) * s
    shocks += (rng.random(n) < 0.0008) * rng.normal(0.0, 4.0, n) * s
    for first, last in effects.moves:  # the minutes' own drift does not blunt the move
        shocks[first:last] -= shocks[first:last].mean()
    shocks += effects.returns
    walk = np.cumsum(shocks)
    log_close = a + walk - variance_share * (walk[-1] - (b - a))
    log_close[-1] = b  # exact, so the next day's first open equals this close
    close_raw = np.exp(log_close)
    open_ms = EPOCH_MS + i * DAY_MS + np.arange(n, dtype=np.int64) * MINUTE_MS

    z = shocks / s
    spot_ohlc = _ohlc(rng, np.exp(a), close_raw, s, spot_dp[0])
    mid = (spot_ohlc[0] + spot_ohlc[3]) / 2.0
    years = i / 365.25
    quote_target = (
        anchors.activity[i]
        / n
        * (1.0 + 0.4 * np.cos(2 * np.pi * (hour - 14.5) / 24.0))
        * vol_state**1.5
        * np.exp(_ar1(rng.normal(0.0, 0.35, n), 0.6))
        * (0.55 + 0.45 * np.abs(z))
        * (1.0 + events.CASCADE_VOLUME_BOOST * effects.intensity)
    )
    share = np.clip(0.5 + 0.1 * np.tanh(z) + rng.normal(0.0, 0.06, n), 0.3, 0.7)
    trade_size = 600.0 - 200.0 * min(years / 8.0, 1.0)
    spot = _flows(rng, quote_target / mid, spot_ohlc, share, trade_size, spot_dp, open_ms)

    pa, pb = anchors.premium[i], anchors.premium[i + 1]
    frac = (np.arange(n) + 1.0) / n
    wiggle = _ar1(rng.normal(0.0, 0.00003, n), 0.97)
    wiggle -= frac * wiggle[-1]  # pinned to the anchors at both ends of the day
    premium = pa + (pb - pa) * frac + wiggle
    premium[-1] = pb
    # Funding spikes and the perp's lead in a cascade; zero at midnight unless an event
    # runs through it, and then the same value on both sides.
    premium += effects.premium[1:]
    open_premium = pa + effects.premium[0]  # as yesterday's premium[-1], bit for bit
    unit = inst.multiplier  # a contract unit holds this many coins
    perp_raw = close_raw * unit * (1.0 + premium)
    perp_ohlc = _ohlc(rng, np.exp(a) * unit * (1.0 + open_premium), perp_raw, s, perp_dp[0])
    perp_volume = spot.volume / unit * anchors.perp_ratio[i] * np.exp(rng.normal(0.0, 0.3, n))
    perp_share = np.clip(share + rng.normal(0.0, 0.04, n), 0.3, 0.7)
    perp = _flows(rng, perp_volume, perp_ohlc, perp_share, 1800.0, perp_dp, open_ms)

    funding = _funding(rng, day, premium, perp_raw)
    for arr in (*_arrays(spot), *_arrays(perp), premium, *_funding_arrays(funding)):
        arr.flags.writeable = False  # cached and shared: nobody may edit it in place
    return MarketDay(day, spot, perp, premium, funding)


def _funding(
    rng: np.random.Generator, day: date, premium: np.ndarray, perp_raw: np.ndarray
) -> Funding:
    start_ms = EPOCH_MS + day_index(day) * DAY_MS
    ends = np.array(FUNDING_MINUTES)
    # Binance: F = P + clamp(I - P, -0.05 %, 0.05 %), P the average premium of the last 8h.
    avg = premium.reshape(len(ends), -1).mean(axis=1)
    rate = np.round(avg + np.clip(FUNDING_INTEREST - avg, -FUNDING_CLAMP, FUNDING_CLAMP), 8)
    mark = np.round(perp_raw[ends - 1], 8)
    if day < MARK_PRICE_SINCE:
        mark = np.full(len(ends), np.nan)
    late_ms = rng.integers(0, 10, len(ends))  # settlement is stamped a few ms late
    time_ms = start_ms + ends.astype(np.int64) * MINUTE_MS + late_ms
    return Funding(time_ms, rate, mark)


def _arrays(bars: Bars) -> list[np.ndarray]:
    return [getattr(bars, f.name) for f in fields(bars)]


def _funding_arrays(funding: Funding) -> list[np.ndarray]:
    return [funding.time_ms, funding.rate, funding.mark_price]
