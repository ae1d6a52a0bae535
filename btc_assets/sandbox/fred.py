"""FRED ``/fred/series/observations`` in the sandbox, with FRED's envelope, errors and vintages.

The world: four daily series (``DTWEXBGS`` dollar index near 120, ``DGS10`` near 4 %,
``DGS2``, ``VIXCLS``), each a mean-reverting walk drawn once per (seed, series) over every
calendar day from 2000 to 2049. A weekday on which the series' calendar is closed (Federal
Reserve holidays; the NYSE's for ``VIXCLS``, a CBOE close) is served as ``"."``, weekends
not at all, as FRED does.

Vintages (ALFRED): the observation for day D is first published on the next Federal Reserve
business day (FRED publishes on the St. Louis Fed's days); a deterministic ~10 % of numeric
observations are revised once, a week later (rolled to a business day), to a different
value. The first vintage then ends the day before the revision. Nothing published after
the data clock's date (``state.now_ms()``, "today") is served, and a revision still in the
future does not end the vintage that is current today.

Real-time windows follow FRED: ``realtime_start``/``realtime_end`` default to today, and a
row is each (date, vintage) whose real-time period meets the window, its period clipped to
the window (the LIVE recording in vendor-apis.md §7 shows rows of 2023 dated 2024-06-27 to
2024-06-27 for a default request). The current vintage ends 9999-12-31 when the window does.

Errors come as HTTP 400 with ``{"error_code":400,"error_message":...}``; the api_key and
"series does not exist" messages are FRED's own, the others are worded the FRED way but
UNCONFIRMED. ``file_type`` other than ``json`` is answered in FRED's XML error shape (FRED
speaks XML unless asked for JSON; the sandbox serves JSON only). ASSUMPTION: a
``realtime_start`` after today is a 400. Limit: bucket ``fred``, 120 requests per minute
(3P-reported, vendor-apis.md §7), then HTTP 429 without ``Retry-After``.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import SANDBOX_FRED_API_KEY
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.market import day_of_ms
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState
from btc_assets.sandbox.us_calendar import is_fed_business_day, is_nyse_session

PATH = "/fred/series/observations"
BUCKET = "fred"
DEFAULT_LIMITS = {BUCKET: 120}  # requests per minute
MAX_LIMIT = 100_000
WORLD_START, WORLD_END = date(2000, 1, 1), date(2049, 12, 31)
OPEN_END = date(9999, 12, 31)
DEFAULT_OBS_START = date(1600, 1, 1)
REVISION_SHARE = 0.10
REVISION_LAG = timedelta(days=7)
_DOCS = "Read https://fred.stlouisfed.org/docs/api/api_key.html for more information."
_KEY_SHAPE = re.compile(r"[a-z0-9]{32}")
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class SeriesSpec:
    """One synthetic series: an AR(1) around ``level`` (in logs when ``log``)."""

    first: date  # the first observation FRED has
    level: float
    phi: float  # persistence per calendar day
    sd: float  # daily shock (log points, or the series' units)
    log: bool
    floor: float
    decimals: int
    open_on: Callable[[date], bool]  # weekdays with a value (else ".")


SERIES: dict[str, SeriesSpec] = {
    "DTWEXBGS": SeriesSpec(date(2006, 1, 2), 120.0, 0.999, 0.0025, True, 50.0, 4,
                           is_fed_business_day),
    "DGS10": SeriesSpec(date(2000, 1, 3), 4.0, 0.998, 0.05, False, 0.3, 2, is_fed_business_day),
    "DGS2": SeriesSpec(date(2000, 1, 3), 4.2, 0.998, 0.055, False, 0.05, 2, is_fed_business_day),
    "VIXCLS": SeriesSpec(date(2000, 1, 3), 17.0, 0.97, 0.07, True, 9.0, 2, is_nyse_session),
}  # fmt: skip


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class World:
    """Per calendar day from WORLD_START: the first value, whether it is revised, and to what."""

    values: np.ndarray
    revised: np.ndarray
    revised_values: np.ndarray


@lru_cache(maxsize=32)
def world(seed: int, series_id: str) -> World:
    spec = SERIES[series_id]
    n = (WORLD_END - WORLD_START).days + 1
    rng = np.random.default_rng([seed, zlib.crc32(series_id.encode()), 0xF2ED])
    shocks = rng.normal(0.0, spec.sd, n)
    mean = np.log(spec.level) if spec.log else spec.level
    path = np.empty(n)
    x = mean
    for i, e in enumerate(shocks.tolist()):  # 18k steps, once per (seed, series)
        x = mean + spec.phi * (x - mean) + e
        path[i] = x
    values = np.maximum(np.exp(path) if spec.log else path, spec.floor).round(spec.decimals)
    revised = rng.random(n) < REVISION_SHARE
    # A revision moves the value by 1..5 units of its last printed digit, never by zero.
    step = rng.integers(1, 6, n) * np.where(rng.random(n) < 0.5, -1, 1) * 10.0**-spec.decimals
    return World(values, revised, (values + step).round(spec.decimals))


def next_business_day(day: date) -> date:
    day += timedelta(days=1)
    while not is_fed_business_day(day):
        day += timedelta(days=1)
    return day


def published(day: date) -> date:
    """The vintage date of the observation for ``day``."""
    return next_business_day(day)


def revision_date(day: date) -> date:
    """When a revised observation's second vintage is published."""
    rolled = published(day) + REVISION_LAG
    return rolled if is_fed_business_day(rolled) else next_business_day(rolled)


