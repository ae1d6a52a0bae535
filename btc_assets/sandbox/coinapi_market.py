"""CoinAPI's view of the synthetic market: its symbol ids, OHLCV periods and funding metric.

CoinAPI aggregates the trades it collected from Binance, so its bars are the Binance
sandbox's own 1m bars (``market.market_day``) seen through a slightly different feed, per
minute and deterministically (a pure function of seed, symbol and day):

- the open and close of about one minute in ten differ by one tick (the first or last
  trade it caught), clipped into the minute's high/low, which are the venue's;
- volume differs by a relative N(0, 0.2 %) per minute (trades missed or double-counted),
  so an hourly bar's volume agrees with Binance's to a few 0.01 %;
- about one trade in a thousand is missing from ``trades_count``;
- ``time_open``/``time_close`` are the first/last trade inside the period, in 100 ns ticks.

Periods of N minutes combine the minutes, so 1HRS and 1DAY agree with each other exactly.

The funding metric (``DERIVATIVES_FUNDING_RATE_CURRENT``, perpetuals only) is the
running estimate of the next settlement, sampled once a minute (at second 59 and a
fraction): Binance's formula on the average premium so far in the 8h window, and at the
window's last minute exactly the rate the Binance sandbox settles. So an 8HRS period's
``last`` (ts = its end, 08:00/16:00/24:00) is that settlement's ``fundingRate``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox.universe import Instrument, Universe

SPOT_PREFIX, PERP_PREFIX = "BINANCE_SPOT_", "BINANCEFTS_PERP_"
FUNDING_METRIC = "DERIVATIVES_FUNDING_RATE_CURRENT"
TICKS_PER_MS = 10_000  # 100 ns ticks
NUDGE_SHARE = 0.1  # minutes whose open (or close) is one tick off Binance's
VOLUME_NOISE = 0.002  # relative sd of each minute's volume
MISSED_TRADES = 0.001  # share of trades CoinAPI's feed did not count
_SETTLE = mk.FUNDING_MINUTES[0]  # minutes per funding window (480)


def resolve(universe: Universe, symbol_id: str) -> tuple[Instrument, bool] | None:
    """(instrument, is spot) of ``BINANCE_SPOT_<base>_<quote>`` or
    ``BINANCEFTS_PERP_<base>_<quote>``; None if the universe lists no such market."""
    spot = symbol_id.startswith(SPOT_PREFIX)
    rest = symbol_id.removeprefix(SPOT_PREFIX if spot else PERP_PREFIX)
    if rest == symbol_id or rest.count("_") != 1:
        return None
    base, quote = rest.split("_")
    if spot:
        inst = universe.spot(base + quote)
        ok = inst is not None and inst.spot_base == base and inst.quote == quote
    else:
        inst = universe.perp(base + quote)
        ok = inst is not None and inst.is_perpetual and inst.base == base
    return (inst, spot) if ok and inst is not None else None


def symbol_id(inst: Instrument, spot: bool) -> str:
    if spot:
        return f"{SPOT_PREFIX}{inst.spot_base}_{inst.quote}"
    return f"{PERP_PREFIX}{inst.base}_{inst.quote}"


@dataclass(frozen=True)
class Periods:
    """Column arrays of one day's periods (prices on the venue's tick)."""

    open_ms: np.ndarray
    time_open: np.ndarray  # ticks
    time_close: np.ndarray  # ticks
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray


def _rng(seed: int, symbol: str, day: date, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(symbol.encode()), mk.day_index(day), stream])


def _trade_times(rng: np.random.Generator, open_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last trade of each minute: within its first and last two seconds."""
    start = open_ms.astype(np.int64) * TICKS_PER_MS
    first = start + rng.integers(0, 20_000_000, len(open_ms))
    last = start + mk.MINUTE_MS * TICKS_PER_MS - 1 - rng.integers(0, 20_000_000, len(open_ms))
    return first, last


