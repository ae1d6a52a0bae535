"""CoinGlass's Hyperliquid whale routes of the sandbox: ``/api/hyperliquid/whale-position``
and ``/api/hyperliquid/whale-alert`` (Startup plan and up; Hobbyist keys get the 200
``{"code":"401","msg":"Upgrade plan"}``).

A deterministic population per seed: every UTC day, each coin of the sandbox's universe (the
perpetuals with a spot pair; Hyperliquid names them by coin: BTC, ETH, PEPE) sees a few
whales open a position (Poisson, more on busier coins) at a random minute's close. Notional
is $1M plus a lognormal part (median total about $2.5M, about 1 % past $10M), leverage one
of 3/5/10/20/25/40x, side a coin flip, entry the market price at that minute (the CoinGlass
price close of ``coinglass_market``, per coin), liquidation at ``entry(1 -+ 0.9/L)``. Each
is held 1 hour to 3 days (lognormal, median 18 h) and closed at that minute's price.

- whale-position at ``now``: the positions open now worth >= $1M at the mark (the last
  closed minute's price), largest first, ``update_time = now``;
- whale-alert: the 200 most recent opens and closes worth > $1M at their price, up to
  ``now``, newest first, from the last 3 days (a position opened up to 3 days before that
  is in the population, so nothing in the window is missed).

Data faults: ``empty``, ``duplicates``, ``out_of_order``, ``extra_field``, ``seconds`` and
``microseconds`` (the times in seconds / µs instead of ms).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import coinglass as cg
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState

POSITION_PATH = "/api/hyperliquid/whale-position"
ALERT_PATH = "/api/hyperliquid/whale-alert"
TIER = "startup"
MIN_NOTIONAL = 1_000_000.0
ALERT_COUNT = 200
ALERT_WINDOW_DAYS = 3
MAX_HOLD_MINUTES = 3 * mk.MINUTES
LEVERAGES = np.array([3, 5, 10, 20, 25, 40])
LEVERAGE_P = np.array([0.1, 0.2, 0.3, 0.2, 0.12, 0.08])


@dataclass(frozen=True)
class Whale:
    coin: str
    perp: str
    user: str
    size: float  # coins, < 0 short
    entry: float
    liq: float
    leverage: int
    cross: bool
    open_ms: int
    close_ms: int


@lru_cache(maxsize=1024)
def _closes(seed: int, perp: str, day: date) -> np.ndarray:
    """Per-coin closes of the day's perp minutes (a contract unit may hold 1000 coins)."""
    out = mk.market_day(seed, perp, day).perp.close / mk.instrument(perp).multiplier
    out.flags.writeable = False
    return out


def price_at(seed: int, perp: str, t_ms: int) -> float:
    """The close of the last minute that closed at or before ``t_ms``."""
    minute_open = t_ms // mk.MINUTE_MS * mk.MINUTE_MS - mk.MINUTE_MS
    day = mk.day_of_ms(minute_open)
    index = (minute_open - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // mk.MINUTE_MS
    return float(_closes(seed, perp, day)[index])


@lru_cache(maxsize=64)
def _opened_on(seed: int, perps: tuple[str, ...], day: date) -> tuple[Whale, ...]:
    """The positions opened on ``day`` over the universe's coins."""
    start = mk.EPOCH_MS + mk.day_index(day) * mk.DAY_MS
    whales: list[Whale] = []
    for perp in perps:
        inst = mk.instrument(perp)
        rng = np.random.default_rng(
            [seed, zlib.crc32(f"whales:{inst.coin}".encode()), mk.day_index(day)]
        )
        count = int(rng.poisson(0.5 + 6.0 * np.sqrt(inst.activity)))
        minutes = np.sort(rng.integers(0, mk.MINUTES, count))
        notional = 1e6 * (1.0 + rng.lognormal(np.log(1.5), 0.8, count))
        leverage = rng.choice(LEVERAGES, count, p=LEVERAGE_P)
        side = rng.choice([-1.0, 1.0], count)
        hold = np.clip(rng.lognormal(np.log(18 * 60), 0.9, count), 60, MAX_HOLD_MINUTES)
        cross = rng.random(count) < 0.7
        users = [f"0x{rng.bytes(20).hex()}" for _ in range(count)]
        for i in range(count):
            open_ms = start + (int(minutes[i]) + 1) * mk.MINUTE_MS  # at that minute's close
            end = inst.perp_end_ms
            if open_ms - mk.MINUTE_MS < inst.perp_listed_ms or (end and open_ms > end):
                continue
            entry = price_at(seed, perp, open_ms)
            lev = int(leverage[i])
            whales.append(
                Whale(
                    inst.coin,
                    perp,
                    users[i],
                    side[i] * notional[i] / entry,
                    entry,
                    entry * (1.0 - side[i] * 0.9 / lev),
                    lev,
                    bool(cross[i]),
                    open_ms,
                    open_ms + int(hold[i]) * mk.MINUTE_MS,
                )
            )
    return tuple(whales)


def _population(state: SandboxState, now: int, days_back: int) -> list[Whale]:
    perps = tuple(
        i.perp for i in state.universe.instruments if i.is_perpetual and i.spot is not None
    )
    today = mk.day_index(mk.day_of_ms(now))
    first = max(0, today - days_back)
    days = [mk.day_of_ms(mk.EPOCH_MS + d * mk.DAY_MS) for d in range(first, today + 1)]
    return [w for day in days for w in _opened_on(state.seed, perps, day) if w.open_ms <= now]


def _num(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _positions(state: SandboxState, now: int) -> list[dict[str, object]]:
    out = []
    for w in _population(state, now, MAX_HOLD_MINUTES // mk.MINUTES + 1):
        end = mk.instrument(w.perp).perp_end_ms
        if w.close_ms <= now or (end is not None and now >= end):
            continue
        mark = price_at(state.seed, w.perp, now)
        value = abs(w.size) * mark
        if value < MIN_NOTIONAL:
            continue
        pnl = w.size * (mark - w.entry)
        held_hours = (now - w.open_ms) / 3_600_000
        funding = -np.sign(w.size) * value * 0.0000125 * held_hours  # 0.01 %/8h, longs pay
        out.append(
            {
                "user": w.user,
                "symbol": w.coin,
                "position_size": round(w.size, 4),
                "entry_price": _num(w.entry),
                "mark_price": _num(mark),
                "liq_price": _num(w.liq),
                "leverage": w.leverage,
                "margin_balance": round(value / w.leverage + pnl, 4),
                "position_value_usd": round(value, 4),
                "unrealized_pnl": round(pnl, 4),
                "funding_fee": round(float(funding), 4),
                "margin_mode": "cross" if w.cross else "isolated",
                "create_time": w.open_ms,
                "update_time": now,
            }
        )
    out.sort(key=lambda r: (-float(r["position_value_usd"]), str(r["user"])))  # type: ignore[arg-type]
    return out


def _events(state: SandboxState, now: int) -> list[dict[str, object]]:
    since = now - ALERT_WINDOW_DAYS * mk.DAY_MS
    days_back = ALERT_WINDOW_DAYS + MAX_HOLD_MINUTES // mk.MINUTES + 1
    events = []
    for w in _population(state, now, days_back):
        for action, at in ((1, w.open_ms), (2, w.close_ms)):
            if not since < at <= now:
                continue
            price = w.entry if action == 1 else price_at(state.seed, w.perp, at)
            value = abs(w.size) * price
            if value <= MIN_NOTIONAL:
                continue
            events.append(
                {
                    "user": w.user,
                    "symbol": w.coin,
                    "position_size": round(w.size, 4),
                    "entry_price": _num(w.entry),
                    "liq_price": _num(w.liq),
                    "position_value_usd": round(value, 4),
                    "position_action": action,
                    "create_time": at,
                }
            )
    events.sort(key=lambda r: (-int(r["create_time"]), str(r["user"]), r["position_action"]))  # type: ignore[call-overload]
    return events[:ALERT_COUNT]


def _faulted(rows: list[dict[str, object]], faults: Sequence[Fault]) -> list[dict[str, object]]:
    kinds = {f.kind for f in faults}
    rows = apply_row_faults(rows, faults)
    unit = 0.001 if "seconds" in kinds else 1000 if "microseconds" in kinds else None
    if unit is not None:
        times = ("create_time", "update_time")
        rows = [{k: int(v * unit) if k in times else v for k, v in r.items()} for r in rows]  # type: ignore[operator]
    if "extra_field" in kinds:
        rows = [{**r, "position_id": f"{r['user']}-{r['create_time']}"} for r in rows]
    return rows


def _handler(path: str) -> routes.Handler:
    def handle(
        req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
    ) -> SandboxResponse:
        headers, refusal = cg.gate(req, state, TIER)
        if refusal is not None:
            return refusal
        now = state.now_ms()
        rows = _positions(state, now) if path == POSITION_PATH else _events(state, now)
        body: dict[str, object] = {"code": "0", "msg": "success", "data": _faulted(rows, faults)}
        if any(f.kind == "extra_field" for f in faults):
            body["success"] = True
        return SandboxResponse.json(200, body, headers)

    return handle


for _path in (POSITION_PATH, ALERT_PATH):
    routes.register(Route("coinglass", _path, _handler(_path), cg.render_fault))
