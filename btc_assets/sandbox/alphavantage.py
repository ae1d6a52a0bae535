"""Alpha Vantage's ``GET /query`` in the sandbox, in Alpha Vantage's own shapes.

``function=TIME_SERIES_DAILY&symbol=SPY`` and ``function=FX_DAILY&from_symbol=EUR&
to_symbol=USD`` answer ``"Meta Data"`` (keys as vendor-apis.md §6) and the series keyed by
date, newest first, values as strings: 4 decimals on equities with an integer volume, 5 on
FX as in a 2026 capture of the real API. Series come from ``alphavantage_market``: NYSE
sessions for equities (SPY, QQQ), weekdays for FX (EUR/USD, GBP/USD, USD/JPY), from the
market epoch (2017-01-01) on, so ``outputsize=full`` starts there (the real SPY history
starts in 1999). ``compact`` (the default) is the latest 100 points.

Nothing after the data clock (``state.now_ms()``): a session is served once its bar is
final, an equity session at 21:00 UTC (16:00 US/Eastern is 21:00 UTC in winter and 20:00
in summer: a fixed, conservative stand-in for the close, ignoring half days), an FX day at
24:00 UTC.

Every answer is HTTP 200, errors included (the texts of §6 and public captures):

- ``apikey`` missing or unknown: ``Error Message`` "the parameter apikey is invalid or
  missing..."; ``apikey=demo``: the demo key's ``Information``;
- the free key (``SANDBOX_ALPHAVANTAGE_KEY``): 25 requests per UTC day (bucket
  ``alphavantage-day``, on ``state.clock``) and past it the exact daily ``Information`` of
  §6; ``outputsize=full`` on TIME_SERIES_DAILY and the premium functions answer the premium
  ``Information``. The premium key (``SANDBOX_ALPHAVANTAGE_PREMIUM_KEY``) has neither limit
  (the premium functions are not modelled: with it they answer "Invalid API call").
- ASSUMPTION (the current per-minute rules are unpublished): 5 requests per clock minute on
  the free key and 75 on the premium one (buckets ``alphavantage-minute`` and
  ``alphavantage-premium-minute``), past which the older ``Note`` about call frequency is
  answered; a refused request does not count against the day.
- unknown symbol or pair, or a missing one: ``Error Message`` "Invalid API call..."; an
  unknown function: ``Error Message`` "This API function (X) does not exist.". The key
  texts and these two are from public captures of the real API, not from the reference.
- ``datatype=csv`` is not modelled: the answer is JSON whatever it asks.

Faults (``sandbox/faults.py``): ``error200`` answers ``{code: msg}`` with ``code`` one of
``Note``/``Information``/``Error Message`` (default: the call-frequency ``Note``); HTTP
faults answer the front end's page; ``gap``/``bad_ohlc`` drop a ``day``'s row or swap its
high and low; ``empty``/``duplicates``/``out_of_order`` act on the series' rows,
``extra_field`` adds a field to every row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from btc_assets.sandbox import alphavantage_market as avm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import (
    SANDBOX_ALPHAVANTAGE_KEY,
    SANDBOX_ALPHAVANTAGE_PREMIUM_KEY,
)
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState

PATH = "/query"
DAY_BUCKET, MINUTE_BUCKET = "alphavantage-day", "alphavantage-minute"
PREMIUM_MINUTE_BUCKET = "alphavantage-premium-minute"
DEFAULT_LIMITS = {DAY_BUCKET: 25, MINUTE_BUCKET: 5, PREMIUM_MINUTE_BUCKET: 75}
COMPACT = 100
# When a day's bar is final, hours after its 00:00 UTC (see the module docstring).
EQUITY_CLOSE_HOURS, FX_CLOSE_HOURS = 21, 24
PREMIUM_FUNCTIONS = frozenset({"TIME_SERIES_DAILY_ADJUSTED", "TIME_SERIES_INTRADAY", "FX_INTRADAY"})
FREE_FUNCTIONS = frozenset({"TIME_SERIES_DAILY", "FX_DAILY"})

_THANKS = "Thank you for using Alpha Vantage! "
_PREMIUM_URL = "https://www.alphavantage.co/premium/"
DAILY_LIMIT_TEXT = (
    _THANKS + "Our standard API rate limit is {limit} requests per day. Please subscribe to any "
    f"of the premium plans at {_PREMIUM_URL} to instantly remove all daily rate limits."
)
CALL_FREQUENCY_TEXT = (
    _THANKS + "Our standard API call frequency is 5 calls per minute and 500 calls per day. "
    f"Please visit {_PREMIUM_URL} if you would like to target a higher API call frequency."
)
PREMIUM_FULL_TEXT = (
    _THANKS + "The outputsize=full parameter value is a premium feature for the "
    "TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
    f"{_PREMIUM_URL} to instantly unlock all premium features"
)
PREMIUM_ENDPOINT_TEXT = (
    _THANKS + "This is a premium endpoint. You may subscribe to any of the premium plans at "
    f"{_PREMIUM_URL} to instantly unlock all premium endpoints"
)
_KEY_URL = "https://www.alphavantage.co/support/#api-key"
BAD_KEY_TEXT = (
    f"the parameter apikey is invalid or missing. Please claim your free API key on "
    f"({_KEY_URL}). It should take less than 20 seconds."
)
DEMO_TEXT = (
    "The **demo** API key is for demo purposes only. Please claim your free API key at "
    f"({_KEY_URL}) to explore our full API offerings. It takes fewer than 20 seconds."
)
INVALID_CALL_TEXT = (
    "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for {function}."
)
MESSAGE_KEYS = ("Note", "Information", "Error Message")


def _answer(key: str, text: str, headers: Mapping[str, str] | None = None) -> SandboxResponse:
    # Pretty-printed like the real API (4-space indent).
    return SandboxResponse.raw(200, json.dumps({key: text}, indent=4).encode(), headers)


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    if fault.kind == "error200":
        key = str(fault.code) if fault.code is not None else "Note"
        if key not in MESSAGE_KEYS:
            raise ValueError(f"an Alpha Vantage error200 fault's code is one of {MESSAGE_KEYS}")
        return _answer(key, fault.msg or CALL_FREQUENCY_TEXT)
    headers: dict[str, str] = {}
    if fault.kind in ("429", "418"):
        if fault.retry_after_header is not None:
            headers["retry-after"] = fault.retry_after_header
        elif fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
    titles = {"429": "Too Many Requests", "418": "I'm a teapot", "451": "Unavailable For Legal "
              "Reasons", "500": "Internal Server Error", "503": "Service Unavailable"}  # fmt: skip
    title = f"{fault.kind} {titles.get(fault.kind, 'Error')}"
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return SandboxResponse.raw(int(fault.kind), page.encode(), headers, "text/html")


class _Refusal(Exception):
    def __init__(self, key: str, text: str) -> None:
        super().__init__(text)
        self.key, self.text = key, text


def _check_key(req: SandboxRequest, state: SandboxState) -> bool:
    """Is the key a premium one? Refuses a missing, unknown or demo key, and the calls past
    the key's per-minute and daily limits (in that order)."""
    key = req.params.get("apikey", "").strip()
    if key == "demo":
        raise _Refusal("Information", DEMO_TEXT)
    if key not in (SANDBOX_ALPHAVANTAGE_KEY, SANDBOX_ALPHAVANTAGE_PREMIUM_KEY):
        raise _Refusal("Error Message", BAD_KEY_TEXT)
    premium = key == SANDBOX_ALPHAVANTAGE_PREMIUM_KEY
    _, wait = state.charge(PREMIUM_MINUTE_BUCKET if premium else MINUTE_BUCKET, 1, 60)
    if wait is not None:
        raise _Refusal("Note", CALL_FREQUENCY_TEXT)
    if not premium:
        _, wait = state.charge(DAY_BUCKET, 1, 86_400)  # windows of the UTC day
        if wait is not None:
            limit = state.limits.get(DAY_BUCKET, DEFAULT_LIMITS[DAY_BUCKET])
            raise _Refusal("Information", DAILY_LIMIT_TEXT.format(limit=limit))
    return premium


