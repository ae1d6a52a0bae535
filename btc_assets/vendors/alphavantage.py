"""Alpha Vantage daily series (an equity ETF such as SPY, an FX pair) as contract frames.

A plain client (no Dagster, no settings). ``daily("SPY")`` asks ``TIME_SERIES_DAILY`` and
``fx_daily("EUR", "USD")`` ``FX_DAILY``, both ``GET /query`` with the key in the ``apikey``
query parameter (masked in every log line and error by the HTTP session). Each returns the
frame of ALPHAVANTAGE_DAILY_SCHEMA, oldest first, without the session that has not closed
yet (``now_ms``; see ``alphavantage_parse.CLOSE_UTC_HOUR``).

Every answer is HTTP 200, errors included; an answer is data only if it holds the expected
series key. The others, by their text (vendor-apis.md §6):

- ``Note``/``Information`` about call frequency (per minute or "more sparingly"): retried in
  the request's one retry loop, waiting for the next minute window;
- ``Note``/``Information`` naming the daily quota ("requests per day"):
  :class:`AlphaVantageDailyLimit`, not retried (every retry would be refused and counted
  until the quota renews), and the day's budget is marked spent;
- ``Information`` naming a premium feature or endpoint: :class:`AlphaVantagePremiumRequired`
  (a :class:`VendorRefused`), naming the function and parameter;
- ``Information`` about the demo key: :class:`AlphaVantageDemoKey`, a config error;
- ``Error Message`` about the apikey: :class:`AlphaVantageKeyInvalid`; any other
  ``Error Message``: :class:`AlphaVantageSymbolError` (a :class:`VendorRefused`) naming the
  symbol.

The daily request budget (:class:`~btc_assets.vendors.daily_budget.DailyBudget`, 25 a day by
default, in memory unless given one with a file) is charged for every attempt on the wire and
refuses the request that would pass it, before anything is sent
(:class:`AlphaVantageBudgetSpent`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn

import httpx
import polars as pl

from btc_assets.clock import epoch_ms
from btc_assets.vendors.alphavantage_parse import (
    QUERY,
    VENDOR,
    meta_value,
    parse_daily,
    session_closed_ms,
    time_zone,
)
from btc_assets.vendors.daily_budget import DailyBudget, DailyBudgetSpent
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
)
from btc_assets.vendors.hosts import LIVE_ALPHAVANTAGE_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.retry import Transient
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

KEY_SETTING = "ALPHAVANTAGE_API_KEY"
FREE_DAILY_LIMIT = 25  # requests per day on a free key (2024 on; formerly 500)
DAILY, FX_DAILY = "TIME_SERIES_DAILY", "FX_DAILY"
SERIES_KEYS = {DAILY: "Time Series (Daily)", FX_DAILY: "Time Series FX (Daily)"}
DEFAULT_ZONES = {DAILY: "US/Eastern", FX_DAILY: "UTC"}  # if the Meta Data names none
MESSAGE_KEYS = ("Error Message", "Note", "Information")
# Throttling wordings, retried: the older Note ("Our standard API call frequency is 5 calls
# per minute and 500 calls per day") and the burst notice ("Please consider spreading out your
# free API requests more sparingly (1 request per second)", in public captures since 2024, not
# in the reference). Both also name a daily figure, so they are recognised first.
_THROTTLE_WORDS = ("call frequency", "sparingly", "per minute", "per second")
_RATE_WORDS = ("rate limit", "requests per day", "calls per day")
_UNLIMITED = 1 << 40  # requests per minute when the caller sets no spacing


class AlphaVantageKeyMissing(VendorError, VendorConfigError):
    """No API key configured: raised before any request is sent."""


class AlphaVantageKeyInvalid(VendorError):
    """Alpha Vantage refused the key ("the parameter apikey is invalid or missing")."""


class AlphaVantageDemoKey(VendorError, VendorConfigError):
    """The configured key is the public demo key, which serves only the documented examples."""


class AlphaVantageDailyLimit(VendorRateLimited):
    """The key's requests for the day are spent: Alpha Vantage said so; not retried today."""


class AlphaVantageBudgetSpent(AlphaVantageDailyLimit):
    """The client's own daily budget is spent: refused before anything was sent."""


class AlphaVantagePremiumRequired(VendorRefused):
    """The key's plan does not serve this function or parameter (a premium feature)."""


class AlphaVantageSymbolError(VendorRefused):
    """``Error Message``: Alpha Vantage does not serve this symbol (or call) for the function."""


def _message(body: Any) -> tuple[str, str] | None:
    """(key, text) of an error answer's message, if it has one of the three keys."""
    if not isinstance(body, dict):
        return None
    return next(((k, str(body[k])) for k in MESSAGE_KEYS if k in body), None)


def _error_body(body: Any) -> bool:
    """An answer without any series is an error (success needs the expected series key,
    which the client checks, since the session does not know the function)."""
    return not isinstance(body, dict) or not any(str(k).startswith("Time Series") for k in body)


