"""CoinGlass v4 history routes of the sandbox, in CoinGlass's own envelope and error shapes.

Serves the eight history paths the client uses with ``{"code":"0","msg":"success","data":[..]}``
(``code`` a string), ``time`` = bar open in ms, price/OI/funding/pair-taker values as strings
and aggregated taker/liquidation values as JSON numbers, as the real API mixes them. Errors
come the CoinGlass way, as HTTP 200 with a non-"0" code: a missing ``CG-API-KEY`` (401
"API key missing"), an unknown key (400 "Invalid API key provided"), an interval the key's
plan does not cover (401 "Upgrade plan"), a missing or bad parameter (400). Each response
carries ``API-KEY-MAX-LIMIT``/``API-KEY-USE-LIMIT``; past the per-minute plan limit (bucket
``coinglass``, 300 by default, see ``limits``) the answer is HTTP 429.

Symbols: a pair endpoint takes a USD-M symbol the universe lists (``1000PEPEUSDT``), a coin
endpoint a coin (``PEPE``, from its perpetual); anything else is 400 "Unsupported symbol".
Nothing exists before the instrument's listing (the spot listing for the spot endpoint) or
after its delisting; a coin without a spot pair has an empty spot series.

History depth (``SandboxTransport(coinglass_history_days=N)``, settings
``BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS``): CoinGlass serves 15m history only so far back
(Standard 90 days, Professional 180; vendor-apis.md 4.1). With N set, bars of 15m and shorter
that open before ``now - N days`` are not served: a window wholly outside answers
``{"code":"0","msg":"success","data":[]}``, one straddling the edge its part inside.
ASSUMPTION (UNCONFIRMED in the reference): that an out-of-window request is an empty success
rather than an error; the client must treat such an empty answer as "no history there", and
a pipeline that knows its plan (``BTC_ASSETS_COINGLASS_HISTORY_DAYS``) should not ask. The
plan's shorter 1m/5m depths are not modelled; 30m and longer are unlimited.

Selection: bars opening in ``[start_time, end_time]`` (inclusive); when more than ``limit``
match, the latest ``limit`` are served unless only ``start_time`` is given. (The real rule is
unconfirmed: a client that pages in windows of ``limit x interval`` never depends on it.)
The still-forming bar is served with the minutes closed so far; nothing after ``now`` exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import coinglass_market as cgm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import (
    SANDBOX_COINGLASS_HOBBYIST_KEY,
    SANDBOX_COINGLASS_KEY,
    SANDBOX_COINGLASS_STANDARD_KEY,
    SANDBOX_COINGLASS_STARTUP_KEY,
)
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState
from btc_assets.sandbox.universe import Instrument

BUCKET = "coinglass"
DEFAULT_LIMITS = {BUCKET: 300}  # Standard plan, requests per minute
MAX_HEADER, USE_HEADER = "API-KEY-MAX-LIMIT", "API-KEY-USE-LIMIT"
MAX_LIMIT = 1000
# Keys the sandbox accepts, with the shortest history interval (minutes) each plan may ask.
PLAN_MIN_MINUTES: dict[str, int] = {
    SANDBOX_COINGLASS_KEY: 1,  # Professional: every interval
    SANDBOX_COINGLASS_STANDARD_KEY: 1,  # Standard: every interval
    SANDBOX_COINGLASS_STARTUP_KEY: 30,
    SANDBOX_COINGLASS_HOBBYIST_KEY: 240,
}
# Plans in rising order, and each key's: the market-structure routes need a tier.
PLAN_TIERS = ("hobbyist", "startup", "standard", "professional")
PLAN_OF_KEY: dict[str, str] = {
    SANDBOX_COINGLASS_KEY: "professional", SANDBOX_COINGLASS_STANDARD_KEY: "standard",
    SANDBOX_COINGLASS_STARTUP_KEY: "startup", SANDBOX_COINGLASS_HOBBYIST_KEY: "hobbyist",
}  # fmt: skip
INTERVAL_MINUTES = {
    "1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240,
    "6h": 360, "8h": 480, "12h": 720, "1d": 1440,
}  # fmt: skip
# The plan's history depth (``SandboxState.coinglass_history_days``) limits these intervals.
HISTORY_LIMITED_MINUTES = 15
_DEFAULT_MSG = {"400": "Bad Request", "401": "Upgrade plan", "429": "Too Many Requests",
                "500": "Server Error"}  # fmt: skip


def _price(x: float, tick_dp: int) -> str:
    """On the contract's tick, trailing zeros dropped as CoinGlass does: "92730", "93404.9"."""
    text = f"{x:.{tick_dp}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _number5(x: float, _: int) -> str:
    return "0" if x == 0 else f"{x:.5f}"


