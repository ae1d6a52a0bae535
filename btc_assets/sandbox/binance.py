"""Binance spot and USD-M futures routes of the sandbox, with Binance's selection rules.

Serves ``/api/v3/klines``, ``/fapi/v1/klines``, ``/fapi/v1/continuousKlines``,
``/fapi/v1/fundingRate`` and the ``time``/``ping`` endpoints with the real JSON shapes
(12-element arrays, decimals as strings, times and trade counts as numbers), the real
validation errors (-1102, -1100, -1120, -1121, -1130) and a cumulative
``x-mbx-used-weight-1m`` header per clock minute that answers 429 (-1003) past the limit.
The still-forming candle is served like the live API; nothing after ``now`` exists.
Intervals 1m..1d are synthesised (1s, 3d, 1w, 1M answer -1120 here).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from btc_assets.sandbox import binance_metrics as bm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.binance_common import (
    DEFAULT_LIMITS,
    FAPI_BUCKET,
    FUNDING_BUCKET,
    FUTURES_DATA_BUCKET,
    SPOT_BUCKET,
    WEIGHT_HEADER,
    BadRequest,
    bucket_of,
    error,
    instrument_param,
    limit_param,
    render_fault,
    time_param,
    too_many,
    weight_headers,
)
from btc_assets.sandbox.binance_klines import KlineRoute
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import (
    Handler,
    Route,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    register,
)

EIGHT_HOURS_MS = 8 * 3_600_000
OI_PERIODS = {"5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360,
              "12h": 720, "1d": 1440}  # fmt: skip
OI_HISTORY_MS = 30 * mk.DAY_MS  # the stats endpoints keep the latest 30 days only


def _funding(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    _, retry_after = state.charge(FUNDING_BUCKET, 1, 300)
    if retry_after is not None:
        return too_many(state, FUNDING_BUCKET, retry_after)
    headers = weight_headers(state, req.path)
    try:
        params = req.params
        instruments = (
            [instrument_param(params, "symbol", state, spot=False)]
            if params.get("symbol")
            else list(state.universe.instruments)
        )
        start, end = time_param(params, "startTime", False), time_param(params, "endTime", False)
        limit = limit_param(params, 100, 1000)
    except BadRequest as exc:
        return error(exc.status, exc.code, exc.msg, headers)
    # Only perpetuals fund (a dated contract answers an empty list), between listing and
    # delisting.
    instruments = [i for i in instruments if i.is_perpetual]
    now = state.now_ms()
    listed = min((i.perp_listed_ms for i in instruments), default=now)
    # Settlement slots k * 8h, each stamped a few ms late; select on the stamped time.
    first_slot = (max(start or 0, listed) - 10) // EIGHT_HOURS_MS + 1
    # "The most recent" of a delisted perp are its last settlements, not empty slots since.
    trading_until = max((i.perp_end_ms or now for i in instruments), default=now)
    last_slot = min(end if end is not None else now, now, trading_until) // EIGHT_HOURS_MS
    if start is not None:
        slots = range(first_slot, min(last_slot, first_slot + limit) + 1)
    else:
        slots = range(max(first_slot, last_slot - limit), last_slot + 1)
    kinds = {f.kind for f in faults}
    unit = 1000 if "microseconds" in kinds else 1
    holes = [f.gap_range_ms() for f in faults if f.kind == "gap"]
    rows: list[tuple[int, str, dict[str, object]]] = []
    for slot in slots:
        slot_ms = slot * EIGHT_HOURS_MS
        if any(a <= slot_ms < b for a, b in holes):
            continue
        day = mk.day_of_ms(slot_ms - 1)
        k = (slot_ms - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // EIGHT_HOURS_MS - 1
        for inst in instruments:
            delisted = inst.perp_end_ms is not None and slot_ms > inst.perp_end_ms
            if slot_ms <= inst.perp_listed_ms or delisted:
                continue
            symbol = inst.perp
            f = mk.market_day(state.seed, symbol, day).funding
            t = int(f.time_ms[k])
            if (
                (start is not None and t < start)
                or t > (end if end is not None else now)
                or t > now
            ):
                continue
            mark = float(f.mark_price[k])
            row: dict[str, object] = {
                "symbol": symbol,
                "fundingTime": t * unit,
                "fundingRate": f"{f.rate[k]:.8f}",
                "markPrice": "" if np.isnan(mark) else f"{mark:.8f}",
                "rateType": "Regular",
            }
            if "extra_field" in kinds:
                row["interestRate"] = "0.00010000"
            rows.append((t, symbol, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    picked = rows[:limit] if start is not None else rows[-limit:]
    out = apply_row_faults([r[2] for r in picked], faults)
    return SandboxResponse.json(200, out, headers)


def _open_interest_hist(
    req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
) -> SandboxResponse:
    """``/futures/data/openInterestHist`` from the same model as the metrics archive; only
    the last 30 days exist (older windows answer an empty list)."""
    _, retry_after = state.charge(FUTURES_DATA_BUCKET, 1, 300)
    if retry_after is not None:
        return too_many(state, FUTURES_DATA_BUCKET, retry_after)
    headers = weight_headers(state, req.path)
    try:
        params = req.params
        symbol = instrument_param(params, "symbol", state, spot=False).perp
        period = params.get("period", "")
        if not period:
            raise BadRequest(
                -1102, "Mandatory parameter 'period' was not sent, was empty/null, or malformed."
            )
        if period not in OI_PERIODS:
            raise BadRequest(-1130, "Data sent for parameter 'period' is not valid.")
        start, end = time_param(params, "startTime", False), time_param(params, "endTime", False)
        limit = limit_param(params, 30, 500)
    except BadRequest as exc:
        return error(exc.status, exc.code, exc.msg, headers)
    now = state.now_ms()
    step = OI_PERIODS[period] * mk.MINUTE_MS
    lo = max(start or 0, now - OI_HISTORY_MS)
    hi = min(end if end is not None else now, now)
    if start is None:  # the most recent `limit` up to endTime
        lo = max(lo, (hi // step - limit + 1) * step)
    found = bm.snapshots(state.seed, symbol, lo, hi, step)[:limit] if hi >= lo else []
    unit = 1000 if any(f.kind == "microseconds" for f in faults) else 1
    rows = [
        {"symbol": symbol, "sumOpenInterest": f"{oi:.3f}", "sumOpenInterestValue": f"{v:.2f}",
         "timestamp": t * unit}
        for t, oi, v in found
    ]  # fmt: skip
    return SandboxResponse.json(200, apply_row_faults(rows, faults), headers)


def _time(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    used, _ = state.charge(bucket_of(req.path), 1, 60)
    return SandboxResponse.json(200, {"serverTime": state.now_ms()}, {WEIGHT_HEADER: str(used)})


def _ping(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    used, _ = state.charge(bucket_of(req.path), 1, 60)
    return SandboxResponse.json(200, {}, {WEIGHT_HEADER: str(used)})


def _register() -> None:
    kline_routes: dict[str, KlineRoute] = {
        "/api/v3/klines": KlineRoute("spot", SPOT_BUCKET, 1000),
        "/fapi/v1/klines": KlineRoute("perp", FAPI_BUCKET, 1500),
        "/fapi/v1/continuousKlines": KlineRoute("perp", FAPI_BUCKET, 1500, "pair", True),
    }
    for path, kr in kline_routes.items():
        register(Route("binance", path, kr.handle, render_fault, symbol_param=kr.symbol_param))
    simple: dict[str, Handler] = {
        "/fapi/v1/fundingRate": _funding,
        "/futures/data/openInterestHist": _open_interest_hist,
        "/api/v3/time": _time,
        "/fapi/v1/time": _time,
        "/api/v3/ping": _ping,
        "/fapi/v1/ping": _ping,
    }
    for path, handler in simple.items():
        register(Route("binance", path, handler, render_fault, symbol_param="symbol"))


_register()
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
