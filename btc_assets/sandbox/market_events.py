"""Rare market events of the sandbox: liquidation cascades and funding spikes.

The calm random walk of ``sandbox.market`` never squeezes anyone, so a signal that looks for
a cascade or a funding anomaly would have nothing to find. This module is the schedule of
such events and the shape of each, as a pure function of ``(seed, symbol)`` drawn once for
the whole horizon (one vectorised draw, cached), from which any day reads the events that
touch it. Every effect is a function of absolute time (minutes since the market's epoch)
that is exactly zero outside the event, so two days evaluate the same value at their shared
midnight and an event that crosses midnight joins the days without a jump.

- A **liquidation cascade** is a sharp move of 1.5-4 % (log) over 15-60 minutes, down (longs
  squeezed) more often than up. ``market`` adds the move to the minute returns and to the
  daily anchors (the move is permanent), raises volatility and volume while it runs, and
  lets the perp lead the spot (the premium leans in the move's direction). ``coinglass_market``
  spikes the squeezed side's liquidations to tens of times the hourly background and drops
  open interest by 1.5-5 % in coins as the move runs (forced closes), rebuilding it over
  12-72 hours.
- A **funding spike** lifts (or, less often, sinks) the premium index by 20-32 bp for 2-8
  hours running through a settlement: a jump, a plateau, a one-hour decay. Binance's formula
  then carries it into the predicted and settled funding, several times the rate's usual
  30-day spread (the clamp pins the rate to the interest for premia within 5 bp of it, so a
  spike that ended inside one interval could average away unseen).

Rates are per symbol and day: :data:`CASCADES_PER_DAY` and :data:`FUNDING_SPIKES_PER_DAY`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CASCADES_PER_DAY = 1 / 8.5
FUNDING_SPIKES_PER_DAY = 1 / 12.5
DAY_MINUTES = 1440
HORIZON_DAYS = 12_100  # days the schedule covers; ``market.HORIZON_DAYS`` is this
LONG_SQUEEZE_SHARE = 0.6  # share of cascades that liquidate longs (price down)
CASCADE_VOLATILITY_BOOST = 0.5  # minute volatility x (1 + this) at a cascade's peak
CASCADE_VOLUME_BOOST = 4.0  # traded value x (1 + this) at a cascade's peak
PERP_LEAD = 0.02  # the premium leans by this share of the move while the perp leads
_MAX_CASCADE_MINUTES = 60
_MAX_RECOVERY_MINUTES = 72 * 60
_MAX_SPIKE_MINUTES = 8 * 60
_SETTLEMENT_MINUTES = 480  # funding settles every 8 h from 00:00


@dataclass(frozen=True)
class Cascade:
    start: int  # absolute minute (since the epoch's 00:00) whose bar the move starts in
    minutes: int  # length of the move, 15..60
    move: float  # signed log price move; < 0 liquidates longs
    coin_drop: float  # log drop of open interest in coins over the move
    recovery: int  # minutes the open interest takes to rebuild after the move
    liq_multiple: float  # the squeezed side's liquidations over the move / hourly background

    @property
    def end(self) -> int:
        return self.start + self.minutes

    @property
    def longs_squeezed(self) -> bool:
        return self.move < 0


@dataclass(frozen=True)
class FundingSpike:
    start: int  # absolute minute the premium starts to move
    minutes: int  # 120..480, rise + plateau + decay
    premium: float  # signed premium added at the plateau (fraction)

    @property
    def end(self) -> int:
        return self.start + self.minutes


@dataclass(frozen=True)
class _Schedule:
    cascades: tuple[Cascade, ...]  # by start
    cascade_starts: np.ndarray
    spikes: tuple[FundingSpike, ...]
    spike_starts: np.ndarray
    daily_move: np.ndarray  # sum of cascade moves inside each day (for the anchor path)


def _bell(minutes: int) -> np.ndarray:
    """Share of the move made in each minute of a cascade: slow, sharp, slow (sums to 1)."""
    w = np.sin(np.pi * (np.arange(minutes) + 0.5) / minutes) ** 2
    return w / w.sum()


@lru_cache(maxsize=64)  # one per instrument of a basket
def _schedule(seed: int, symbol: str) -> _Schedule:
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), 0xE7E5])
    n = HORIZON_DAYS
    day_start = np.arange(n, dtype=np.int64) * DAY_MINUTES
    # Every field is drawn for every day (fixed stream), then the days with an event kept.
    has_cascade = rng.random(n) < CASCADES_PER_DAY
    c_start = day_start + rng.integers(0, DAY_MINUTES, n)
    c_minutes = rng.integers(15, _MAX_CASCADE_MINUTES + 1, n)
    c_sign = np.where(rng.random(n) < LONG_SQUEEZE_SHARE, -1.0, 1.0)
    c_move = c_sign * rng.uniform(0.015, 0.04, n)
    # Forced closes: open interest in coins drops 1.5-5 % over the move (in USD that plus
    # the move itself for a long squeeze, less the price's rise for a short one).
    c_coin_drop = rng.uniform(0.015, 0.05, n)
    c_recovery = rng.integers(12 * 60, _MAX_RECOVERY_MINUTES + 1, n)
    c_liq = rng.uniform(25.0, 60.0, n)
    # A spike runs through a settlement (from 0.5-4 h before to 1.5-4 h after it), so the
    # next interval's running premium average opens on it: the predicted funding, which
    # Binance's clamp holds at the interest rate for premia under 5 bp, cannot miss it.
    has_spike = rng.random(n) < FUNDING_SPIKES_PER_DAY
    settlement = day_start + _SETTLEMENT_MINUTES * rng.integers(1, 4, n)
    s_start = settlement - rng.integers(30, 241, n)
    s_minutes = settlement + rng.integers(90, 241, n) - s_start
    s_premium = np.where(rng.random(n) < 0.6, 1.0, -1.0) * rng.uniform(0.002, 0.0032, n)

    cascades = tuple(
        Cascade(int(c_start[k]), int(c_minutes[k]), float(c_move[k]), float(c_coin_drop[k]),
                int(c_recovery[k]), float(c_liq[k]))
        for k in np.flatnonzero(has_cascade)
    )  # fmt: skip
    spikes = tuple(
        FundingSpike(int(s_start[k]), int(s_minutes[k]), float(s_premium[k]))
        for k in np.flatnonzero(has_spike)
    )
    daily_move = np.zeros(n + 1)
    for c in cascades:  # a move that crosses midnight is split between the two days
        day = c.start // DAY_MINUTES
        inside = min(c.end, (day + 1) * DAY_MINUTES) - c.start
        first = float(_bell(c.minutes)[:inside].sum())
        daily_move[day] += c.move * first
        daily_move[day + 1] += c.move * (1.0 - first)
    daily_move.flags.writeable = False
    return _Schedule(
        cascades, np.array([c.start for c in cascades], dtype=np.int64),
        spikes, np.array([s.start for s in spikes], dtype=np.int64), daily_move,
    )  # fmt: skip


def _days(starts: np.ndarray, first_day: int, last_day: int) -> slice:
    lo, hi = np.searchsorted(starts, [first_day * DAY_MINUTES, (last_day + 1) * DAY_MINUTES])
    return slice(int(lo), int(hi))


def cascades(seed: int, symbol: str, first_day: int, last_day: int) -> tuple[Cascade, ...]:
    """Cascades starting on day indexes ``first_day..last_day`` (inclusive), oldest first."""
    s = _schedule(seed, symbol)
    return s.cascades[_days(s.cascade_starts, first_day, last_day)]


def funding_spikes(
    seed: int, symbol: str, first_day: int, last_day: int
) -> tuple[FundingSpike, ...]:
    """Funding spikes starting on day indexes ``first_day..last_day``, oldest first."""
    s = _schedule(seed, symbol)
    return s.spikes[_days(s.spike_starts, first_day, last_day)]


def daily_cascade_moves(seed: int, symbol: str) -> np.ndarray:
    """Log price move the cascades make inside each day (``HORIZON_DAYS + 1`` values)."""
    return _schedule(seed, symbol).daily_move


@dataclass(frozen=True)
class DayEffects:
    """What the events touching one day add to it. Per-minute arrays (1440) are indexed by
    the minute's bar; boundary arrays (1441) by the instant: 00:00, then each minute's close.
    """

    returns: np.ndarray  # log return added to each minute
    intensity: np.ndarray  # 0..1: how far into a cascade's peak each minute is
    long_liq: np.ndarray  # squeezed-side liquidations, in units of the hourly background
    short_liq: np.ndarray
    premium: np.ndarray  # boundary: added to the premium index
    log_oi: np.ndarray  # boundary: added to log open interest (coins)
    moves: tuple[tuple[int, int], ...]  # [first, last) minutes of each cascade in the day

    @property
    def calm(self) -> bool:
        return not self.intensity.any()


def _spike_shape(minutes: np.ndarray, length: int) -> np.ndarray:
    """A jump over 20 minutes, a plateau, a cosine decay over the last hour; 0 outside."""
    rise = np.clip(minutes / 20.0, 0.0, 1.0)
    tail = np.clip((length - minutes) / 60.0, 0.0, 1.0)
    decay = 0.5 * (1.0 - np.cos(np.pi * tail))
    return np.where((minutes > 0) & (minutes < length), rise * decay, 0.0)


@lru_cache(maxsize=128)
def day_effects(seed: int, symbol: str, day: int) -> DayEffects:
    """The effects of every event on day index ``day`` (all zero on a calm day)."""
    first = day * DAY_MINUTES
    bars = np.arange(first, first + DAY_MINUTES)  # each minute's bar, by its opening minute
    instants = np.arange(first, first + DAY_MINUTES + 1)
    returns = np.zeros(DAY_MINUTES)
    intensity = np.zeros(DAY_MINUTES)
    long_liq, short_liq = np.zeros(DAY_MINUTES), np.zeros(DAY_MINUTES)
    premium = np.zeros(DAY_MINUTES + 1)
    log_oi = np.zeros(DAY_MINUTES + 1)
    moves: list[tuple[int, int]] = []
    reach = -(-(_MAX_CASCADE_MINUTES + _MAX_RECOVERY_MINUTES) // DAY_MINUTES)
    for c in cascades(seed, symbol, day - reach, day):
        w = _bell(c.minutes)
        k = bars - c.start
        inside = (k >= 0) & (k < c.minutes)
        if inside.any():
            hit = np.flatnonzero(inside)
            moves.append((int(hit[0]), int(hit[-1]) + 1))
        wk = np.where(inside, w[np.clip(k, 0, c.minutes - 1)], 0.0)
        returns += c.move * wk
        intensity = np.maximum(intensity, wk / w.max())
        (long_liq if c.longs_squeezed else short_liq)[:] += c.liq_multiple * wk
        # Done share of the move at each instant: 0 before, 1 after.
        done = np.concatenate([[0.0], np.cumsum(w)])[np.clip(instants - c.start, 0, c.minutes)]
        x = (instants - c.end) / c.recovery
        rebuild = np.where(x < 1.0, (1.0 - np.clip(x, 0.0, 1.0)) ** 2, 0.0)
        log_oi -= c.coin_drop * np.where(instants <= c.end, done, rebuild)
        # The perp leads: it leans into the move while it runs, the spot then follows.
        y = (instants - c.start) / (1.5 * c.minutes)
        premium += np.where((y > 0.0) & (y < 1.0), PERP_LEAD * c.move * np.sin(np.pi * y) ** 2, 0.0)
    for s in funding_spikes(seed, symbol, day - 1, day):
        premium += s.premium * _spike_shape(instants - s.start, s.minutes)
    out = DayEffects(returns, intensity, long_liq, short_liq, premium, log_oi, tuple(moves))
    for arr in (returns, intensity, long_liq, short_liq, premium, log_oi):
        arr.flags.writeable = False  # cached and shared
    return out