def _subject(params: Mapping[str, Any]) -> str:
    if params.get("function") == FX_DAILY:
        return f"from_symbol={params.get('from_symbol')}, to_symbol={params.get('to_symbol')}"
    return f"symbol={params.get('symbol')}"


def _classify(key: str, text: str, params: Mapping[str, Any]) -> tuple[type[VendorError], str]:
    """The error class and hint of a message answer that is not worth retrying."""
    lowered, function = text.lower(), params.get("function", "?")
    if "demo" in lowered and "api key" in lowered:
        return AlphaVantageDemoKey, (
            f"{KEY_SETTING} holds Alpha Vantage's public example key, which answers only the "
            "documentation's sample queries; claim a free key at "
            "alphavantage.co/support/#api-key and set it there"
        )
    if "apikey" in lowered and "invalid" in lowered:  # seen as Error Message and Information
        return AlphaVantageKeyInvalid, (
            f"Alpha Vantage did not accept the key sent as apikey (not shown); check {KEY_SETTING}"
        )
    if any(w in lowered for w in _RATE_WORDS):
        return AlphaVantageDailyLimit, (
            f"the daily request quota of the plan behind {KEY_SETTING} is spent (free keys: "
            f"{FREE_DAILY_LIMIT} a day); not retried today, since every retry would be refused "
            "and counted: run again once the quota renews, or use a premium key"
        )
    if "premium" in lowered:
        full = params.get("outputsize") == "full" and "outputsize" in lowered
        what = f"outputsize=full on {function}" if full else f"function={function}"
        fix = "use outputsize=compact (the latest 100 sessions)" if full else "use a free function"
        return AlphaVantagePremiumRequired, (
            f"{what} is a premium feature the plan behind {KEY_SETTING} does not include; "
            f"{fix} or a premium key"
        )
    if key == "Error Message":
        return AlphaVantageSymbolError, (
            f"Alpha Vantage does not serve {_subject(params)} with function={function}; check "
            "the symbol (indices such as SPX or DXY are not served: use an ETF like SPY or an "
            "FX pair)"
        )
    return VendorError, ""


class _AlphaVantageHttp(VendorHttpClient):
    """The shared session, plus Alpha Vantage's errors inside HTTP 200.

    Its answers carry no code, only a text, so the session's ``transient_codes`` cannot tell
    a per-minute throttle (worth retrying) from a spent daily quota (not). This reads the
    text, before redaction hides words that equal the key (``apikey=demo``), and raises the
    retryable :class:`Transient` or the final error itself.
    """

    def raise_failure(
        self,
        response: httpx.Response,
        body: Any,
        code: int | str | None,
        message: str | None,
        path: str,
        params: Mapping[str, Any],
        method: str,
    ) -> NoReturn:
        found = _message(body) if response.status_code == 200 else None
        if found is None:
            super().raise_failure(response, body, code, message, path, params, method)
        key, text = found
        shown = f"{key}: {text}"
        lowered = text.lower()
        if key != "Error Message" and any(w in lowered for w in _THROTTLE_WORDS):
            raise Transient(
                f"HTTP 200 {self.redact(shown)}", VendorRateLimited, status=200, code=None,
                message=shown, details=None,
            )  # fmt: skip
        cls, hint = _classify(key, text, params)
        raise self._error(cls, path, params, method, status=200, message=shown, hint=hint)


