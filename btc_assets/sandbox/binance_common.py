"""What the Binance sandbox routes share: rate buckets, error bodies, parameter rules."""

from __future__ import annotations

from collections.abc import Mapping

from btc_assets.sandbox.faults import Fault
from btc_assets.sandbox.routes import SandboxRequest, SandboxResponse, SandboxState
from btc_assets.sandbox.universe import Instrument

SPOT_BUCKET = "binance-spot"
FAPI_BUCKET = "binance-fapi"
FUNDING_BUCKET = "binance-funding"  # fundingRate has its own 500 / 5 min IP bucket
FUTURES_DATA_BUCKET = "binance-futures-data"  # /futures/data/*: 1000 requests / 5 min / IP
DEFAULT_LIMITS: dict[str, int] = {
    SPOT_BUCKET: 6000, FAPI_BUCKET: 2400, FUNDING_BUCKET: 500, FUTURES_DATA_BUCKET: 1000,
}  # fmt: skip
WEIGHT_HEADER = "x-mbx-used-weight-1m"
GEO_BLOCK_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error."
)


class BadRequest(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def bucket_of(path: str) -> str:
    return SPOT_BUCKET if path.startswith("/api/") else FAPI_BUCKET


def weight_headers(state: SandboxState, path: str) -> dict[str, str]:
    return {WEIGHT_HEADER: str(state.used(bucket_of(path), 60))}


def error(status: int, code: int, msg: str, headers: Mapping[str, str]) -> SandboxResponse:
    return SandboxResponse.json(status, {"code": code, "msg": msg}, headers)


def too_many(state: SandboxState, bucket: str, retry_after: float) -> SandboxResponse:
    limit = state.limits.get(bucket)
    per = "5 MINUTE" if bucket in (FUNDING_BUCKET, FUTURES_DATA_BUCKET) else "1 MINUTE"
    msg = (
        f"Too much request weight used; current limit is {limit} request weight per {per}. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    )
    headers = {WEIGHT_HEADER: str(state.used(bucket, 60)), "retry-after": str(int(retry_after) + 1)}
    return error(429, -1003, msg, headers)


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    headers = weight_headers(state, req.path)
    if fault.kind == "429":
        headers["retry-after"] = fault.retry_after_header or str(
            fault.retry_after if fault.retry_after is not None else 1
        )
        return error(
            429,
            -1003,
            "Too much request weight used; current limit is "
            f"{state.limits.get(bucket_of(req.path))} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API.",
            headers,
        )
    if fault.kind == "418":
        wait = fault.retry_after if fault.retry_after is not None else 120
        headers["retry-after"] = fault.retry_after_header or str(wait)
        until = state.now_ms() + int(float(wait) * 1000)
        return error(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
            headers,
        )
    if fault.kind == "451":
        return error(451, 0, GEO_BLOCK_MSG, headers)
    if fault.kind == "500":
        body = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
        return SandboxResponse.raw(500, body, headers, content_type="text/html")
    if fault.kind == "503":
        return error(
            503,
            -1008,
            "Server is currently overloaded with other requests. "
            "Please try again in a few minutes.",
            headers,
        )
    # error200: an error object where the data array belongs
    return error(
        200,
        fault.code if fault.code is not None else -1000,
        fault.msg or "An unknown error occurred while processing the request.",
        headers,
    )


def int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise BadRequest(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def time_param(params: Mapping[str, str], name: str, spot: bool) -> int | None:
    value = int_param(params, name)
    if value is not None and spot and value > 100_000_000_000_000:
        return value // 1000  # spot accepts µs since 2024-12
    return value


def symbol_param(params: Mapping[str, str], name: str, state: SandboxState) -> str:
    symbol = params.get(name, "")
    if not symbol:
        raise BadRequest(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    if not all(c.isupper() or c.isdigit() or c in "-_." for c in symbol) or len(symbol) > 20:
        raise BadRequest(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^[A-Z0-9-_.]{1,20}$'.",
        )
    if symbol not in state.symbols:
        raise BadRequest(-1121, "Invalid symbol.")
    return symbol


def instrument_param(
    params: Mapping[str, str], name: str, state: SandboxState, spot: bool
) -> Instrument:
    """The instrument a spot or USD-M symbol names; -1121 if this market does not list it
    (PEPEUSDT is spot only, 1000PEPEUSDT futures only)."""
    symbol = symbol_param(params, name, state)
    found = state.universe.spot(symbol) if spot else state.universe.perp(symbol)
    if found is None:
        raise BadRequest(-1121, "Invalid symbol.")
    return found


def limit_param(params: Mapping[str, str], default: int, maximum: int) -> int:
    limit = int_param(params, "limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise BadRequest(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit
