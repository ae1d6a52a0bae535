"""CryptoQuant BTC on-chain routes of the sandbox, in CryptoQuant's envelope and status codes.

Serves ``/v1/btc/exchange-flows/{reserve,netflow,inflow,outflow,transactions-count}`` and
``/v1/btc/flow-indicator/{exchange-whale-ratio,mpi}`` with
``{"status":{"code":200,"message":"success"},"result":{"window":"day","data":[...]}}``, rows
**newest first** keyed by ``"date": "YYYY-MM-DD"``, values as JSON numbers. Parameters as the
real API: ``window`` (day|hour|block, default day), ``exchange`` (required on per-exchange
endpoints), ``from``/``to`` (``YYYYMMDD``, or ``YYYYMMDDTHHMMSS`` of which the day counts) and
``limit`` (1..100000, default 100): of the published days in ``[from, to]`` the newest
``limit`` are served, i.e. counted back from ``to`` (or from the newest day).

Refusals carry the status in the HTTP status and in the envelope, with no ``result``:
``Authorization: Bearer <token>`` missing or unknown → 401 ``unauthorized``; an endpoint the
token's plan lacks (``SANDBOX_CRYPTOQUANT_BASIC_TOKEN`` and MPI) → 403 ``forbidden``; a bad
parameter, or ``window=hour``/``block`` on a day-only indicator → 400 ``bad_request``; a
method other than GET → 405; past the per-minute limit (bucket ``cryptoquant``) → 429 with
``Retry-After``. ASSUMPTIONS (UNCONFIRMED in the reference): the ``description`` the sandbox
adds to a refusal's ``status`` (the reason, for people reading logs), and that exchange-flow
hour/block windows are refused here (400, "the sandbox serves day windows only") though the
real API serves them. Fault plans work on these paths: 429/418/451/500 in the envelope, 503
as the CDN's HTML page, ``error200`` as HTTP 200 with ``status.code`` = the fault's code (code
200 serves the data with ``message`` = the fault's msg, "deprecated" by default), and the
page faults ``empty``/``duplicates``/``out_of_order``/``extra_field``/``gap`` (the ``day``'s
row missing).

The model, a pure function of the seed: per exchange, the end-of-day reserve is
``log R = level - 0.15 * log(BTC price) + AR(1) noise``, so the day's netflow (``R_d -
R_{d-1}``, reserve is exactly its cumulative sum) is negatively correlated with the day's
BTC return of ``sandbox.market`` (coins leave exchanges on up days). Inflow and outflow split
the day's gross flow around the netflow; the whale ratio (top-10 inflow share, in (0, 1))
rises on down days; MPI (not per exchange) rises on up days (miners sell into strength).

Publication: day D's row exists only from D+1 00:00 + :data:`PUBLICATION_DELAY_MS` (00:10
UTC) on the sandbox data clock ``state.now_ms()``. ASSUMPTION: CryptoQuant documents no
publication time; ten minutes is the model, a constant here. Revisions: at each Tuesday 00:00
UTC re-clustering the seven days before it (Tuesday..Monday) are revised once: netflow moves
by a small deterministic delta (split between inflow and outflow), and the reserve by the
cumulative delta, so a past day read before and after a Tuesday differs (and Monday's row,
published after the re-clustering, is revised from the start). Counts and whale ratio are
not revised.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache, partial
from typing import Any

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import (
    SANDBOX_CRYPTOQUANT_BASIC_TOKEN,
    SANDBOX_CRYPTOQUANT_TOKEN,
)
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState

BUCKET = "cryptoquant"
DEFAULT_LIMITS = {BUCKET: 20}  # requests per minute; the plans' real limits are UNCONFIRMED
PUBLICATION_DELAY_MS = 10 * mk.MINUTE_MS  # day D is published at D+1 00:10 UTC (assumed)
RECLUSTER_WEEKDAY = 1  # Tuesday (date.weekday()), 00:00 UTC
MAX_LIMIT, DEFAULT_LIMIT = 100_000, 100
FIRST_DAY = mk.EPOCH  # the synthetic world starts here
LAST_DAY = mk.EPOCH + timedelta(days=mk.HORIZON_DAYS - 1)
PLANS = {SANDBOX_CRYPTOQUANT_TOKEN: "professional", SANDBOX_CRYPTOQUANT_BASIC_TOKEN: "basic"}
# Each exchange's share of the aggregate reserve (about 2.4M BTC at the start of the world).
EXCHANGES: dict[str, float] = {
    "all_exchange": 1.0, "spot_exchange": 0.62, "derivative_exchange": 0.38, "binance": 0.25,
    "coinbase_advanced": 0.3, "okx": 0.06, "bybit": 0.04, "kraken": 0.05, "bitfinex": 0.1,
    "bitstamp": 0.02, "gemini": 0.05,
}  # fmt: skip
RESERVE_LEVEL, PRICE_BETA = 2_400_000.0, 0.15
STATUS_NAMES = {
    200: "success", 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "not_allowed", 418: "im_a_teapot", 429: "too_many_requests",
    451: "unavailable_for_legal_reasons", 500: "internal_server_error",
}  # fmt: skip
_TIME = re.compile(r"(\d{8})(T\d{6})?")


@dataclass(frozen=True)
class Endpoint:
    path: str
    fields: tuple[str, ...]
    per_exchange: bool = True
    day_only: bool = False  # the flow indicators: window=hour/block → 400
    professional: bool = False  # refused (403) to the basic plan


_FLOWS, _INDICATOR = "/v1/btc/exchange-flows", "/v1/btc/flow-indicator"
ENDPOINTS = {e.path: e for e in (
    Endpoint(f"{_FLOWS}/reserve", ("reserve", "reserve_usd")),
    Endpoint(f"{_FLOWS}/netflow", ("netflow_total",)),
    Endpoint(f"{_FLOWS}/inflow", ("inflow_total", "inflow_top10", "inflow_mean",
                                  "inflow_mean_ma7")),
    Endpoint(f"{_FLOWS}/outflow", ("outflow_total", "outflow_top10", "outflow_mean",
                                   "outflow_mean_ma7")),
    Endpoint(f"{_FLOWS}/transactions-count", ("transactions_count_inflow",
                                              "transactions_count_outflow")),
    Endpoint(f"{_INDICATOR}/exchange-whale-ratio", ("exchange_whale_ratio",), day_only=True),
    Endpoint(f"{_INDICATOR}/mpi", ("mpi",), per_exchange=False, day_only=True,
             professional=True),
)}  # fmt: skip


class BadRequest(Exception):
    """A parameter the API refuses (400), with the reason for ``status.description``."""


@dataclass(frozen=True)
class _Flows:
    """One exchange's unrevised daily series, index = day since ``FIRST_DAY``."""

    reserve: np.ndarray  # end of day, BTC
    netflow: np.ndarray  # reserve[d] - reserve[d-1]
    gross: np.ndarray  # inflow + outflow
    revision: np.ndarray  # netflow change at the day's re-clustering
    whale_in: np.ndarray  # top-10 share of inflow: the exchange whale ratio
    whale_out: np.ndarray
    tx_in: np.ndarray
    tx_out: np.ndarray


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(p.encode()) for p in parts)])


@lru_cache(maxsize=8)
def btc_days(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log close, log return, return / day's sigma) of BTC for each day of the world.

    Read from the market's daily anchors: ``market_day`` pins each day's first open and last
    close to them, so they are the day's BTC return exactly, and a reserve that is a sum
    over years needs them all (building 1440 minutes per day would take seconds)."""
    anchors = mk._anchors(seed, "BTCUSDT")
    log_price = anchors.log_price
    ret = np.diff(log_price)
    return log_price[1:], ret, ret / anchors.sigma[:-1]


def _ar1(rng: np.random.Generator, sd: float, phi: float, n: int) -> np.ndarray:
    return mk._ar1(rng.normal(0.0, sd, n), phi)


@lru_cache(maxsize=16)
def flows(seed: int, exchange: str) -> _Flows:
    log_close, _, z = btc_days(seed)
    n = len(z)
    rng = _rng(seed, "cryptoquant", exchange)
    log_start = np.concatenate([[log_close[0] - (log_close[1] - log_close[0])], log_close])
    log_reserve = (
        np.log(RESERVE_LEVEL * EXCHANGES[exchange])
        - PRICE_BETA * (log_start - log_start[0])
        + _ar1(rng, 0.004, 0.995, n + 1)
    )
    reserve_all = np.exp(log_reserve)  # at the start of day 0, then each day's end
    netflow = np.diff(reserve_all)
    base = reserve_all[1:] * 0.012 * np.exp(_ar1(rng, 0.15, 0.9, n))
    gross = 2.0 * base + np.abs(netflow)  # inflow, outflow >= base / 2 > 0
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    revision = sign * base * 0.004 * (1.0 + np.abs(rng.normal(0.0, 1.0, n)))  # never 0
    logit = np.log(0.4 / 0.6)
    whale_in = _sigmoid(logit + _ar1(rng, 0.25, 0.8, n) - 0.4 * np.tanh(z))
    whale_out = _sigmoid(logit + _ar1(rng, 0.25, 0.8, n))
    size_in = 1.3 * np.exp(_ar1(rng, 0.1, 0.9, n))  # BTC per deposit
    size_out = 2.0 * np.exp(_ar1(rng, 0.1, 0.9, n))
    tx_in = np.maximum(np.rint((gross + netflow) / 2 / size_in), 1)
    tx_out = np.maximum(np.rint((gross - netflow) / 2 / size_out), 1)
    out = _Flows(reserve_all[1:], netflow, gross, revision, whale_in, whale_out, tx_in, tx_out)
    for arr in vars(out).values():
        arr.flags.writeable = False  # cached and shared
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 / (1.0 + np.exp(-x)), 0.02, 0.98)


@lru_cache(maxsize=8)
def mpi(seed: int) -> np.ndarray:
    _, _, z = btc_days(seed)
    out = 0.2 + _ar1(_rng(seed, "cryptoquant-mpi"), 0.15, 0.9, len(z)) + 0.5 * np.tanh(z)
    out.flags.writeable = False
    return out


def last_published(now_ms: int) -> date:
    """The newest day whose row exists at ``now_ms``: D with D+1 00:00 + delay <= now."""
    return mk.day_of_ms(now_ms - PUBLICATION_DELAY_MS) - timedelta(days=1)


def last_recluster(now_ms: int) -> date:
    """The day of the latest Tuesday 00:00 re-clustering at or before ``now_ms``."""
    today = mk.day_of_ms(now_ms)
    return today - timedelta(days=(today.weekday() - RECLUSTER_WEEKDAY) % 7)


def values(
    ep: Endpoint, seed: int, exchange: str, lo: int, hi: int, now_ms: int
) -> dict[str, np.ndarray]:
    """Each field's values for day indexes ``lo..hi`` as known at ``now_ms``."""
    days = np.arange(lo, hi + 1)
    if ep.path.endswith("/mpi"):
        return {"mpi": np.round(mpi(seed)[days], 6)}
    f = flows(seed, exchange)
    cut = mk.day_index(last_recluster(now_ms))  # days before it are revised
    if ep.path.endswith("/exchange-whale-ratio"):
        return {"exchange_whale_ratio": np.round(f.whale_in[days], 6)}
    if ep.path.endswith("/transactions-count"):
        return {"transactions_count_inflow": f.tx_in[days].astype(np.int64),
                "transactions_count_outflow": f.tx_out[days].astype(np.int64)}  # fmt: skip
    delta = f.revision[: max(cut, 0)]
    if ep.path.endswith("/reserve"):
        revised = np.concatenate([[0.0], np.cumsum(delta)])[np.minimum(days + 1, len(delta))]
        reserve = f.reserve[days] + revised
        close = np.round(np.exp(btc_days(seed)[0][days]), 2)  # the BTCUSDT spot close
        return {"reserve": np.round(reserve, 6), "reserve_usd": np.round(reserve * close, 2)}
    wide = np.arange(max(lo - 6, 0), hi + 1)  # the 7-day average reaches back 6 days
    shift = np.where(wide < cut, f.revision[wide], 0.0)
    net = f.netflow[wide] + shift
    if ep.path.endswith("/netflow"):
        return {"netflow_total": np.round(net[-len(days) :], 6)}
    side = "inflow" if ep.path.endswith("/inflow") else "outflow"
    sign = 1.0 if side == "inflow" else -1.0
    total = (f.gross[wide] + sign * net) / 2
    top10 = (f.whale_in if side == "inflow" else f.whale_out)[wide] * total
    mean = total / (f.tx_in if side == "inflow" else f.tx_out)[wide]
    ma7 = np.convolve(mean, np.ones(7))[: len(mean)] / np.minimum(np.arange(1, len(mean) + 1), 7)
    cols = {"total": total, "top10": top10, "mean": mean, "mean_ma7": ma7}
    return {f"{side}_{k}": np.round(v[-len(days) :], 6) for k, v in cols.items()}


def _status(
    code: int, description: str | None = None, headers: Mapping[str, str] | None = None
) -> SandboxResponse:
    """A refusal: the code in the HTTP status and in the envelope, no ``result``."""
    status: dict[str, Any] = {"code": code, "message": STATUS_NAMES.get(code, "error")}
    if description:
        status["description"] = description
    return SandboxResponse.json(code, {"status": status}, headers)


def _day(params: Mapping[str, str], name: str) -> date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    found = _TIME.fullmatch(raw)
    try:
        if found is None:
            raise ValueError(raw)
        day = date(int(raw[:4]), int(raw[4:6]), int(raw[6:8]))
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: expected YYYYMMDD or YYYYMMDDTHHMMSS") from None
    if found.group(2) and name == "from" and found.group(2) != "T000000":
        day += timedelta(days=1)  # a day row is in the window only if the whole day is
    return day


def _selected(ep: Endpoint, req: SandboxRequest, state: SandboxState) -> tuple[str, list[int]]:
    """(exchange, day indexes newest first) of a valid request; BadRequest otherwise."""
    params = req.params
    window = params.get("window", "day")
    if window not in ("day", "hour", "block"):
        raise BadRequest(f"window={window!r}: expected day, hour or block")
    if window != "day":
        if ep.day_only:
            raise BadRequest(f"window={window} is not supported for this indicator (day only)")
        raise BadRequest(f"window={window}: the sandbox serves day windows only")
    exchange = params.get("exchange", "") if ep.per_exchange else "all_exchange"
    if not exchange:
        raise BadRequest("exchange is required")
    if exchange not in EXCHANGES:
        raise BadRequest(f"exchange={exchange!r} is not supported")
    raw_limit = params.get("limit") or str(DEFAULT_LIMIT)
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadRequest(f"limit={raw_limit!r}: expected 1..{MAX_LIMIT}")
    first = max(_day(params, "from") or FIRST_DAY, FIRST_DAY)
    last = min(_day(params, "to") or LAST_DAY, LAST_DAY, last_published(state.now_ms()))
    if last < first:
        return exchange, []
    lo = max(mk.day_index(first), mk.day_index(last) - int(raw_limit) + 1)
    return exchange, list(range(mk.day_index(last), lo - 1, -1))


def serve(
    ep: Endpoint, req: SandboxRequest, state: SandboxState, faults: Sequence[Fault],
    message: str = "success",
) -> SandboxResponse:  # fmt: skip
    if req.method != "GET":
        return _status(405, f"method {req.method} is not allowed")
    scheme, _, token = req.headers.get("authorization", "").strip().partition(" ")
    plan = PLANS.get(token.strip()) if scheme.lower() == "bearer" else None
    if plan is None:
        return _status(401)
    _, retry_after = state.charge(BUCKET, 1, 60)
    if retry_after is not None:
        return _status(429, headers={"retry-after": str(int(retry_after) + 1)})
    if ep.professional and plan != "professional":
        return _status(403, f"{ep.path} is not included in the {plan} plan")
    try:
        exchange, days = _selected(ep, req, state)
    except BadRequest as exc:
        return _status(400, str(exc))
    holes = {mk.day_index(f.day) for f in faults if f.kind == "gap" and f.day is not None}
    days = [d for d in days if d not in holes]
    rows: list[dict[str, Any]] = []
    if days:
        cols = values(ep, state.seed, exchange, days[-1], days[0], state.now_ms())
        for d in days:
            at = d - days[-1]
            row: dict[str, Any] = {"date": (FIRST_DAY + timedelta(days=d)).isoformat()}
            row.update({k: v[at].item() for k, v in cols.items()})
            if any(f.kind == "extra_field" for f in faults):
                row["new_metric"] = 0.0
            rows.append(row)
    body = {"status": {"code": 200, "message": message},
            "result": {"window": "day", "data": apply_row_faults(rows, faults)}}  # fmt: skip
    return SandboxResponse.raw(200, json.dumps(body, separators=(",", ":")).encode())


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    headers: dict[str, str] = {}
    if fault.kind in ("429", "418"):
        if fault.retry_after_header is not None:
            headers["retry-after"] = fault.retry_after_header
        elif fault.retry_after is not None:  # CryptoQuant's Retry-After is UNCONFIRMED
            headers["retry-after"] = str(fault.retry_after)
    if fault.kind == "503":  # the CDN's page, not the API's envelope
        title = "503 Service Unavailable"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return SandboxResponse.raw(503, page.encode(), headers, "text/html")
    if fault.kind != "error200":
        return _status(int(fault.kind), headers=headers)
    code = int(fault.code) if fault.code is not None else 500
    if code == 200:  # a success whose message is not "success": deprecated data
        return serve(ENDPOINTS[req.path], req, state, (), fault.msg or "deprecated")
    status: dict[str, Any] = {"code": code, "message": fault.msg or STATUS_NAMES.get(code, "error")}
    return SandboxResponse.json(200, {"status": status}, headers)


def _register() -> None:
    for ep in ENDPOINTS.values():
        routes.register(Route("cryptoquant", ep.path, partial(serve, ep), render_fault))


_register()
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