class AlphaVantageClient(SessionClient):
    """Alpha Vantage (``www.alphavantage.co``) ``TIME_SERIES_DAILY`` and ``FX_DAILY``.

    ``outputsize``: ``compact`` (the latest 100 sessions, free) or ``full`` (all history; a
    premium feature on ``TIME_SERIES_DAILY``). ``daily_budget``: the day's request budget
    (None: an in-memory one of 25 on ``clock``; pass one with a file to share the count
    between processes). ``requests_per_minute`` spaces requests (None: no spacing); a
    call-frequency answer waits for the next minute window either way. ``now_ms`` is the
    data clock: a session whose bar is not final by then is dropped. ``max_wait_seconds``
    bounds one request's retries (wire time plus waits): at the default 120 s, a throttle
    that persists is given one or two more minute windows, each attempt counted against
    the day's budget.
    """

    def __init__(
        self,
        base_url: str = LIVE_ALPHAVANTAGE_URL,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        now_ms: Callable[[], int] = epoch_ms,
        daily_budget: DailyBudget | None = None,
        outputsize: Literal["compact", "full"] = "compact",
        requests_per_minute: int | None = 5,
        rng: random.Random | None = None,
        budget_store: WindowStore | None = None,
    ) -> None:
        if outputsize not in ("compact", "full"):
            raise VendorConfigError(f"alphavantage: outputsize={outputsize!r}; expected "
                                    "'compact' or 'full'")  # fmt: skip
        self.api_key = (api_key or "").strip() or None
        self.outputsize = outputsize
        self.now_ms = now_ms
        if daily_budget is None:
            daily_budget = DailyBudget(FREE_DAILY_LIMIT, clock=clock, name="alphavantage")
        self.daily_budget = daily_budget
        # Kept without a limit too: its window is what a call-frequency answer waits for.
        self.minute_budget = WeightBudget(
            requests_per_minute or _UNLIMITED, 60, safety=1.0, clock=clock, sleep=sleep,
            name=budget_name(base_url, "requests"), store=budget_store,
        )  # fmt: skip
        self.http = _AlphaVantageHttp(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap, max_wait_seconds=max_wait_seconds,
            headers={"accept": "application/json"}, secret_params=("apikey",),
            limiter=self.minute_budget, sleep=sleep, clock=clock,
            base_url_setting="ALPHAVANTAGE_BASE_URL", error_body=_error_body,
            wait_window_on_rate_limit=True, rng=rng,
        )  # fmt: skip

    def daily(self, symbol: str) -> pl.DataFrame:
        """``TIME_SERIES_DAILY`` of an equity or ETF (``SPY`` as the S&P 500 proxy): one row
        per closed session, dates in US/Eastern, volume in shares."""
        symbol = symbol.strip().upper()
        if not symbol:
            raise ValueError("symbol is empty: name an equity or ETF, e.g. 'SPY'")
        params = {"function": DAILY, "symbol": symbol, "outputsize": self.outputsize}
        body = self._query(params)
        served = meta_value(body, "Symbol")
        if served is not None and served.upper() != symbol:
            self._drift(params, f"Meta Data names symbol {served!r}, asked for {symbol!r}")
        return self._frame(body, params, symbol, volume=True)

    def fx_daily(self, from_symbol: str, to_symbol: str) -> pl.DataFrame:
        """``FX_DAILY`` of a currency pair (``EUR``/``USD`` as a dollar proxy): one row per
        closed UTC day (weekdays), ``symbol`` the pair joined (``EURUSD``), volume null."""
        base, quote = from_symbol.strip().upper(), to_symbol.strip().upper()
        if not base or not quote:
            raise ValueError("from_symbol and to_symbol are both needed, e.g. 'EUR' and 'USD'")
        params = {"function": FX_DAILY, "from_symbol": base, "to_symbol": quote,
                  "outputsize": self.outputsize}  # fmt: skip
        body = self._query(params)
        served = (meta_value(body, "From Symbol") or base) + (
            meta_value(body, "To Symbol") or quote
        )
        if served.upper() != base + quote:
            self._drift(params, f"Meta Data names the pair {served!r}, asked for {base + quote!r}")
        return self._frame(body, params, base + quote, volume=False)

    # --- one request --------------------------------------------------------------------

    def _query(self, params: dict[str, str]) -> dict[str, Any]:
        """One ``GET /query`` under the daily budget; the answer holds the expected series."""
        sent = {**params, "apikey": self.api_key or ""}
        shown = self.http.shown_params(sent)
        if self.api_key is None:
            raise AlphaVantageKeyMissing(
                VENDOR, QUERY, shown, message="no API key configured",
                hint=f"set {KEY_SETTING} (sent as the apikey query parameter; a free key "
                "serves 25 requests a day)",
            )  # fmt: skip
        try:
            self.daily_budget.check()  # before the minute limiter could make us wait
            body = self.http.get_json(QUERY, sent, budgets=[(self.daily_budget, 1)], expect=dict)
        except DailyBudgetSpent as spent:
            raise AlphaVantageBudgetSpent(
                VENDOR, QUERY, shown, message=str(spent),
                hint=f"the plan behind {KEY_SETTING} allows {spent.limit} requests a day; "
                "run again after 00:00 UTC or raise the budget for a premium key",
            ) from None  # fmt: skip
        except AlphaVantageDailyLimit:
            self.daily_budget.spend_all()  # the vendor knows better than our count
            raise
        series_key = SERIES_KEYS[params["function"]]
        if series_key not in body:
            self._drift(params, f"the answer lacks {series_key!r}; keys {sorted(body)}")
        return body

    def _frame(
        self, body: dict[str, Any], params: Mapping[str, str], symbol: str, *, volume: bool
    ) -> pl.DataFrame:
        function = params["function"]
        zone = time_zone(body, DEFAULT_ZONES[function])
        shown = self.http.shown_params(params)
        frame = parse_daily(body, SERIES_KEYS[function], symbol, zone, shown, volume=volume)
        now = self.now_ms()
        closed = [session_closed_ms(d, zone) <= now for d in frame["date"].to_list()]
        if not all(closed):
            # The vendor may serve today's bar while the session runs; it is not final.
            log.info("%s %s: dropping %d session(s) not closed yet", VENDOR,
                     self.http.describe(QUERY, params), closed.count(False))  # fmt: skip
            frame = frame.filter(pl.Series(closed))
        return frame

    def _drift(self, params: Mapping[str, str], message: str) -> NoReturn:
        raise VendorResponseError(
            VENDOR, QUERY, self.http.shown_params(params), status=200, message=message
        )
