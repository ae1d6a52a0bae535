"""Binance USD-M signed (USER_DATA) routes of the sandbox: ``GET /fapi/v1/commissionRate``.

Checks a request as Binance does (reference §2.6), in this order, with the real answers:

- ``X-MBX-APIKEY`` missing or empty: HTTP 401 -2014 "API-key format invalid."; not the
  sandbox key (``credentials.SANDBOX_BINANCE_API_KEY``): HTTP 401 -2015;
- ``timestamp`` or ``signature`` missing: -1102; ``recvWindow`` over 60000: -1131;
- the signature: HMAC-SHA256 under ``SANDBOX_BINANCE_API_SECRET`` of the query without
  ``signature``, in the order received (hex, any case), else -1022;
- the time: accepted if ``timestamp < serverTime + 1000`` and ``serverTime - timestamp <=
  recvWindow`` (default 5000), on the sandbox's data clock (``now_ms``), else -1021;
- the symbol: a USD-M contract of the universe, else -1121.

Weight 20 per request on the fapi minute bucket, like the live endpoint. The rates are a
fixed schedule per symbol (``commission``), so tests know the answer; ``GET /fapi/v1/time``
comes from ``sandbox.binance``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from urllib.parse import urlencode

from btc_assets.sandbox.binance_common import (
    FAPI_BUCKET,
    BadRequest,
    error,
    instrument_param,
    int_param,
    render_fault,
    too_many,
    weight_headers,
)
from btc_assets.sandbox.credentials import SANDBOX_BINANCE_API_KEY, SANDBOX_BINANCE_API_SECRET
from btc_assets.sandbox.faults import Fault
from btc_assets.sandbox.routes import (
    Route,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    register,
)

COMMISSION_RATE_PATH = "/fapi/v1/commissionRate"
COMMISSION_RATE_WEIGHT = 20
DEFAULT_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS = 5000, 60_000
AHEAD_TOLERANCE_MS = 1000  # a timestamp may run this far ahead of the server

# The sandbox account is VIP 0 on Binance's USD-M schedule (0.0200% maker, 0.0500% taker);
# a few symbols carry a promotion or an RPI rate, so rows differ and the optional field and
# an exact-decimal case (0.00018 -> 1.8 bps) are exercised.
VIP0 = ("0.0002", "0.0005")
SPECIAL_RATES: dict[str, tuple[str, str, str | None]] = {
    "BTCUSDT": (*VIP0, "0.00005"),
    "ETHUSDT": (*VIP0, "0.00005"),
    "1000PEPEUSDT": ("0.00018", "0.00045", None),
    "DOGEUSDT": ("0", "0.0004", None),  # a zero-maker promotion
}

_MSG_KEY_FORMAT = "API-key format invalid."
_MSG_KEY = "Invalid API-key, IP, or permissions for action."
_MSG_SIGNATURE = "Signature for this request is not valid."
_MSG_TIMESTAMP = "Timestamp for this request is outside of the recvWindow."
_MSG_AHEAD = "Timestamp for this request was 1000ms ahead of the server's time."


def commission(symbol: str) -> dict[str, str]:
    """The answer for ``symbol``: decimals as strings, ``rpiCommissionRate`` where it has one."""
    maker, taker, rpi = SPECIAL_RATES.get(symbol, (*VIP0, None))
    answer = {"symbol": symbol, "makerCommissionRate": maker, "takerCommissionRate": taker}
    if rpi is not None:
        answer["rpiCommissionRate"] = rpi
    return answer


def expected_signature(params: dict[str, str], secret: str = SANDBOX_BINANCE_API_SECRET) -> str:
    """What the signature of ``params`` must be: HMAC over the rest of the query, in order."""
    payload = urlencode([(k, v) for k, v in params.items() if k != "signature"])
    return hmac.new(secret.encode(), payload.encode(), "sha256").hexdigest()


def _mandatory(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise BadRequest(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _check_signed(req: SandboxRequest, state: SandboxState) -> None:
    """Raise ``BadRequest`` with Binance's answer if the request is not properly signed."""
    key = req.headers.get("x-mbx-apikey", "").strip()
    if not key:
        raise BadRequest(-2014, _MSG_KEY_FORMAT, status=401)
    if not hmac.compare_digest(key.encode(), SANDBOX_BINANCE_API_KEY.encode()):
        raise BadRequest(-2015, _MSG_KEY, status=401)
    params = dict(req.params)
    _mandatory(params, "timestamp")
    signature = _mandatory(params, "signature")
    timestamp = int_param(params, "timestamp") or 0
    window = int_param(params, "recvWindow")
    window = DEFAULT_RECV_WINDOW_MS if window is None else window
    if window > MAX_RECV_WINDOW_MS:
        raise BadRequest(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    if not hmac.compare_digest(signature.lower().encode(), expected_signature(params).encode()):
        raise BadRequest(-1022, _MSG_SIGNATURE)
    server = state.now_ms()
    if timestamp >= server + AHEAD_TOLERANCE_MS:
        raise BadRequest(-1021, _MSG_AHEAD)
    if server - timestamp > window:
        raise BadRequest(-1021, _MSG_TIMESTAMP)


def _commission_rate(
    req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
) -> SandboxResponse:
    _, retry_after = state.charge(FAPI_BUCKET, COMMISSION_RATE_WEIGHT, 60)
    if retry_after is not None:
        return too_many(state, FAPI_BUCKET, retry_after)
    headers = weight_headers(state, req.path)
    try:
        _check_signed(req, state)
        symbol = instrument_param(req.params, "symbol", state, spot=False).perp
    except BadRequest as exc:
        return error(exc.status, exc.code, exc.msg, headers)
    return SandboxResponse.json(200, commission(symbol), headers)


register(
    Route("binance", COMMISSION_RATE_PATH, _commission_rate, render_fault, symbol_param="symbol")
)
