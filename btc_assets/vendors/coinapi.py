"""CoinAPI market data (OHLCV history and symbol metrics) as contract frames.

A plain client (no Dagster, no settings). Bars are labelled by ``time_period_end`` (``ts``,
the close: the project's right-closed convention) and kept when ``ts`` is in ``(start,
end]`` and the period has closed (``ts <= now``). Only periods that tile a UTC day are
supported (``1SEC`` .. ``1DAY``): their boundaries are multiples of the period from the
epoch, so a window can be cut into requests exactly.

Paging follows CoinAPI's forward rule: ``time_start`` = the previous page's newest
``time_period_end``, until a page holds fewer than ``limit`` periods or the window is done.
Credits: each 100 returned items cost one (``x-ratelimit-request-cost``), whatever the
``limit``, so a large page (``page_limit``, default 1000) spends the fewest credits and the
fewest requests: 365 days of 1HRS = 9 requests, 88 credits.

What goes wrong (HTTP status → error; none of the refusals is retried):
- no key configured → :class:`CoinApiKeyMissing` before any request;
- 401 → :class:`CoinApiKeyInvalid` (a config error naming ``COINAPI_API_KEY``, never the key);
- 403 → :class:`CoinApiForbidden`: the key's plan does not include this data;
- 404 with CoinAPI's JSON ``{"message": ...}`` → :class:`CoinApiNotServed` (symbol or metric
  not served: the asset layer records it), a 404 page without it →
  :class:`CoinApiEndpointMissing` (the base URL is not CoinAPI's);
- 550 "no data" → not an error: the window's frame is empty (or holds the periods paged so
  far) and a :class:`NoDataWindow` is appended to ``client.no_data``;
- 429 with the credit quota spent (``x-ratelimit-remaining`` <= 0) → waited until
  ``x-ratelimit-reset`` if that is within ``max_wait_seconds``, else
  :class:`CoinApiQuotaExceeded` saying when it resets; any other 429 and 5xx are retried
  with backoff by the shared retry loop (``vendors/retry.py``);
- malformed JSON or a shape that drifted → :class:`VendorResponseError` naming the endpoint.
``client.quota`` holds the last quota headers seen (for run metadata), ``credits_used`` the
sum of the request costs this client was charged.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import httpx
import polars as pl

from btc_assets.clock import epoch_ms
from btc_assets.core.schema import COINAPI_METRIC_SCHEMA, COINAPI_OHLCV_SCHEMA, TS, conform, to_ms
from btc_assets.vendors.coinapi_parse import METRIC_FIELDS, OHLCV_FIELDS, iso_from_ms, parse_rows
from btc_assets.vendors.coinapi_quota import CoinApiQuota as CoinApiQuota
from btc_assets.vendors.coinapi_quota import QuotaHeaders, header_int, header_time
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
)
from btc_assets.vendors.hosts import LIVE_COINAPI_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.retry import Transient

log = logging.getLogger("btc_assets.vendors")

VENDOR = "coinapi"
KEY_HEADER = "X-CoinAPI-Key"
KEY_SETTING = "COINAPI_API_KEY"
OHLCV_HISTORY = "/v1/ohlcv/{symbol_id}/history"
METRICS_HISTORY = "/v1/metrics/symbol/history"
SPOT_BTC = "BINANCE_SPOT_BTC_USDT"
PERP_BTC = "BINANCEFTS_PERP_BTC_USDT"
# UNCONFIRMED metric id (vendor-apis.md §5: seen in third-party code only); callers pass the
# id they configure, this is the default they may start from.
FUNDING_METRIC = "DERIVATIVES_FUNDING_RATE_CURRENT"
PAGE_LIMIT, MAX_LIMIT = 1000, 100_000
NO_DATA_STATUS = 550
_UNIT_SECONDS = {"SEC": 1, "MIN": 60, "HRS": 3600, "DAY": 86_400}
_PERIOD = re.compile(r"([1-9]\d*)(SEC|MIN|HRS|DAY)")
_ID = re.compile(r"[A-Z0-9][A-Z0-9_.\-]*")  # symbol and metric ids: safe inside a URL path


QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB")
_EXCHANGE_IDS = {"spot": "BINANCE_SPOT", "perp": "BINANCEFTS_PERP"}


def binance_symbol_id(symbol: str, market: str) -> str:
    """CoinAPI's id of a Binance market: ``BINANCE_SPOT_BTC_USDT`` for the spot pair
    BTCUSDT, ``BINANCEFTS_PERP_1000PEPE_USDT`` for the USD-M perp 1000PEPEUSDT (the
    exchange id BINANCEFTS is third-party usage, vendor-apis.md 5)."""
    for quote in QUOTES:
        base = symbol.removesuffix(quote)
        if base != symbol and base:
            return f"{_EXCHANGE_IDS[market]}_{base}_{quote}"
    raise ValueError(f"{symbol!r}: no known quote asset ({', '.join(QUOTES)}) ends it")


def period_seconds(period_id: str) -> int:
    """Seconds of a CoinAPI period id that tiles a UTC day (``1HRS`` → 3600); ValueError
    for months, years and multi-day periods, whose boundaries are not epoch multiples."""
    found = _PERIOD.fullmatch(period_id)
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)] if found else 0
    if not seconds or 86_400 % seconds:
        raise ValueError(
            f"period_id {period_id!r} not supported: use one that divides a UTC day, "
            "from 1SEC to 1DAY (e.g. 1MIN, 15MIN, 1HRS, 8HRS)"
        )
    return seconds


class CoinApiKeyMissing(VendorError, VendorConfigError):
    """No API key configured: raised before any request is sent."""


class CoinApiKeyInvalid(VendorError, VendorConfigError):
    """HTTP 401: CoinAPI did not accept the key sent in ``X-CoinAPI-Key``."""


class CoinApiForbidden(VendorRefused):
    """HTTP 403: the key's plan does not include this endpoint or data."""