def _series(
    req: SandboxRequest, state: SandboxState, premium: bool
) -> tuple[dict[str, str], str, avm.DailyBars, int, int]:
    """(Meta Data, series key, bars, decimals, close hour) of a valid request."""
    params, function = req.params, req.params.get("function", "")
    if function in PREMIUM_FUNCTIONS and not premium:
        raise _Refusal("Information", PREMIUM_ENDPOINT_TEXT)
    if function not in FREE_FUNCTIONS:
        if function in PREMIUM_FUNCTIONS:  # with the premium key: not modelled
            raise _Refusal("Error Message", INVALID_CALL_TEXT.format(function=function))
        raise _Refusal("Error Message", f"This API function ({function}) does not exist.")
    invalid = _Refusal("Error Message", INVALID_CALL_TEXT.format(function=function))
    full = params.get("outputsize", "compact") == "full"
    size = "Full size" if full else "Compact"
    if function == "TIME_SERIES_DAILY":
        symbol = params.get("symbol", "").upper()
        if symbol not in avm.EQUITIES:
            raise invalid
        if full and not premium:
            raise _Refusal("Information", PREMIUM_FULL_TEXT)
        meta = {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": params["symbol"], "3. Last Refreshed": "", "4. Output Size": size,
                "5. Time Zone": "US/Eastern"}  # fmt: skip
        bars = avm.equity_bars(state.seed, symbol)
        return meta, "Time Series (Daily)", bars, 4, EQUITY_CLOSE_HOURS
    pair = (params.get("from_symbol", "").upper(), params.get("to_symbol", "").upper())
    if pair not in avm.FX_PAIRS:
        raise invalid
    meta = {"1. Information": "Forex Daily Prices (open, high, low, close)",
            "2. From Symbol": params["from_symbol"], "3. To Symbol": params["to_symbol"],
            "4. Output Size": size, "5. Last Refreshed": "", "6. Time Zone": "UTC"}  # fmt: skip
    return meta, "Time Series FX (Daily)", avm.fx_bars(state.seed, pair), 5, FX_CLOSE_HOURS


def _rows(
    bars: avm.DailyBars, last_day: int, full: bool, decimals: int, faults: Sequence[Fault]
) -> list[tuple[str, dict[str, str]]]:
    """(date, fields) of the served days, newest first, the data faults applied."""
    served = bars.served(last_day)
    start = served.start if full else max(served.stop - COMPACT, 0)
    days = {f.day for f in faults if f.kind == "gap"}
    swapped = {f.day for f in faults if f.kind == "bad_ohlc"}
    extra = any(f.kind == "extra_field" for f in faults)
    rows: list[tuple[str, dict[str, str]]] = []
    for i in range(served.stop - 1, start - 1, -1):
        day = avm.date_of(bars.day[i])
        if day in days:
            continue
        high, low = float(bars.high[i]), float(bars.low[i])
        if day in swapped:
            high, low = low, high  # a bad print
        fields = {"1. open": float(bars.open[i]), "2. high": high, "3. low": low,
                  "4. close": float(bars.close[i])}  # fmt: skip
        row = {k: f"{v:.{decimals}f}" for k, v in fields.items()}
        if bars.volume is not None:
            row["5. volume"] = f"{bars.volume[i]:.0f}"
        if extra:
            row["6. extra"] = "0.0000"
        rows.append((day.isoformat(), row))
    return apply_row_faults(rows, faults)


def _body(meta: dict[str, str], series_key: str, rows: list[tuple[str, dict[str, str]]]) -> str:
    """The answer as the real API prints it: 4-space indent, keys in order. Built by hand
    so a ``duplicates`` fault can repeat a date key, as a JSON object never would."""

    def obj(pairs: list[tuple[str, str]], indent: int) -> str:
        pad = " " * indent
        inner = ",\n".join(f"{pad}    {json.dumps(k)}: {v}" for k, v in pairs)
        return f"{{\n{inner}\n{pad}}}" if pairs else "{}"

    meta_text = obj([(k, json.dumps(v)) for k, v in meta.items()], 4)
    series = obj([(d, obj([(k, json.dumps(v)) for k, v in r.items()], 8)) for d, r in rows], 4)
    return obj([("Meta Data", meta_text), (series_key, series)], 0)


def handle(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    try:
        premium = _check_key(req, state)
        meta, series_key, bars, decimals, close_hours = _series(req, state, premium)
    except _Refusal as refusal:
        return _answer(refusal.key, refusal.text)
    # The last day whose bar is final by the data clock (a day index from the epoch).
    last_day = (state.now_ms() - mk.EPOCH_MS - close_hours * 3_600_000) // mk.DAY_MS
    full = req.params.get("outputsize", "compact") == "full"
    rows = _rows(bars, last_day, full, decimals, faults)
    newest = bars.served(last_day).stop - 1
    meta[next(k for k in meta if k.endswith("Last Refreshed"))] = (
        avm.date_of(bars.day[newest]).isoformat() if newest >= 0 else ""
    )
    return SandboxResponse.raw(200, _body(meta, series_key, rows).encode())


routes.register(Route("alphavantage", PATH, handle, render_fault, symbol_param="symbol"))
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