# Each takes the value and the instrument's tick decimals (only prices use them).
_FORMATS: dict[str, Callable[[float, int], str]] = {
    "price": lambda x, dp: f'"{_price(x, dp)}"',
    "str0": lambda x, _: f'"{x:.0f}"',
    "str4": lambda x, _: f'"{x:.4f}"',
    "str6": lambda x, _: f'"{x:.6f}"',
    "num4": lambda x, _: f"{x:.4f}",
    "num5": _number5,
}


@dataclass(frozen=True)
class Endpoint:
    path: str
    kind: cgm.Kind
    formats: tuple[str, ...]  # one per row field, in the endpoint's field order
    exchange: bool = False  # pair endpoint: `exchange` + pair `symbol`
    exchange_list: bool = False  # coin endpoint over an exchange list
    spot: bool = False  # spot data exists before the perp was listed

    @property
    def required(self) -> tuple[str, ...]:
        first = ("exchange",) if self.exchange else ("exchange_list",) if self.exchange_list else ()
        return (*first, "symbol", "interval")


_OHLC = ("price", "price", "price", "price")
ENDPOINTS = [
    Endpoint("/api/futures/price/history", "price", (*_OHLC, "str4"), exchange=True),
    Endpoint("/api/futures/open-interest/aggregated-history", "oi", ("str0",) * 4),
    Endpoint("/api/futures/funding-rate/oi-weight-history", "funding_oi", ("str6",) * 4),
    Endpoint("/api/futures/funding-rate/vol-weight-history", "funding_vol", ("str6",) * 4),
    Endpoint("/api/futures/v2/taker-buy-sell-volume/history", "pair_taker", ("str4",) * 2,
             exchange=True),
    Endpoint("/api/spot/aggregated-taker-buy-sell-volume/history", "spot_taker",
             ("num4",) * 2, exchange_list=True, spot=True),
    Endpoint("/api/futures/aggregated-taker-buy-sell-volume/history", "futures_taker",
             ("num4",) * 2, exchange_list=True),
    Endpoint("/api/futures/liquidation/aggregated-history", "liquidation", ("num5",) * 2,
             exchange_list=True),
]  # fmt: skip
_OI_COINS = Endpoint(ENDPOINTS[1].path, "oi_coin", ("str4",) * 4)  # unit=coin