@dataclass(frozen=True)
class Vintage:
    date: date
    start: date  # realtime_start
    end: date  # realtime_end (OPEN_END: still current)
    value: str


def vintages(seed: int, series_id: str, day: date, today: date) -> list[Vintage]:
    """Every vintage of ``day``'s observation known on ``today`` (none on weekends)."""
    spec = SERIES[series_id]
    if day.weekday() >= 5 or not spec.first <= day <= WORLD_END or published(day) > today:
        return []
    first = published(day)
    if not spec.open_on(day):
        return [Vintage(day, first, OPEN_END, ".")]
    w = world(seed, series_id)
    i = (day - WORLD_START).days
    text = f"{w.values[i]:.{spec.decimals}f}"
    revised_on = revision_date(day) if w.revised[i] else None
    if revised_on is None or revised_on > today:  # the future is unknown
        return [Vintage(day, first, OPEN_END, text)]
    later = f"{w.revised_values[i]:.{spec.decimals}f}"
    return [
        Vintage(day, first, revised_on - timedelta(days=1), text),
        Vintage(day, revised_on, OPEN_END, later),
    ]


def _error(status: int, message: str) -> SandboxResponse:
    return SandboxResponse.json(status, {"error_code": status, "error_message": message})


def _xml_error(message: str) -> SandboxResponse:
    body = f'<?xml version="1.0" encoding="utf-8" ?>\n<error code="400" message="{message}"/>\n'
    return SandboxResponse.raw(400, body.encode(), content_type="text/xml; charset=UTF-8")


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    """HTTP faults in FRED's shape. FRED never sends an error inside an HTTP 200, but
    ``error200`` does exactly that (FRED's error body, status 200): a drifted front end."""
    if fault.kind in ("429", "418"):
        response = _error(int(fault.kind), "Too Many Requests.  Exceeded Rate Limit")
        after = fault.retry_after_header or (
            None if fault.retry_after is None else str(fault.retry_after)
        )
        if after is not None:
            response.headers["retry-after"] = after
        return response
    if fault.kind == "451":
        return _error(451, "Unavailable For Legal Reasons.")
    if fault.kind == "500":
        return _error(500, "Internal Server Error.")
    if fault.kind == "503":  # the load balancer's page, not the API's JSON
        page = b"<html><head><title>503 Service Unavailable</title></head><body></body></html>"
        return SandboxResponse.raw(503, page, content_type="text/html")
    code = fault.code if fault.code is not None else 400
    payload = {"error_code": code, "error_message": fault.msg or "Bad Request."}
    return SandboxResponse.json(200, payload)


def _date(params: Mapping[str, str], name: str, default: date) -> date:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        if not _DATE_SHAPE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"Bad Request.  Variable {name} is not a valid date in the format YYYY-MM-DD."
        ) from None


