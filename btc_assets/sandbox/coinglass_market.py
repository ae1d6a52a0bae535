"""CoinGlass's view of the synthetic market: the 1m series behind its history endpoints.

Everything is derived from :func:`market.market_day` (the same minutes the Binance routes
serve), then aggregated to the requested interval, so a 1h bar is exactly its four 15m bars
combined and every series agrees with the Binance perp of the same sandbox:

- price: the Binance perp OHLC with an occasional one-tick difference (CoinGlass samples
  its own feed), ``volume_usd`` the perp quote volume within a fraction of a percent;
- open interest: coins x perp price; the coins follow a mean-reverting daily anchor path
  (drawn once per seed) bridged through the day, rising a little with bursts of activity,
  and dropping 1-7 % through a liquidation cascade (``market_events``), then rebuilding;
- funding: the predicted rate of Binance's formula (running premium average since the last
  settlement, plus the clamped interest), so a settlement bar closes on the settled rate,
  with a small cross-exchange spread for the OI and volume weightings; in percent;
- taker volumes and liquidations: Binance's flows scaled by each listed exchange's size;
  liquidations are convex in each minute's move, plus, in a cascade, the squeezed side's
  forced orders: 25-60 times the day's calm hourly total over the move.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Literal

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox import market_events as events

Kind = Literal[
    "price", "oi", "oi_coin", "funding_oi", "funding_vol", "pair_taker", "spot_taker",
    "futures_taker", "liquidation",
]  # fmt: skip
Rule = Literal["open", "high", "low", "close", "sum"]
# Relative (spot, futures) size of each exchange CoinGlass aggregates, Binance = 1.
EXCHANGES: dict[str, tuple[float, float]] = {
    "Binance": (1.0, 1.0), "OKX": (0.3, 0.55), "Bybit": (0.25, 0.5), "Bitget": (0.15, 0.35),
    "Coinbase": (0.35, 0.02), "Gate": (0.1, 0.2), "HTX": (0.08, 0.1), "Kraken": (0.06, 0.02),
    "Bitfinex": (0.04, 0.01), "Deribit": (0.0, 0.06), "Hyperliquid": (0.0, 0.3),
}  # fmt: skip


# log OI (coins) added per minute of traded value above the day's mean: small enough that a
# calm day's OI moves well under 3 % an hour (an OI shock is an event, not the daily rhythm).
OI_PER_ACTIVITY = 0.0002
# Liquidations grow as (|z| - 0.5) ** 2.5 of a minute's move, up to this |z| - 0.5: past it a
# lone jump minute would outweigh days of background and hide every real cascade.
LIQ_MOVE_CAP = 5.0


def _key(*parts: str) -> list[int]:
    return [zlib.crc32(p.encode()) for p in parts]


def _ar1(shocks: np.ndarray, phi: float) -> np.ndarray:
    taps = int(np.ceil(np.log(1e-4) / np.log(phi)))
    return np.convolve(shocks, phi ** np.arange(taps))[: len(shocks)]


def _pinned(x: np.ndarray) -> np.ndarray:
    """``x`` tilted to end at 0, so a day's bridge meets the next day's start exactly."""
    return x - (np.arange(1, len(x) + 1) / len(x)) * x[-1]


@lru_cache(maxsize=64)  # one per instrument of a basket
def _oi_anchor_coins(seed: int, symbol: str) -> np.ndarray:
    """log open interest in coins at 00:00 of each day: mean-reverting around a slow ramp.

    BTC's level is 35k coins; another coin's is as many dollars scaled by its traded value.
    """
    inst = mk.instrument(symbol)
    rng = np.random.default_rng([seed, *_key(symbol, "coinglass-oi")])
    n = mk.HORIZON_DAYS + 1
    years = np.arange(n) / 365.25
    coins = 35_000.0 * inst.activity / inst.price
    level = np.log(coins * (1.0 + np.minimum(years / 7.5, 1.0)))
    out = level + _ar1(rng.normal(0.0, 0.05, n), 0.97)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class CoinGlassDay:
    """1m arrays of one UTC day (minutes opening 00:00..23:59); ``*_path`` have 1441 points:
    the level at 00:00, then at each minute's close."""

    open_ms: np.ndarray
    price: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    volume_usd: np.ndarray
    oi_coin_path: np.ndarray
    oi_usd_path: np.ndarray
    funding_oi_path: np.ndarray  # percent
    funding_vol_path: np.ndarray  # percent
    pair_buy: np.ndarray
    pair_sell: np.ndarray
    spot_buy: np.ndarray
    spot_sell: np.ndarray
    perp_buy: np.ndarray
    perp_sell: np.ndarray
    liq_long: np.ndarray
    liq_short: np.ndarray