class BadRequest(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def _envelope(
    code: str, msg: str, headers: Mapping[str, str], status: int = 200
) -> SandboxResponse:
    return SandboxResponse.json(status, {"code": code, "msg": msg}, headers)


def _rate_headers(state: SandboxState, used: int | None = None) -> dict[str, str]:
    used = state.used(BUCKET, 60) if used is None else used
    return {MAX_HEADER: str(state.limits.get(BUCKET, 0)), USE_HEADER: str(used)}


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    headers = _rate_headers(state)
    if fault.kind in ("429", "418"):
        if fault.retry_after_header is not None:
            headers["retry-after"] = fault.retry_after_header
        elif fault.retry_after is not None:  # CoinGlass may or may not send one: test both
            headers["retry-after"] = str(fault.retry_after)
        msg = "Too Many Requests" if fault.kind == "429" else "I'm a teapot"
        return _envelope(fault.kind, msg, headers, int(fault.kind))
    if fault.kind == "451":
        return _envelope("451", "Unavailable For Legal Reasons", headers, 451)
    if fault.kind in ("500", "503"):  # the CDN's page, not the API's envelope
        title = "500 Internal Server Error" if fault.kind == "500" else "503 Service Unavailable"
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return SandboxResponse.raw(int(fault.kind), body.encode(), headers, "text/html")
    code = str(fault.code if fault.code is not None else 401)
    return _envelope(code, fault.msg or _DEFAULT_MSG.get(code, "Error"), headers)


def _long(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(
            "400",
            "Failed to convert value of type 'java.lang.String' to required type 'long'; "
            f'For input string: "{raw}"',
        )
    return int(raw)


def _instrument_of(ep: Endpoint, symbol: str, state: SandboxState) -> Instrument:
    """A pair endpoint's pair (a listed USD-M symbol, 1000PEPEUSDT) or a coin endpoint's
    coin (PEPE: the perpetual it is aggregated from)."""
    found = state.universe.perp(symbol) if ep.exchange else state.universe.coin(symbol)
    if found is None:
        raise BadRequest("400", f"Unsupported symbol: {symbol}")
    return found


def _exchanges(ep: Endpoint, params: Mapping[str, str]) -> tuple[str, ...]:
    if not (ep.exchange or ep.exchange_list):
        return ()
    raw = params["exchange" if ep.exchange else "exchange_list"]
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in cgm.EXCHANGES]
    if unknown or not names or (ep.exchange and len(names) != 1):
        raise BadRequest("400", f"Unsupported exchange: {raw}")
    return names


def _opens(
    start: int | None, end: int | None, limit: int, step: int, first_ms: int, last_ms: int
) -> np.ndarray:
    lo = -(-max(start or 0, first_ms) // step) * step
    hi = min(last_ms, end // step * step) if end is not None else last_ms
    if hi < lo:
        return np.empty(0, dtype=np.int64)
    count = min(limit, (hi - lo) // step + 1)
    if start is not None and end is None:
        return lo + np.arange(count, dtype=np.int64) * step
    return hi - np.arange(count - 1, -1, -1, dtype=np.int64) * step


@lru_cache(maxsize=64)  # per (day, dataset, interval): a backfill reads each day once
def _day_values(
    seed: int, symbol: str, day: date, ep: Endpoint, minutes: int, exchanges: tuple[str, ...]
) -> tuple[tuple[str, ...], list[list[str]]]:
    """Field names and each bar's formatted values for one day."""
    cols = cgm.minute_columns(seed, symbol, day, ep.kind, exchanges)
    dp = mk.instrument(symbol).perp_decimals[0]
    texts = [
        [_FORMATS[f](x, dp) for x in cgm.reduce(values, rule, minutes).tolist()]
        for (values, rule), f in zip(cols.values(), ep.formats, strict=True)
    ]
    return tuple(cols), [list(row) for row in zip(*texts, strict=True)]


def _forming(
    seed: int, symbol: str, ep: Endpoint, exchanges: tuple[str, ...], open_ms: int, now: int
) -> list[str]:
    """The still-open bar from the minutes closed so far."""
    day = mk.day_of_ms(open_ms)
    first = (open_ms - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // mk.MINUTE_MS
    sl = slice(first, first + (now - open_ms) // mk.MINUTE_MS)
    cols = cgm.minute_columns(seed, symbol, day, ep.kind, exchanges)
    dp = mk.instrument(symbol).perp_decimals[0]
    out = []
    for (values, rule), f in zip(cols.values(), ep.formats, strict=True):
        part = values[sl]
        pick = {"open": part[0], "close": part[-1], "high": part.max(), "low": part.min()}
        out.append(_FORMATS[f](float(pick.get(rule, part.sum())), dp))
    return out


def _params(
    ep: Endpoint, req: SandboxRequest, state: SandboxState, key: str
) -> tuple[Instrument, int, int]:
    params = req.params
    for name in ep.required:
        if not params.get(name):
            raise BadRequest("400", f"Required String parameter '{name}' is not present")
    inst = _instrument_of(ep, params["symbol"], state)
    minutes = INTERVAL_MINUTES.get(params["interval"])
    if minutes is None:
        raise BadRequest("400", f"Invalid interval: {params['interval']}")
    if minutes < PLAN_MIN_MINUTES[key]:
        raise BadRequest("401", "Upgrade plan")
    limit = _long(params, "limit")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise BadRequest("400", f"limit must be between 1 and {MAX_LIMIT}")
    return inst, minutes, MAX_LIMIT if limit is None else limit


def history_start_ms(state: SandboxState, minutes: int) -> int:
    """The oldest bar open the plan serves at this interval: ``now - N days`` for 15m and
    shorter when the sandbox models a plan depth of N days (see the module), else 0."""
    days = state.coinglass_history_days
    if days is None or minutes > HISTORY_LIMITED_MINUTES:
        return 0
    return state.now_ms() - days * mk.DAY_MS


def _rows(
    ep: Endpoint, req: SandboxRequest, state: SandboxState, faults: Sequence[Fault], key: str
) -> list[str]:
    inst, minutes, limit = _params(ep, req, state, key)
    symbol = inst.perp  # the market's key, for spot series too
    exchanges = _exchanges(ep, req.params)
    if ep.kind == "oi" and req.params.get("unit", "usd") == "coin":
        ep = _OI_COINS
    start, end = _long(req.params, "start_time"), _long(req.params, "end_time")
    if ep.spot and inst.spot is None:
        return []  # a coin with no spot market (an index perp) has no spot flows
    now, step = state.now_ms(), minutes * mk.MINUTE_MS
    first_ms = max(inst.listed_ms(ep.spot), history_start_ms(state, minutes))
    forming = now // step * step
    last_ms = forming if now - forming >= mk.MINUTE_MS else forming - step
    end_of_trading = inst.end_ms(ep.spot)
    if end_of_trading is not None:
        last_ms = min(last_ms, (end_of_trading - 1) // step * step)
    opens = _opens(start, end, limit, step, first_ms, last_ms)
    kinds = {f.kind for f in faults}
    holes = [f.gap_range_ms() for f in faults if f.kind == "gap"]
    broken = [f.gap_range_ms() for f in faults if f.kind == "bad_ohlc"]
    unit = 1000 if "microseconds" in kinds else 1
    extra = ',"new_metric":"0.0"' if "extra_field" in kinds else ""
    rows: list[str] = []
    for ot in opens.tolist():
        if any(ot < b and ot + step > a for a, b in holes):  # any part of the bar missing
            continue
        day = mk.day_of_ms(ot)
        if ot + step > now:
            names = tuple(cgm.minute_columns(state.seed, symbol, day, ep.kind, exchanges))
            values = _forming(state.seed, symbol, ep, exchanges, ot, now)
        else:
            names, day_rows = _day_values(state.seed, symbol, day, ep, minutes, exchanges)
            values = day_rows[(ot - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // step]
            if "high" in names and any(ot < b and ot + step > a for a, b in broken):
                values = list(values)
                values[1], values[2] = values[2], values[1]  # a bad print: high below low
        fields = ",".join(f'"{n}":{v}' for n, v in zip(names, values, strict=True))
        rows.append(f'{{"time":{ot * unit},{fields}{extra}}}')
    return apply_row_faults(rows, faults)


def gate(
    req: SandboxRequest, state: SandboxState, tier: str = "hobbyist"
) -> tuple[dict[str, str], SandboxResponse | None]:
    """What every CoinGlass route checks first, in CoinGlass's order: the key, the
    per-minute bucket, then the plan ``tier`` the path needs. Returns the rate headers and
    the refusal to send, if any."""
    headers = _rate_headers(state)
    key = req.headers.get("cg-api-key", "").strip()
    if not key:
        return headers, _envelope("401", "API key missing", headers)
    if key not in PLAN_MIN_MINUTES:
        return headers, _envelope("400", "Invalid API key provided", headers)
    used, retry_after = state.charge(BUCKET, 1, 60)
    headers = _rate_headers(state, used)
    if retry_after is not None:
        headers["retry-after"] = str(int(retry_after) + 1)
        return headers, _envelope("429", "Too Many Requests", headers, 429)
    if PLAN_TIERS.index(PLAN_OF_KEY[key]) < PLAN_TIERS.index(tier):
        return headers, _envelope("401", "Upgrade plan", headers)
    return headers, None


def _handler(ep: Endpoint) -> routes.Handler:
    def handle(
        req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
    ) -> SandboxResponse:
        headers, refusal = gate(req, state)
        if refusal is not None:
            return refusal
        key = req.headers["cg-api-key"].strip()
        try:
            rows = _rows(ep, req, state, faults, key)
        except BadRequest as exc:
            return _envelope(exc.code, exc.msg, headers)
        extra = ',"success":true' if any(f.kind == "extra_field" for f in faults) else ""
        body = '{"code":"0","msg":"success","data":[' + ",".join(rows) + "]" + extra + "}"
        return SandboxResponse.raw(200, body.encode(), headers)

    return handle


def _register() -> None:
    for ep in ENDPOINTS:
        routes.register(
            Route("coinglass", ep.path, _handler(ep), render_fault, symbol_param="symbol")
        )


_register()
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