def _whole(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise BadRequest(f"Bad Request.  Variable {name} is not between {lo} and {hi}.")
    return int(raw)


# Parameters the sandbox serves only at their default; anything else is refused rather
# than silently answered in the wrong units or frequency.
_DEFAULT_ONLY = {"units": "lin", "frequency": "d", "output_type": "1"}


def _check_key(params: Mapping[str, str]) -> None:
    key = params.get("api_key")
    if not key:
        raise BadRequest(f"Bad Request.  Variable api_key is not set.  {_DOCS}")
    if not _KEY_SHAPE.fullmatch(key):
        raise BadRequest(
            "Bad Request.  The value for variable api_key is not a 32 character alpha-numeric "
            f"lower-case string.  {_DOCS}"
        )
    if key != SANDBOX_FRED_API_KEY:
        raise BadRequest(
            f"Bad Request.  The value for variable api_key is not registered.  {_DOCS}"
        )


def _body(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> dict[str, object]:
    params = req.params
    series_id = params.get("series_id", "")
    if not series_id:
        raise BadRequest("Bad Request.  Variable series_id is not set.")
    for name, only in _DEFAULT_ONLY.items():
        if params.get(name, only) != only:
            raise BadRequest(f"Bad Request.  The sandbox serves {name}={only} only.")
    if params.get("vintage_dates"):
        raise BadRequest("Bad Request.  The sandbox does not serve vintage_dates.")
    if series_id not in SERIES:
        raise BadRequest("Bad Request.  The series does not exist.")
    today = day_of_ms(state.now_ms())
    obs_start = _date(params, "observation_start", DEFAULT_OBS_START)
    obs_end = _date(params, "observation_end", OPEN_END)
    rt_start = _date(params, "realtime_start", today)
    rt_end = _date(params, "realtime_end", today)
    if obs_end < obs_start:
        raise BadRequest(
            "Bad Request.  Variable observation_end can not be before variable observation_start."
        )
    if rt_start > today:
        raise BadRequest("Bad Request.  Variable realtime_start can not be after today's date.")
    if rt_end < rt_start:
        raise BadRequest(
            "Bad Request.  Variable realtime_end can not be before variable realtime_start."
        )
    limit = _whole(params, "limit", MAX_LIMIT, 1, MAX_LIMIT)
    offset = _whole(params, "offset", 0, 0, 10**12)
    order = params.get("sort_order", "asc")
    if order not in ("asc", "desc"):
        raise BadRequest(
            "Bad Request.  Variable sort_order is not one of the values: 'asc', 'desc'."
        )
    holes = {f.day for f in faults if f.kind == "gap"}  # the vendor lost those days
    rows = []
    day = max(obs_start, WORLD_START)
    last = min(obs_end, today)
    while day <= last:
        for v in [] if day in holes else vintages(state.seed, series_id, day, today):
            if v.start <= rt_end and v.end >= rt_start:
                rows.append({"realtime_start": max(v.start, rt_start).isoformat(),
                             "realtime_end": min(v.end, rt_end).isoformat(),
                             "date": day.isoformat(), "value": v.value})  # fmt: skip
        day += timedelta(days=1)
    if order == "desc":
        rows.reverse()
    page = apply_row_faults(rows[offset : offset + limit], faults)
    if any(f.kind == "extra_field" for f in faults):
        page = [{**row, "footnote": ""} for row in page]
    return {
        "realtime_start": rt_start.isoformat(), "realtime_end": rt_end.isoformat(),
        "observation_start": obs_start.isoformat(), "observation_end": obs_end.isoformat(),
        "units": "lin", "output_type": 1, "file_type": "json", "order_by": "observation_date",
        "sort_order": order, "count": len(rows), "offset": offset, "limit": limit,
        "observations": page,
    }  # fmt: skip


def handle(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    file_type = req.params.get("file_type", "xml")
    if file_type == "xml" or not file_type:
        return _xml_error("Bad Request.  The sandbox serves file_type=json only.")
    if file_type != "json":
        return _xml_error("Bad Request.  Variable file_type is not one of the values: xml, json.")
    try:
        _check_key(req.params)
    except BadRequest as exc:
        return _error(400, str(exc))
    _, retry_after = state.charge(BUCKET, 1, 60)
    if retry_after is not None:
        return _error(429, "Too Many Requests.  Exceeded Rate Limit")
    try:
        body = _body(req, state, faults)
    except BadRequest as exc:
        return _error(400, str(exc))
    return SandboxResponse.raw(200, json.dumps(body, separators=(",", ":")).encode())


routes.register(Route("fred", PATH, handle, render_fault, symbol_param="series_id"))
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