@lru_cache(maxsize=32)  # a backfill walks forward: only the last days are re-read
def coinglass_day(seed: int, symbol: str, day: date) -> CoinGlassDay:
    md = mk.market_day(seed, symbol, day)
    i = mk.day_index(day)
    rng = np.random.default_rng([seed, *_key(symbol, "coinglass"), i])
    n = mk.MINUTES
    perp, spot = md.perp, md.spot
    inst = mk.instrument(symbol)
    tick_dp = inst.perp_decimals[0]
    tick = 10.0**-tick_dp

    def jitter(a: np.ndarray) -> np.ndarray:  # one tick now and then (3 % of prints)
        return np.round(a + tick * rng.choice([-1, 0, 1], n, p=[0.03, 0.94, 0.03]), tick_dp)

    open_, high, low, close = (jitter(a) for a in (perp.open, perp.high, perp.low, perp.close))
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])
    volume_usd = perp.quote_volume * (1.0 + rng.normal(0.0, 0.003, n))

    anchors = _oi_anchor_coins(seed, symbol)
    la, lb = anchors[i], anchors[i + 1]
    frac = np.arange(1, n + 1) / n
    effects = events.day_effects(seed, symbol, i)
    # Positions open with ordinary activity; a cascade's forced volume closes them instead
    # (its minutes add nothing here: their volume follows the move, not new positions).
    calm_value = perp.quote_volume / (1.0 + events.CASCADE_VOLUME_BOOST * effects.intensity)
    opening = np.where(effects.intensity > 0.0, 0.0, calm_value / calm_value.mean() - 1.0)
    activity = np.cumsum(opening) * OI_PER_ACTIVITY
    wiggle = _ar1(rng.normal(0.0, 0.0004, n), 0.95)
    log_coins = la + (lb - la) * frac + _pinned(activity) + _pinned(wiggle)
    log_coins[-1] = lb
    # A cascade's drop and rebuild: zero at midnight unless it runs through it, and then
    # the same value on both sides, so the days still join exactly.
    log_coins += effects.log_oi[1:]
    oi_coin_path = np.exp(np.concatenate([[la + effects.log_oi[0]], log_coins]))
    # A perp price is per contract unit (1000 coins for 1000PEPEUSDT); OI counts coins.
    oi_usd_path = oi_coin_path * np.concatenate([[perp.open[0]], perp.close]) / inst.multiplier

    # Predicted funding: segments 00-08, 08-16, 16-24 each end on a settlement.
    segments = md.premium.reshape(len(mk.FUNDING_MINUTES), -1)
    running = np.cumsum(segments, axis=1) / np.arange(1, segments.shape[1] + 1)
    clamp = mk.FUNDING_CLAMP
    predicted = (running + np.clip(mk.FUNDING_INTEREST - running, -clamp, clamp)).ravel()
    predicted = np.concatenate([[predicted[0]], predicted])
    spread_oi = _ar1(rng.normal(0.0, 6e-7, n + 1), 0.98)
    spread_vol = _ar1(rng.normal(0.0, 1.2e-6, n + 1), 0.98)

    # Liquidations cascade on large moves: convex in the move, in its direction. The scale
    # is the day's calm minutes, so a cascade's own minutes do not hide themselves.
    ret = np.log(perp.close / perp.open)
    calm = effects.intensity == 0.0
    z = ret / max(float(ret[calm].std()), 1e-12)
    base = perp.quote_volume * 0.002

    def liq(move: np.ndarray) -> np.ndarray:
        spikes = np.clip(move - 0.5, 0.0, LIQ_MOVE_CAP) ** 2.5 * np.exp(rng.normal(0.0, 0.8, n))
        background = (rng.random(n) < 0.35) * np.exp(rng.normal(-2.5, 1.0, n))
        return base * (spikes + background)

    liq_long, liq_short = liq(-z), liq(z)
    if not effects.calm:
        # A cascade's forced selling (or buying): a multiple of the calm hourly total.
        hourly = 60.0 * float((liq_long + liq_short)[calm].mean())
        liq_long = liq_long + hourly * effects.long_liq
        liq_short = liq_short + hourly * effects.short_liq

    noise = 1.0 + rng.normal(0.0, 0.002, (2, n))
    pair_buy = perp.taker_buy_quote_volume * noise[0]
    pair_sell = (perp.quote_volume - perp.taker_buy_quote_volume) * noise[1]
    out = CoinGlassDay(
        perp.open_ms, (open_, high, low, close), volume_usd, oi_coin_path, oi_usd_path,
        (predicted + spread_oi) * 100.0, (predicted + spread_vol) * 100.0, pair_buy, pair_sell,
        spot.taker_buy_quote_volume, spot.quote_volume - spot.taker_buy_quote_volume,
        perp.taker_buy_quote_volume, perp.quote_volume - perp.taker_buy_quote_volume,
        np.round(liq_long, 5), np.round(liq_short, 5),
    )  # fmt: skip
    for name, value in vars(out).items():
        for arr in value if name == "price" else (value,):
            arr.flags.writeable = False  # cached and shared: nobody may edit it in place
    return out


