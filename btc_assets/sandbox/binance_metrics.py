"""Binance USD-M positioning metrics of the sandbox: 5-minute snapshots of open interest and
long/short ratios, a pure function of ``(seed, symbol, day)`` like the market under them.

Day ``D`` holds the snapshots ``create_time`` = D 00:00, 00:05, ..., 23:55: exactly the rows
of the archive file ``{SYMBOL}-metrics-D.zip`` (and of ``/futures/data/openInterestHist``
at those times). Open interest in coins follows a daily anchor path (a slow growth from
about 30k BTC in 2020 to 80k, with log-AR(1) noise) joined by a Brownian bridge inside
the day, so day boundaries do not jump; its value in USDT is coins x the perp price at the
snapshot (the open of the minute that starts there, i.e. the previous minute's close). The
taker long/short volume ratio is taker buy / taker sell perp volume over the 5 minutes
before the snapshot; the top-trader and account ratios are AR(1) around plausible levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox import market_events as events

# The real archive has metrics from 2020-09-01 on; nothing before exists here either.
METRICS_SINCE = date(2020, 9, 1)
SNAPSHOT_MS = 300_000
SNAPSHOTS = 288  # per UTC day
_STEP_MINUTES = 5


@dataclass(frozen=True)
class MetricsDay:
    """Column arrays of one day's snapshots, already rounded as the venue prints them."""

    create_ms: np.ndarray
    open_interest: np.ndarray  # coins, 3 dp
    open_interest_value: np.ndarray  # USDT, 2 dp
    count_toptrader_ratio: np.ndarray  # 4 dp each
    sum_toptrader_ratio: np.ndarray
    count_long_short_ratio: np.ndarray
    taker_vol_ratio: np.ndarray


@lru_cache(maxsize=8)
def _oi_anchors(seed: int, symbol: str) -> np.ndarray:
    """log open interest (coins) at 00:00 of each day since the market's epoch."""
    rng = np.random.default_rng([seed, mk._symbol_key(symbol), 0x01E7])
    n = mk.HORIZON_DAYS + 1
    years = np.maximum(np.arange(n) / 365.25 - 3.67, 0.0)  # 3.67 y after 2017-01 = 2020-09
    level = 30_000.0 + 50_000.0 * np.minimum(years / 4.0, 1.0)
    noise = mk._ar1(rng.normal(0.0, 0.03, n), 0.95)
    inst = mk.instrument(symbol)
    return np.log(level * inst.activity / (inst.price * inst.multiplier)) + noise


@lru_cache(maxsize=64)
def metrics_day(seed: int, symbol: str, day: date) -> MetricsDay:
    """The 288 snapshots of ``day`` (create_time D 00:00 .. 23:55)."""
    if day < METRICS_SINCE:
        raise ValueError(f"sandbox metrics start on {METRICS_SINCE}; {day} has none")
    i = mk.day_index(day)
    rng = np.random.default_rng([seed, mk._symbol_key(symbol), i, 0x3E7C])
    anchors = _oi_anchors(seed, symbol)
    a, b = anchors[i], anchors[i + 1]
    shocks = rng.normal(0.0, 0.004, SNAPSHOTS)
    walk = np.concatenate([[0.0], np.cumsum(shocks[:-1])])
    frac = np.arange(SNAPSHOTS) / SNAPSHOTS
    # Bridge from a at 00:00 towards b at the next 00:00 (which the next day starts from).
    log_oi = a + walk - frac * (walk[-1] + shocks[-1]) + frac * (b - a)
    # Cascades close positions on Binance too: the same offsets as CoinGlass's open interest.
    log_oi = log_oi + events.day_effects(seed, symbol, i).log_oi[::_STEP_MINUTES][:SNAPSHOTS]
    open_interest = np.round(np.exp(log_oi), 3)

    today = mk.market_day(seed, symbol, day).perp
    before = mk.market_day(seed, symbol, day - timedelta(days=1)).perp
    minutes = np.arange(SNAPSHOTS) * _STEP_MINUTES
    price = today.open[minutes]
    value = np.round(open_interest * price, 2)
    # Perp taker flow of the 5 minutes ending at each snapshot (the first reaches back into
    # the previous day).
    volume = np.concatenate([before.volume[-_STEP_MINUTES:], today.volume])
    buy = np.concatenate([before.taker_buy_volume[-_STEP_MINUTES:], today.taker_buy_volume])
    buy5 = buy[: SNAPSHOTS * _STEP_MINUTES].reshape(SNAPSHOTS, -1).sum(axis=1)
    vol5 = volume[: SNAPSHOTS * _STEP_MINUTES].reshape(SNAPSHOTS, -1).sum(axis=1)
    taker = np.round(buy5 / np.maximum(vol5 - buy5, 1e-9), 4)

    def ratio(level: float, sd: float) -> np.ndarray:
        drift = mk._ar1(rng.normal(0.0, sd, SNAPSHOTS), 0.98)
        return np.round(np.clip(level * np.exp(drift), 0.3, 5.0), 4)

    create_ms = mk.EPOCH_MS + i * mk.DAY_MS + np.arange(SNAPSHOTS, dtype=np.int64) * SNAPSHOT_MS
    out = MetricsDay(
        create_ms, open_interest, value, ratio(1.6, 0.02), ratio(1.25, 0.015),
        ratio(1.8, 0.02), taker,
    )  # fmt: skip
    for arr in vars(out).values():
        arr.flags.writeable = False  # cached and shared
    return out


def snapshots(
    seed: int, symbol: str, first_ms: int, last_ms: int, step_ms: int = SNAPSHOT_MS
) -> list[tuple[int, float, float]]:
    """(create_ms, open interest, value) of the snapshots in [first_ms, last_ms] on a grid of
    ``step_ms`` (a multiple of 5 minutes), oldest first; none before :data:`METRICS_SINCE`."""
    since = mk.EPOCH_MS + mk.day_index(METRICS_SINCE) * mk.DAY_MS
    t = -(-max(first_ms, since) // step_ms) * step_ms
    out: list[tuple[int, float, float]] = []
    while t <= last_ms:
        day = mk.day_of_ms(t)
        m = metrics_day(seed, symbol, day)
        k = (t - int(m.create_ms[0])) // SNAPSHOT_MS
        out.append((t, float(m.open_interest[k]), float(m.open_interest_value[k])))
        t += step_ms
    return out