class CoinApiNotServed(VendorRefused):
    """HTTP 404 in CoinAPI's JSON: it does not serve this symbol or metric. Recorded by the
    asset layer as "not served", never retried."""


class CoinApiEndpointMissing(VendorRefused):
    """HTTP 404 without CoinAPI's JSON body: the host does not serve the path at all."""


class CoinApiNoData(VendorRefused):
    """HTTP 550: CoinAPI has no data for the window. The client turns it into an empty
    frame and a :class:`NoDataWindow`; it escapes only from direct ``http`` calls."""


class CoinApiQuotaExceeded(VendorRateLimited):
    """HTTP 429 with the credit quota spent, and its reset further off than we may wait."""


@dataclass(frozen=True)
class NoDataWindow:
    """A window CoinAPI answered 550 "no data" for: empty by the vendor's word, not a gap."""

    endpoint: str
    symbol_id: str
    metric_id: str | None
    period_id: str
    start: datetime
    end: datetime
    message: str


def _hint(cls: type[VendorError], path: str, params: Mapping[str, Any]) -> str:
    what = ", ".join(f"{k}={params[k]}" for k in ("metric_id", "symbol_id") if k in params)
    what = what or f"the symbol in {path}"
    if cls is CoinApiKeyInvalid:
        return (
            f"CoinAPI did not accept the key sent in {KEY_HEADER} (not shown); check "
            f"{KEY_SETTING} against the key in your CoinAPI account"
        )
    if cls is CoinApiForbidden:
        return f"the key's CoinAPI plan does not include {path} for {what}; upgrade or skip it"
    if cls is CoinApiNotServed:
        return f"CoinAPI does not serve {what} (record it as not served, do not retry)"
    if cls is CoinApiEndpointMissing:
        return f"the host does not serve {path}; check COINAPI_BASE_URL ({LIVE_COINAPI_URL})"
    return ""


