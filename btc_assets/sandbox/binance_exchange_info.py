"""Binance ``exchangeInfo`` routes of the sandbox: the instruments of ``sandbox.universe``.

``GET /fapi/v1/exchangeInfo`` (weight 1) answers the whole USD-M universe whatever the query
(the live API ignores ``?symbol=``), in the live key order: ``timezone``, ``serverTime``,
``futuresType``, ``rateLimits``, ``exchangeFilters``, ``assets``, ``symbols``. Each symbol
carries ``contractType``, ``status``, ``onboardDate`` (its first kline's open),
``deliveryDate`` (4133404800000 for a live perpetual, the settlement for a delisted or dated
one) and ``filters`` with ``PRICE_FILTER.tickSize`` and ``LOT_SIZE.stepSize`` as decimal
strings printed to ``pricePrecision``/``quantityPrecision`` places ("0.10", "0.001").

``GET /api/v3/exchangeInfo`` (weight 20) answers every spot pair, or those named by
``symbol=X`` or ``symbols=["X","Y"]`` (-1121 "Invalid symbol." if one is not listed, HTTP
400), optionally only those of ``symbolStatus`` (TRADING, BREAK, ...). Spot filters print
8 decimal places ("0.01000000").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from btc_assets.sandbox.binance_common import (
    FAPI_BUCKET,
    SPOT_BUCKET,
    WEIGHT_HEADER,
    BadRequest,
    error,
    render_fault,
    too_many,
    weight_headers,
)
from btc_assets.sandbox.faults import Fault
from btc_assets.sandbox.routes import (
    Route,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    register,
)
from btc_assets.sandbox.universe import Instrument

FUTURES_PATH = "/fapi/v1/exchangeInfo"
SPOT_PATH = "/api/v3/exchangeInfo"
FUTURES_WEIGHT, SPOT_WEIGHT = 1, 20
FUTURES_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
SPOT_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]
MARGIN_ASSETS = ("USDT", "USDC", "BTC", "BNB", "ETH")
ORDER_TYPES = ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
               "TRAILING_STOP_MARKET"]  # fmt: skip
SPOT_ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]


def _decimal(places: int, shown: int) -> str:
    """10^-places printed with ``shown`` decimals: (1, 2) -> "0.10", (0, 0) -> "1"."""
    return f"{10.0**-places:.{shown}f}"


def futures_symbol(inst: Instrument) -> dict[str, Any]:
    """One ``symbols[]`` entry of the USD-M exchangeInfo, keys in the live order."""
    tick_dp, step_dp, _ = inst.perp_decimals
    price_precision = max(tick_dp, 2)
    step = _decimal(step_dp, step_dp)
    return {
        "symbol": inst.perp, "pair": inst.perp.split("_")[0], "contractType": inst.contract_type,
        "deliveryDate": inst.delivery_ms, "onboardDate": inst.perp_listed_ms,
        "status": inst.status, "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": inst.base, "quoteAsset": inst.quote, "marginAsset": inst.quote,
        "pricePrecision": price_precision, "quantityPrecision": step_dp,
        "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
        "underlyingSubType": [], "triggerProtect": "0.0500", "liquidationFee": "0.012500",
        "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": _decimal(tick_dp, price_precision),
             "maxPrice": "4529764", "tickSize": _decimal(tick_dp, price_precision)},
            {"filterType": "LOT_SIZE", "minQty": step, "stepSize": step, "maxQty": "1000000"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "120000",
             "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": "50" if inst.price >= 1 else "5"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
             "multiplierDown": "0.9500", "multiplierDecimal": "4"},
        ],
        "orderTypes": ORDER_TYPES, "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY", "DCA", "PSB"],
    }  # fmt: skip


def spot_symbol(inst: Instrument) -> dict[str, Any]:
    """One ``symbols[]`` entry of the spot exchangeInfo (the instrument has a spot pair)."""
    tick_dp, step_dp, _ = inst.spot_decimals
    tick, step = _decimal(tick_dp, 8), _decimal(step_dp, 8)
    return {
        "symbol": inst.spot, "status": inst.spot_status, "baseAsset": inst.spot_base,
        "baseAssetPrecision": 8, "quoteAsset": inst.quote, "quotePrecision": 8,
        "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": SPOT_ORDER_TYPES, "icebergAllowed": True, "ocoAllowed": True,
        "otoAllowed": True, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
        "cancelReplaceAllowed": True, "isSpotTradingAllowed": inst.spot_status == "TRADING",
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000",
             "stepSize": step},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False,
             "avgPriceMins": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }  # fmt: skip


def _charged(
    state: SandboxState, bucket: str, weight: int
) -> tuple[SandboxResponse | None, dict[str, str]]:
    used, retry_after = state.charge(bucket, weight, 60)
    if retry_after is not None:
        return too_many(state, bucket, retry_after), {}
    return None, {WEIGHT_HEADER: str(used)}


def _futures(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    refused, headers = _charged(state, FAPI_BUCKET, FUTURES_WEIGHT)
    if refused is not None:
        return refused
    payload = {
        "timezone": "UTC",
        "serverTime": state.now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": FUTURES_RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [
            {"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"}
            for a in MARGIN_ASSETS
        ],
        "symbols": [futures_symbol(i) for i in state.universe.instruments],
    }
    return SandboxResponse.json(200, payload, headers)


def _named(req: SandboxRequest, state: SandboxState) -> list[str] | None:
    """The spot symbols a query names (None: all); -1121 if one is not listed."""
    one, many = req.params.get("symbol"), req.params.get("symbols")
    if one and many:
        raise BadRequest(-1128, "Combination of optional parameters invalid.")
    if many:
        try:
            names = json.loads(many)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest(
                -1100, "Illegal characters found in parameter 'symbols'; legal range is "
                "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.",
            )  # fmt: skip
    else:
        names = [one] if one else None
    if names is not None and any(state.universe.spot(n) is None for n in names):
        raise BadRequest(-1121, "Invalid symbol.")
    return names


def _spot(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    refused, headers = _charged(state, SPOT_BUCKET, SPOT_WEIGHT)
    if refused is not None:
        return refused
    try:
        names = _named(req, state)
    except BadRequest as exc:
        return error(exc.status, exc.code, exc.msg, weight_headers(state, req.path))
    if names is None:
        listed = [i for i in state.universe.instruments if i.spot is not None]
    else:
        listed = [i for n in names if (i := state.universe.spot(n)) is not None]
    status = req.params.get("symbolStatus")
    payload = {
        "timezone": "UTC",
        "serverTime": state.now_ms(),
        "rateLimits": SPOT_RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [spot_symbol(i) for i in listed if status is None or i.spot_status == status],
    }
    return SandboxResponse.json(200, payload, headers)


def _register() -> None:
    register(Route("binance", FUTURES_PATH, _futures, render_fault, symbol_param="symbol"))
    register(Route("binance", SPOT_PATH, _spot, render_fault, symbol_param="symbol"))


_register()
