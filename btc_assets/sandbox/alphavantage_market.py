"""The sandbox's macro world for Alpha Vantage: daily bars of an equity ETF and FX pairs.

Each series is a pure function of ``(seed, name)``: one shock per calendar day from the
market epoch (2017-01-01) to its horizon, fat-tailed (Student t, 4 degrees of freedom) and
partly correlated with the sandbox's BTC daily return of the same UTC day (``market``'s
daily anchors), around a trend the level reverts to slowly, so any seed stays near the
configured level (SPY about 500 in mid-2024, EURUSD about 1.08). Only trading days are
printed: NYSE sessions for equities (``us_calendar``), weekdays for FX; the shocks of the
days between (weekends, holidays) still move the price, at a lower variance, so Monday's
bar carries the weekend's news as the real ones do.

Bars: the close is the path at the day's end; the open sits between the previous close and
this close (an overnight gap), high and low reach beyond both by a half-normal fraction of
the day's volatility. Equities on a 0.01 tick, FX on 0.00001; equity volume in shares.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox.us_calendar import is_nyse_session


@dataclass(frozen=True)
class Spec:
    level: float  # the trend's level on ``anchor``
    anchor: date
    growth: float  # trend growth per year (log)
    sigma: float  # sd of a trading day's log return
    rho: float  # correlation of the daily shock with BTC's
    phi: float  # daily persistence of the deviation from the trend (closer to 1: slower)
    decimals: int  # price tick
    volume: float | None = None  # median shares per session (None: FX, no volume)


_MID_2024 = date(2024, 6, 1)
EQUITIES: dict[str, Spec] = {
    # The S&P 500 proxy (Alpha Vantage serves no index): ~1.1 %/day, risk-on with BTC.
    "SPY": Spec(500.0, _MID_2024, 0.08, 0.011, 0.35, 0.997, 2, volume=65e6),
    "QQQ": Spec(440.0, _MID_2024, 0.10, 0.014, 0.40, 0.997, 2, volume=40e6),
    # The dollar-index ETF (the default dollar proxy): calm, and a little against BTC.
    "UUP": Spec(28.5, _MID_2024, 0.0, 0.004, -0.15, 0.995, 2, volume=2e6),
}
FX_PAIRS: dict[tuple[str, str], Spec] = {
    # Dollar proxies: a weaker dollar (EURUSD up) goes a little with BTC up.
    ("EUR", "USD"): Spec(1.08, _MID_2024, 0.0, 0.0045, 0.15, 0.995, 5),
    ("GBP", "USD"): Spec(1.27, _MID_2024, 0.0, 0.0050, 0.12, 0.995, 5),
    ("USD", "JPY"): Spec(150.0, _MID_2024, 0.0, 0.0060, -0.10, 0.995, 3),
}
# Variance of a non-trading calendar day's shock, relative to a trading day's.
QUIET_DAY_VARIANCE = {"equity": 0.3, "fx": 0.1}


@dataclass(frozen=True)
class DailyBars:
    """One series' trading days from the epoch on: day indexes (days since ``mk.EPOCH``,
    ascending) and their bars; ``volume`` is None for FX."""

    day: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray | None

    def served(self, last_day: int) -> slice:
        """The rows of trading days up to ``last_day`` (a day index), inclusive."""
        return slice(0, int(np.searchsorted(self.day, last_day, side="right")))


def date_of(index: int) -> date:
    return mk.EPOCH + timedelta(days=int(index))


@lru_cache(maxsize=8)
def _btc_shocks(seed: int) -> np.ndarray:
    """BTC's daily log return of each calendar day, standardised (one value per day)."""
    anchors = mk._anchors(seed, "BTCUSDT")  # the daily path only: no minutes are built
    returns = np.diff(anchors.log_price) / anchors.sigma[:-1]
    z = (returns - returns.mean()) / returns.std()
    return np.clip(z, -8.0, 8.0)


@lru_cache(maxsize=16)
def _trading_days(kind: str) -> np.ndarray:
    days = [mk.EPOCH + timedelta(days=i) for i in range(mk.HORIZON_DAYS)]
    if kind == "equity":
        return np.array([is_nyse_session(d) for d in days])
    return np.array([d.weekday() < 5 for d in days])


def _bars(seed: int, name: str, spec: Spec, kind: str) -> DailyBars:
    n = mk.HORIZON_DAYS
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 0xA1FA])
    trading = _trading_days(kind)
    own = rng.standard_t(4, n) / np.sqrt(2.0)  # unit variance, fat tails
    z = spec.rho * _btc_shocks(seed) + np.sqrt(1.0 - spec.rho**2) * own
    shocks = spec.sigma * np.where(trading, 1.0, np.sqrt(QUIET_DAY_VARIANCE[kind])) * z
    years = (np.arange(n) - (spec.anchor - mk.EPOCH).days) / 365.25
    trend = np.log(spec.level) + spec.growth * years
    deviation = np.empty(n)
    x = 0.0
    for i, shock in enumerate(shocks.tolist()):  # AR(1) around the trend; ~12k steps once
        x = spec.phi * x + shock
        deviation[i] = x
    log_close = (trend + deviation)[trading]
    day = np.flatnonzero(trading)
    previous = np.concatenate([[log_close[0]], log_close[:-1]])
    m = len(day)
    log_open = previous + 0.3 * (log_close - previous) + rng.normal(0.0, 0.15 * spec.sigma, m)
    close = np.round(np.exp(log_close), spec.decimals)
    open_ = np.round(np.exp(log_open), spec.decimals)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    reach = 0.5 * spec.sigma * np.abs(rng.standard_normal((2, m)))
    high = np.maximum(np.round(top * np.exp(reach[0]), spec.decimals), top)
    low = np.minimum(np.round(bottom * np.exp(-reach[1]), spec.decimals), bottom)
    volume = None
    if spec.volume is not None:
        move = np.abs(log_close - previous) / spec.sigma
        volume = np.round(spec.volume * np.exp(rng.normal(0.0, 0.25, m)) * (0.7 + 0.3 * move))
    for arr in (day, open_, high, low, close, *([volume] if volume is not None else [])):
        arr.flags.writeable = False  # cached and shared
    return DailyBars(day, open_, high, low, close, volume)


@lru_cache(maxsize=16)
def equity_bars(seed: int, symbol: str) -> DailyBars:
    """Every NYSE session of ``symbol`` (one of ``EQUITIES``) from the epoch on."""
    return _bars(seed, symbol, EQUITIES[symbol], "equity")


@lru_cache(maxsize=16)
def fx_bars(seed: int, pair: tuple[str, str]) -> DailyBars:
    """Every weekday (UTC) of ``pair`` (one of ``FX_PAIRS``) from the epoch on."""
    return _bars(seed, "".join(pair), FX_PAIRS[pair], "fx")