class _CoinApiHttp(VendorHttpClient):
    """The shared session with CoinAPI's status rules where they differ from the shared
    ones: 550 is a final "no data" (the shared rule retries every 5xx), 401/403/404 become
    their own classes, and a 429 with the quota spent waits for ``x-ratelimit-reset``
    (CoinAPI names no Retry-After)."""

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
        status = response.status_code
        shown = message or response.reason_phrase or "no message"
        cls: type[VendorError] | None = {
            401: CoinApiKeyInvalid, 403: CoinApiForbidden, NO_DATA_STATUS: CoinApiNoData,
        }.get(status)  # fmt: skip
        if status == 404:
            # CoinAPI refuses an unknown symbol or metric in its JSON; a web server's page
            # (HTML, no message) means the base URL points at something that is not CoinAPI.
            cls = CoinApiNotServed if message is not None else CoinApiEndpointMissing
        if cls is not None:
            hint = _hint(cls, path, params)
            raise self._error(cls, path, params, method, status=status, code=code,
                              message=shown, hint=hint)  # fmt: skip
        remaining = header_int(response.headers, "x-ratelimit-remaining")
        reset = header_time(response.headers, "x-ratelimit-reset")
        no_retry_after = "retry-after" not in response.headers
        if status == 429 and no_retry_after and reset is not None and (remaining or 0) <= 0:
            # The credit quota is spent (an absent remaining header counts as spent, since a
            # reset is named): nothing helps before it resets. One second more, since our
            # clock and theirs differ and a retry a hair early wastes an attempt.
            after = max(reset.timestamp() - self.clock(), 0.0) + 1.0
            text = f"{shown} (credit quota spent; resets at {reset.isoformat()})"
            raise Transient(f"HTTP 429 {text}", CoinApiQuotaExceeded, after=after,
                            status=status, code=code, message=text)  # fmt: skip
        super().raise_failure(response, body, code, message, path, params, method)