@lru_cache(maxsize=64)  # a backfill walks forward: each day is built once per market
def _minutes(seed: int, symbol: str, day: date, spot: bool) -> Periods:
    md = mk.market_day(seed, symbol, day)
    bars = md.spot if spot else md.perp
    price_dp = mk.instrument(symbol).decimals(spot)[0]
    rng = _rng(seed, symbol, day, 0xC0A1 + int(spot))
    n = len(bars)
    tick = 10.0**-price_dp

    def nudged(prices: np.ndarray) -> np.ndarray:
        step = np.where(rng.random(n) < NUDGE_SHARE, rng.choice([-1.0, 1.0], n), 0.0)
        return np.clip(np.round(prices + step * tick, price_dp), bars.low, bars.high)

    open_, close = nudged(bars.open), nudged(bars.close)
    noise = np.clip(rng.normal(0.0, VOLUME_NOISE, n), -5 * VOLUME_NOISE, 5 * VOLUME_NOISE)
    volume = np.round(bars.volume * (1.0 + noise), 8)
    trades = np.maximum(bars.trades - rng.binomial(bars.trades, MISSED_TRADES), 1)
    first, last = _trade_times(rng, bars.open_ms)
    return Periods(bars.open_ms, first, last, open_, bars.high, bars.low, close, volume, trades)


@lru_cache(maxsize=64)
def ohlcv_day(seed: int, symbol: str, day: date, spot: bool, minutes: int) -> Periods:
    """The periods of ``minutes`` (dividing a day) of UTC day ``day``; ``symbol`` is the
    instrument's perp symbol (the market's key) for both markets."""
    m = _minutes(seed, symbol, day, spot)
    if minutes == 1:
        return m

    def grid(a: np.ndarray) -> np.ndarray:
        return a.reshape(-1, minutes)

    return Periods(
        open_ms=grid(m.open_ms)[:, 0], time_open=grid(m.time_open)[:, 0],
        time_close=grid(m.time_close)[:, -1], open=grid(m.open)[:, 0],
        high=grid(m.high).max(axis=1), low=grid(m.low).min(axis=1), close=grid(m.close)[:, -1],
        volume=np.round(grid(m.volume).sum(axis=1), 8), trades=grid(m.trades).sum(axis=1),
    )  # fmt: skip


@dataclass(frozen=True)
class MetricPeriods:
    open_ms: np.ndarray
    time_open: np.ndarray
    time_close: np.ndarray
    first: np.ndarray
    last: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    count: np.ndarray


@lru_cache(maxsize=64)
def _funding_minutes(seed: int, symbol: str, day: date) -> tuple[np.ndarray, np.ndarray]:
    """(sample time in ticks, current funding estimate) of each minute of the day."""
    md = mk.market_day(seed, symbol, day)
    premium = md.premium.reshape(-1, _SETTLE)
    running = np.cumsum(premium, axis=1) / np.arange(1, _SETTLE + 1)
    clamp = np.clip(mk.FUNDING_INTEREST - running, -mk.FUNDING_CLAMP, mk.FUNDING_CLAMP)
    values = np.round(running + clamp, 8)
    values[:, -1] = md.funding.rate  # at the window's end, the settled rate itself
    open_ms = mk.EPOCH_MS + mk.day_index(day) * mk.DAY_MS + np.arange(mk.MINUTES) * mk.MINUTE_MS
    rng = _rng(seed, symbol, day, 0xF0D1)
    times = (
        open_ms.astype(np.int64) * TICKS_PER_MS
        + 590_000_000
        + rng.integers(0, 9_000_000, len(open_ms))
    )
    return times, values.ravel()


@lru_cache(maxsize=64)
def funding_day(seed: int, symbol: str, day: date, minutes: int) -> MetricPeriods:
    """The funding metric's periods of ``minutes`` of UTC day ``day`` (a perp's market)."""
    times, values = _funding_minutes(seed, symbol, day)
    grid_t, grid_v = times.reshape(-1, minutes), values.reshape(-1, minutes)
    open_ms = (
        mk.EPOCH_MS
        + mk.day_index(day) * mk.DAY_MS
        + np.arange(len(grid_v)) * minutes * mk.MINUTE_MS
    )
    return MetricPeriods(
        open_ms=open_ms, time_open=grid_t[:, 0], time_close=grid_t[:, -1], first=grid_v[:, 0],
        last=grid_v[:, -1], min=grid_v.min(axis=1), max=grid_v.max(axis=1),
        sum=np.round(grid_v.sum(axis=1), 10), count=np.full(len(grid_v), minutes),
    )  # fmt: skip
