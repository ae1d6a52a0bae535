"""CoinAPI market-data routes of the sandbox, in CoinAPI's own shapes and refusals.

Serves ``GET /v1/ohlcv/{symbol_id}/history`` and ``GET /v1/metrics/symbol/history``
(vendor-apis.md §5) from the same synthetic market as the Binance routes (see
``coinapi_market``): a bare JSON list, times as ISO-8601 with seven fractional digits and
``Z``, numbers as JSON numbers, periods ascending.

Selection: periods whose start lies in ``[time_start, time_end)`` (``time_start`` rounded up
to the period grid), at most ``limit`` (default 100, 1..100000) from the oldest, only
periods that have closed by the data clock (``state.now_ms()``) and lie inside the market's
trading life. Periods: those that divide a UTC day, ``1MIN`` .. ``1DAY`` (a sandbox limit:
the real API also has seconds, months and years).

Auth and quota: ``X-CoinAPI-Key`` (or ``?apikey=``) must be a sandbox key
(``credentials``), else 401 ``{"message": "Invalid API key"}``; the OHLCV-only key gets 403
on the metrics endpoint. Each key has a daily credit quota (bucket ``coinapi``, 100000 by
default; ``coinapi:<key>`` overrides one key) counted per UTC day of the sandbox's rate
clock: a 200 answer costs one credit per 100 items (at least one), reported in
``x-ratelimit-request-cost`` with ``x-ratelimit-limit/remaining/used/reset``. The plan is
hard-limited: once the quota is spent every request is 429 until the reset; the request that
crosses it is still served, as a check-then-serve vendor does. Errors cost nothing.

Refusals, all ``{"message": ...}``: 400 for a missing or bad parameter, 404 for a symbol or
metric CoinAPI does not serve (a dated future, a spot pair asked for funding), 550 "no data"
for a window wholly before the listing or after the delisting. Faults: HTTP kinds in this
shape (``error200`` as ``{"error": ...}`` in an HTTP 200: the UNCONFIRMED variant; ``503`` as
a CDN page), ``gap``/``empty``/``duplicates``/``out_of_order``/``extra_field`` on the rows,
and ``bad_ohlc`` as a cross-vendor *disagreement*: the OHLCV periods overlapping its minutes
have every price 1 % high, consistent within the bar, visible only against Binance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from btc_assets.sandbox import coinapi_market as cam
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import SANDBOX_COINAPI_KEY, SANDBOX_COINAPI_OHLCV_ONLY_KEY
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState

BUCKET = "coinapi"
DEFAULT_LIMITS = {BUCKET: 100_000}  # credits per UTC day, per key
DAY_SECONDS = 86_400
DEFAULT_LIMIT, MAX_LIMIT = 100, 100_000
OHLCV_PATTERN = re.compile(r"/v1/ohlcv/([^/]+)/history")
METRICS_PATH = "/v1/metrics/symbol/history"
# Sandbox keys and whether their plan includes the metrics endpoint.
PLANS = {SANDBOX_COINAPI_KEY: True, SANDBOX_COINAPI_OHLCV_ONLY_KEY: False}
METRICS = {cam.FUNDING_METRIC: "perp"}  # metric id -> the market that has it
PERIOD_MINUTES = {
    "1MIN": 1, "2MIN": 2, "3MIN": 3, "4MIN": 4, "5MIN": 5, "6MIN": 6, "10MIN": 10,
    "15MIN": 15, "20MIN": 20, "30MIN": 30, "1HRS": 60, "2HRS": 120, "3HRS": 180, "4HRS": 240,
    "6HRS": 360, "8HRS": 480, "12HRS": 720, "1DAY": 1440,
}  # fmt: skip
NO_DATA_MSG = "You requested specific single item that we don't have at this moment."
DISAGREEMENT = 1.01  # bad_ohlc: CoinAPI's prices 1 % above the venue's
Kind = Literal["ohlcv", "metric"]


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def iso(ticks: int) -> str:
    """Epoch 100 ns ticks as CoinAPI writes a time: ``2024-01-02T00:00:00.0000000Z``."""
    seconds, fraction = divmod(int(ticks), 10_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:07d}Z"


def _time_ms(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Refusal(400, f"Invalid value for parameter '{name}': {raw}") from None
    if moment.tzinfo is None:  # CoinAPI reads a time without a zone as UTC
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp() * 1000)


def _limit(params: Mapping[str, str]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Refusal(400, f"Invalid value for parameter 'limit': {raw} (1..{MAX_LIMIT})")
    return int(raw)


def _window(
    params: Mapping[str, str], life: tuple[int, int | None], step: int, now: int
) -> tuple[int, int]:
    """[lo, hi) of period opens to serve; 550 if the window misses the market's life."""
    start, end = _time_ms(params, "time_start"), _time_ms(params, "time_end")
    if start is None:
        raise Refusal(400, "Missing required parameter 'time_start'")
    if end is not None and end <= start:
        raise Refusal(400, "Parameter 'time_end' must be later than 'time_start'")
    listed, ended = life
    # After a delisting only once it has happened: before, a later window is just empty.
    gone = ended is not None and ended <= now and start >= ended
    if (end is not None and end <= listed) or gone:
        raise Refusal(550, NO_DATA_MSG)
    lo = -(-max(start, listed) // step) * step  # whole periods only, from the listing on
    closed = min(now, ended) if ended is not None else now
    hi = closed // step * step  # opens below hi have closed
    if end is not None:
        hi = min(hi, -(-end // step) * step)
    return lo, hi


def _opens(lo: int, hi: int, step: int, limit: int, holes: Sequence[tuple[int, int]]) -> list[int]:
    """The first ``limit`` opens in [lo, hi) outside the holes (periods that lost trades)."""
    if hi <= lo:
        return []
    extra = sum((b - a) // step + 2 for a, b in holes)
    opens = lo + np.arange(min((hi - lo) // step, limit + extra), dtype=np.int64) * step
    for a, b in holes:
        opens = opens[(opens + step <= a) | (opens >= b)]
    return opens[:limit].tolist()


def _ohlcv_rows(
    req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
) -> list[dict[str, Any]]:
    found = OHLCV_PATTERN.fullmatch(req.path)
    symbol_id = found.group(1) if found else ""
    resolved = cam.resolve(state.universe, symbol_id)
    if resolved is None:
        raise Refusal(404, f"Unknown symbol_id: {symbol_id}")
    inst, spot = resolved
    minutes = _period(req.params)
    step = minutes * mk.MINUTE_MS
    life = (inst.listed_ms(spot), inst.end_ms(spot))
    lo, hi = _window(req.params, life, step, state.now_ms())
    holes = [f.gap_range_ms() for f in faults if f.kind == "gap"]
    off = [f.gap_range_ms() for f in faults if f.kind == "bad_ohlc"]
    dp = inst.decimals(spot)[0]
    rows = []
    for ot in _opens(lo, hi, step, _limit(req.params), holes):
        day = mk.day_of_ms(ot)
        p = cam.ohlcv_day(state.seed, inst.perp, day, spot, minutes)
        i = (ot - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // step
        scale = DISAGREEMENT if any(ot < b and ot + step > a for a, b in off) else 1.0
        prices = [round(float(x) * scale, dp) for x in (p.open[i], p.high[i], p.low[i], p.close[i])]
        rows.append({
            "time_period_start": iso(ot * cam.TICKS_PER_MS),
            "time_period_end": iso((ot + step) * cam.TICKS_PER_MS),
            "time_open": iso(p.time_open[i]), "time_close": iso(p.time_close[i]),
            "price_open": prices[0], "price_high": prices[1], "price_low": prices[2],
            "price_close": prices[3], "volume_traded": float(p.volume[i]),
            "trades_count": int(p.trades[i]),
        })  # fmt: skip
    return rows


def _metric_rows(
    req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
) -> list[dict[str, Any]]:
    metric_id, symbol_id = req.params.get("metric_id", ""), req.params.get("symbol_id", "")
    for name, value in (("metric_id", metric_id), ("symbol_id", symbol_id)):
        if not value:
            raise Refusal(400, f"Missing required parameter '{name}'")
    if metric_id not in METRICS:
        raise Refusal(404, f"Unknown metric_id: {metric_id}")
    resolved = cam.resolve(state.universe, symbol_id)
    if resolved is None:
        raise Refusal(404, f"Unknown symbol_id: {symbol_id}")
    inst, spot = resolved
    if spot != (METRICS[metric_id] == "spot"):
        raise Refusal(404, f"Metric {metric_id} is not available for symbol_id {symbol_id}")
    minutes = _period(req.params)
    step = minutes * mk.MINUTE_MS
    lo, hi = _window(req.params, (inst.perp_listed_ms, inst.perp_end_ms), step, state.now_ms())
    rows = []
    holes = [f.gap_range_ms() for f in faults if f.kind == "gap"]
    for ot in _opens(lo, hi, step, _limit(req.params), holes):
        day = mk.day_of_ms(ot)
        p = cam.funding_day(state.seed, inst.perp, day, minutes)
        i = (ot - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // step
        rows.append({
            "time_period_start": iso(ot * cam.TICKS_PER_MS),
            "time_period_end": iso((ot + step) * cam.TICKS_PER_MS),
            "time_open": iso(p.time_open[i]), "time_close": iso(p.time_close[i]),
            "first": _rate(p.first[i]), "last": _rate(p.last[i]), "min": _rate(p.min[i]),
            "max": _rate(p.max[i]), "count": int(p.count[i]), "sum": round(float(p.sum[i]), 10),
        })  # fmt: skip
    return rows


def _rate(value: float) -> float:
    """The double nearest the 8-place decimal, as a parser of Binance's "0.00010000" gets."""
    return round(float(value), 8)


def _period(params: Mapping[str, str]) -> int:
    period = params.get("period_id", "")
    if period not in PERIOD_MINUTES:
        raise Refusal(400, f"Invalid value for parameter 'period_id': {period or '(missing)'}")
    return PERIOD_MINUTES[period]


def _key(req: SandboxRequest) -> str:
    return (req.headers.get("x-coinapi-key") or req.params.get("apikey") or "").strip()


def _quota(state: SandboxState, key: str) -> tuple[str, int | None]:
    """The key's credit counter (never in ``state.limits``, so the route decides when to
    refuse) and its daily limit."""
    return f"{BUCKET}-credits:{key}", state.limits.get(f"{BUCKET}:{key}", state.limits.get(BUCKET))


def _quota_headers(state: SandboxState, key: str, cost: int | None = None) -> dict[str, str]:
    counter, limit = _quota(state, key)
    used = state.used(counter, DAY_SECONDS)
    reset = (math.floor(state.clock() / DAY_SECONDS) + 1) * DAY_SECONDS
    headers = {"x-ratelimit-used": str(used), "x-ratelimit-reset": iso(reset * 10_000_000)}
    if limit is not None:
        headers |= {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(limit - used)}
    if cost is not None:
        headers["x-ratelimit-request-cost"] = str(cost)
    return headers


def _message(status: int, text: str, headers: Mapping[str, str] | None = None) -> SandboxResponse:
    return SandboxResponse.json(status, {"message": text}, headers)


def _handler(kind: Kind) -> routes.Handler:
    rows_of = _ohlcv_rows if kind == "ohlcv" else _metric_rows

    def handle(
        req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
    ) -> SandboxResponse:
        key = _key(req)
        if key not in PLANS:
            return _message(401, "Invalid API key")
        counter, limit = _quota(state, key)
        if limit is not None and state.used(counter, DAY_SECONDS) >= limit:
            return _message(429, "Too many requests: the API key's daily request credits are "
                            "used up", _quota_headers(state, key))  # fmt: skip
        if kind == "metric" and not PLANS[key]:
            return _message(403, "Forbidden: your API key does not have enough privileges to "
                            "access this resource", _quota_headers(state, key))  # fmt: skip
        try:
            rows = rows_of(req, state, faults)
        except Refusal as exc:
            return _message(exc.status, exc.message, _quota_headers(state, key))
        cost = max(1, -(-len(rows) // 100))  # each 100 items returned cost one credit
        state.charge(counter, cost, DAY_SECONDS)
        rows = apply_row_faults(rows, faults)
        if any(f.kind == "extra_field" for f in faults):
            rows = [{**r, "price_vwap": 0.0} for r in rows]
        return SandboxResponse.json(200, rows, _quota_headers(state, key, cost))

    return handle


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    headers = _quota_headers(state, _key(req))
    if fault.kind == "429":  # the quota spent, resetting after retry_after seconds
        wait = float(fault.retry_after) if fault.retry_after is not None else 1.0
        headers["x-ratelimit-remaining"] = "0"
        headers["x-ratelimit-reset"] = iso(round((state.clock() + wait) * 10_000_000))
        if fault.retry_after_header is not None:
            headers["retry-after"] = fault.retry_after_header
        return _message(429, fault.msg or "Too many requests", headers)
    if fault.kind == "503":  # the CDN's page in front of the API, not its JSON
        page = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
        return SandboxResponse.raw(503, page, headers, content_type="text/html")
    if fault.kind == "error200":
        return SandboxResponse.json(200, {"error": fault.msg or "Internal error"}, headers)
    status = int(fault.kind)  # 418 / 451 / 500
    return _message(status, fault.msg or f"Error {status}", headers)


routes.register(
    Route(
        "coinapi",
        "/v1/ohlcv/{symbol_id}/history",
        _handler("ohlcv"),
        render_fault,
        pattern=OHLCV_PATTERN,
    )
)
routes.register(
    Route("coinapi", METRICS_PATH, _handler("metric"), render_fault, symbol_param="symbol_id")
)
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