class CoinApiClient(SessionClient):
    """CoinAPI (``rest.coinapi.io``) OHLCV history and symbol metrics.

    ``page_limit`` is the ``limit`` asked per request (1..100000). ``max_wait_seconds``
    bounds one request's retries, waits included (a spent quota that resets later fails at
    once). ``now_ms`` is the data clock that decides which periods have closed; ``sleep`` /
    ``clock`` make waits and the quota reset testable.
    """

    def __init__(
        self,
        base_url: str = LIVE_COINAPI_URL,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait_seconds: float = 120.0,
        page_limit: int = PAGE_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        now_ms: Callable[[], int] = epoch_ms,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= page_limit <= MAX_LIMIT:
            raise VendorConfigError(f"coinapi: page_limit={page_limit}; expected 1..{MAX_LIMIT}")
        self.api_key = (api_key or "").strip() or None
        self.page_limit, self.now_ms = page_limit, now_ms
        headers = {"accept": "application/json"}
        if self.api_key:
            headers[KEY_HEADER] = self.api_key
        self._quota = QuotaHeaders()
        self.no_data: list[NoDataWindow] = []
        self.http = _CoinApiHttp(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap, max_wait_seconds=max_wait_seconds,
            headers=headers, limiter=self._quota, sleep=sleep, clock=clock,
            base_url_setting="COINAPI_BASE_URL", rng=rng,
        )  # fmt: skip

    @property
    def quota(self) -> CoinApiQuota | None:
        """The quota headers of the last answer that carried them (None before any)."""
        return self._quota.last

    @property
    def credits_used(self) -> int:
        """Credits CoinAPI charged this client (the sum of ``x-ratelimit-request-cost``)."""
        return self._quota.credits

    def ohlcv(self, symbol_id: str, period_id: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Closed periods with ``ts`` (period end) in ``(start, end]``
        (COINAPI_OHLCV_SCHEMA), de-duplicated by ``ts`` and sorted."""
        path = OHLCV_HISTORY.format(symbol_id=_checked_id("symbol_id", symbol_id))
        frame = self._history(
            path, {"period_id": period_id}, symbol_id, None, start, end, OHLCV_FIELDS,
            "trades_count",
        )  # fmt: skip
        frame = frame.rename({"count": "trades"}).with_columns(symbol_id=pl.lit(symbol_id))
        return conform(frame, COINAPI_OHLCV_SCHEMA)

    def metric(
        self, metric_id: str, symbol_id: str, period_id: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        """A symbol metric's closed periods with ``ts`` in ``(start, end]``
        (COINAPI_METRIC_SCHEMA: first/last/min/max/sum of the values, their count)."""
        params = {
            "metric_id": _checked_id("metric_id", metric_id),
            "symbol_id": _checked_id("symbol_id", symbol_id),
            "period_id": period_id,
        }
        frame = self._history(
            METRICS_HISTORY, params, symbol_id, metric_id, start, end, METRIC_FIELDS, "count"
        )
        frame = frame.with_columns(symbol_id=pl.lit(symbol_id), metric_id=pl.lit(metric_id))
        return conform(frame, COINAPI_METRIC_SCHEMA)

    def _history(
        self, path: str, params: Mapping[str, str], symbol_id: str, metric_id: str | None,
        start: datetime, end: datetime, fields: Mapping[str, str], count_key: str,
    ) -> pl.DataFrame:  # fmt: skip
        """``ts`` (period end), the ``fields`` columns and ``count`` of the closed periods
        ending in ``(start, end]``."""
        period_id = params["period_id"]
        step = period_seconds(period_id) * 1000
        if self.api_key is None:
            raise CoinApiKeyMissing(
                VENDOR, path, self.http.shown_params(params), message="no API key configured",
                hint=f"set {KEY_SETTING} (sent as the {KEY_HEADER} header)",
            )  # fmt: skip
        start_ms, end_ms = to_ms(start), min(to_ms(end), self.now_ms())
        # ts = open + step in (start, end_ms]  <=>  open in [first, stop)
        first, stop = start_ms // step * step, end_ms // step * step
        frames: list[pl.DataFrame] = []
        no_data = False
        cursor = first
        while cursor < stop:
            page = {**params, "time_start": iso_from_ms(cursor), "time_end": iso_from_ms(stop),
                    "limit": self.page_limit}  # fmt: skip
            try:
                rows = self.http.get_json(path, page, weight=0, expect=list)
            except CoinApiNoData as exc:
                window = NoDataWindow(path, symbol_id, metric_id, period_id, _dt(cursor),
                                      _dt(stop), exc.message)  # fmt: skip
                self.no_data.append(window)
                log.info("%s %s %s %s [%s, %s): no data (HTTP 550): %s", VENDOR, path,
                         metric_id or symbol_id, period_id, window.start, window.end,
                         exc.message)  # fmt: skip
                no_data = True
                break
            try:
                frame = parse_rows(rows, path, step // 1000, fields, count_key)
            except VendorResponseError as exc:  # say which request brought the bad rows
                shown = self.http.shown_params(page)
                raise VendorResponseError(VENDOR, path, shown, status=200,
                                          message=exc.message) from None  # fmt: skip
            frames.append(frame)
            if frame["ts"].n_unique() < self.page_limit:
                break  # a short page: the vendor had no more before time_end
            newest = to_ms(frame["ts"].max())  # type: ignore[arg-type]
            if newest <= cursor:  # a vendor that ignored time_start would loop forever
                raise VendorResponseError(
                    VENDOR, path, self.http.shown_params(page), status=200,
                    message=f"the page did not advance past time_start={page['time_start']}",
                )  # fmt: skip
            cursor = newest  # CoinAPI's rule: next time_start = last time_period_end
        out = _clean(frames, fields, start, end, end_ms)
        expected = max(0, (stop - first) // step)
        if out.height < expected and not no_data:  # a gap is never silent
            log.warning(
                "%s %s %s %s (%s, %s]: %d of %d periods (%d missing)", VENDOR, path,
                metric_id or symbol_id, period_id, start, end, out.height, expected,
                expected - out.height,
            )  # fmt: skip
        return out


def _checked_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{name}={value!r}: expected a CoinAPI id like {SPOT_BTC}")
    return value


def _dt(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _clean(
    frames: list[pl.DataFrame], fields: Mapping[str, str], start: datetime, end: datetime,
    end_ms: int,
) -> pl.DataFrame:  # fmt: skip
    """Pages → one frame: first row of each ``ts`` kept, window and clock applied, sorted."""
    schema = {"ts": TS, **dict.fromkeys(fields.values(), pl.Float64),
              "count": pl.Int64}  # fmt: skip
    empty = pl.DataFrame(schema=schema)
    closed = _dt(end_ms)
    return (
        pl.concat([empty, *(f.select(list(schema)) for f in frames)])
        .unique(subset="ts", keep="first", maintain_order=True)
        .filter((pl.col("ts") > start) & (pl.col("ts") <= end) & (pl.col("ts") <= closed))
        .sort("ts")
    )