@lru_cache(maxsize=64)
def _exchange_noise(seed: int, symbol: str, day: date, exchange: str) -> np.ndarray:
    """Per-minute multipliers (4 x 1440) that make each exchange's flows its own."""
    rng = np.random.default_rng([seed, *_key(symbol, exchange), mk.day_index(day)])
    return np.exp(rng.normal(0.0, 0.25, (4, mk.MINUTES)))


def _path_ohlc(path: np.ndarray) -> dict[str, tuple[np.ndarray, Rule]]:
    """A level sampled at minute boundaries as 1m OHLC."""
    before, after = path[:-1], path[1:]
    return {
        "open": (before, "open"),
        "high": (np.maximum(before, after), "high"),
        "low": (np.minimum(before, after), "low"),
        "close": (after, "close"),
    }


def minute_columns(
    seed: int, symbol: str, day: date, kind: Kind, exchanges: Sequence[str]
) -> dict[str, tuple[np.ndarray, Rule]]:
    """The endpoint's row fields as 1m arrays with their aggregation rule.

    ``exchanges`` is the one exchange of a pair endpoint or the list of an aggregated one.
    """
    cg = coinglass_day(seed, symbol, day)
    if kind == "oi":
        return _path_ohlc(cg.oi_usd_path)
    if kind == "oi_coin":
        return _path_ohlc(cg.oi_coin_path)
    if kind in ("funding_oi", "funding_vol"):
        return _path_ohlc(cg.funding_oi_path if kind == "funding_oi" else cg.funding_vol_path)
    noises = {e: _exchange_noise(seed, symbol, day, e) for e in exchanges if e != "Binance"}

    def scaled(a: np.ndarray, b: np.ndarray, futures: bool) -> tuple[np.ndarray, np.ndarray]:
        out_a, out_b = np.zeros(mk.MINUTES), np.zeros(mk.MINUTES)
        for e in exchanges:
            weight = EXCHANGES[e][1 if futures else 0]
            m = noises[e] if e in noises else np.ones((4, mk.MINUTES))
            out_a += weight * a * m[0 if futures else 2]
            out_b += weight * b * m[1 if futures else 3]
        return out_a, out_b

    if kind == "price":
        exchange = exchanges[0]
        # Other venues print at a small constant basis to Binance.
        basis = 1.0 + (zlib.crc32(exchange.encode()) % 61 - 30) * 1e-5 * (exchange != "Binance")
        tick_dp = mk.instrument(symbol).perp_decimals[0]
        o, h, lo, c = (np.round(a * basis, tick_dp) for a in cg.price)
        volume = cg.volume_usd * EXCHANGES[exchange][1]
        return {"open": (o, "open"), "high": (h, "high"), "low": (lo, "low"),
                "close": (c, "close"), "volume_usd": (volume, "sum")}  # fmt: skip
    if kind == "pair_taker":
        if exchanges[0] == "Binance":
            buy, sell = cg.pair_buy, cg.pair_sell
        else:
            buy, sell = scaled(cg.perp_buy, cg.perp_sell, True)
        return {"taker_buy_volume_usd": (buy, "sum"), "taker_sell_volume_usd": (sell, "sum")}
    if kind in ("spot_taker", "futures_taker"):
        futures = kind == "futures_taker"
        buy, sell = scaled(
            cg.perp_buy if futures else cg.spot_buy, cg.perp_sell if futures else cg.spot_sell,
            futures,
        )  # fmt: skip
        return {"aggregated_buy_volume_usd": (buy, "sum"),
                "aggregated_sell_volume_usd": (sell, "sum")}  # fmt: skip
    long_, short = scaled(cg.liq_long, cg.liq_short, True)
    return {"aggregated_long_liquidation_usd": (long_, "sum"),
            "aggregated_short_liquidation_usd": (short, "sum")}  # fmt: skip


def reduce(values: np.ndarray, rule: Rule, minutes: int) -> np.ndarray:
    """1m values (a whole number of bars) to bars of ``minutes`` by the column's rule."""
    grid = values.reshape(-1, minutes)
    if rule == "open":
        return grid[:, 0]
    if rule == "close":
        return grid[:, -1]
    if rule == "high":
        return grid.max(axis=1)
    if rule == "low":
        return grid.min(axis=1)
    return grid.sum(axis=1)
