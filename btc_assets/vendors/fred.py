"""FRED series observations and their vintages (ALFRED) as ``FRED_OBSERVATION_SCHEMA`` frames.

A plain client (no Dagster, no settings) on the shared :class:`VendorHttpClient`: one
``GET /fred/series/observations`` per page, ``file_type=json``, the key in the ``api_key``
query parameter. ``api_key`` is one of the HTTP layer's secret parameter names, so it is
masked by name in every logged or raised parameter list and by value in any text (an
echoed URL, a message); ``httpx``'s own request log is masked by the same rule.

FRED's rules this client relies on (vendor-apis.md §7): ``value`` is a string, ``"."`` where
FRED has no value (a holiday of a daily series): null with ``missing`` true here, never a
number. ``count`` is the total number of rows; pages of ``limit`` (at most 100000) are
asked at ``offset`` 0, limit, 2 x limit ... until ``count`` is reached. Each row carries its
real-time period, clipped by FRED to the requested window: :meth:`FredClient.observations`
asks the default window (today), so it gets today's values stamped today..today;
:meth:`FredClient.vintages` asks a window and gets one row per (date, vintage) in it, the
first ``realtime_start`` of a date being when its value was first published.

Errors: FRED answers with the HTTP status in ``error_code``. 400 naming ``api_key`` raises
:class:`FredKeyRejected` (a config error naming ``FRED_API_KEY``); 400 "The series does not
exist." or a 404 raises :class:`FredSeriesMissing` (a :class:`VendorRefused`, not retried);
other 400s a :class:`VendorError` with FRED's message. 429 and 5xx are retried by the HTTP
layer. 423 ("Locked", listed by FRED without a cause) is retried too when FRED's body says
``error_code`` 423: a lock is a passing state (a series being updated by a release), failing
the day on the first one would turn a wait into an outage, and the retry budget still bounds
a lock that never lifts (it then fails as :class:`VendorUnavailable`, which no fallback acts
on). A 423 without FRED's JSON body is not retried: the HTTP layer retries by status only
408/418/429/5xx, and a vendor module adds codes through ``transient_codes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import httpx
import polars as pl

from btc_assets.core.schema import FRED_OBSERVATION_SCHEMA, conform
from btc_assets.vendors.errors import (
    MASK,
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.hosts import LIVE_FRED_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

VENDOR = "fred"
OBSERVATIONS = "/fred/series/observations"
KEY_SETTING, URL_SETTING = "FRED_API_KEY", "FRED_BASE_URL"
MAX_PAGE_LIMIT = 100_000  # FRED's own maximum (and default) page size
MISSING = "."
OPEN_END = date(9999, 12, 31)  # realtime_end of a vintage that is still current
_ROW_KEYS = ("date", "value", "realtime_start", "realtime_end")
# Codes in FRED's error body worth another try, whatever the HTTP status says.
TRANSIENT_CODES: dict[str, type[VendorError]] = {
    "423": VendorUnavailable, "429": VendorRateLimited, "500": VendorUnavailable,
}  # fmt: skip


class FredKeyMissing(VendorError, VendorConfigError):
    """No API key configured: raised before any request is sent."""


class FredKeyRejected(VendorError, VendorConfigError):
    """FRED refused the key (not set, malformed or not registered): fix ``FRED_API_KEY``."""


class FredSeriesMissing(VendorRefused):
    """FRED has no such series (400 "The series does not exist.") or answered 404."""


def _refine(err: VendorError) -> VendorError:
    """FRED's final refusals as errors that say what to fix (never the key itself)."""
    if type(err) is not VendorError:
        return err
    text = err.message.lower()
    series = (err.params or {}).get("series_id", "?")
    if "api_key" in text or "api key" in text:
        return err.evolve(
            FredKeyRejected,
            f"FRED did not accept the key sent as api_key (not shown); set {KEY_SETTING} to "
            "the 32-character lower-case key of your FRED account",
        )
    if err.status == 404 and err.code is None and "series does not exist" not in text:
        # No FRED error body: the path is not served here (a wrong base URL), not a
        # refusal of the series, which would be stored as an empty day and reused.
        return err.evolve(
            VendorError,
            f"{err.endpoint} is not served at this host; check {URL_SETTING}",
        )
    if "series does not exist" in text:
        return err.evolve(
            FredSeriesMissing,
            f"FRED has no series {series} at {err.endpoint}; check the series id (and "
            f"{URL_SETTING} if every series is refused)",
        )
    return err


def _is_error_body(body: Any) -> bool:
    """FRED's error object (``error_code``/``error_message``), or not an object at all."""
    return not isinstance(body, dict) or "error_code" in body or "error_message" in body


class FredClient(SessionClient):
    """FRED (``api.stlouisfed.org``) series observations, current and by vintage.

    ``requests_per_minute``: FRED's limit is 3P-reported as 120 per minute (UNCONFIRMED);
    the client stays under 90 % of it, and a 429 naming no wait waits for the next minute.
    ``page_limit`` is the rows asked per request (FRED's maximum by default: one request
    per series for any daily window shorter than 270 years).
    """

    def __init__(
        self,
        base_url: str = LIVE_FRED_URL,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_wait_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        requests_per_minute: int = 120,
        page_limit: int = MAX_PAGE_LIMIT,
        budget_store: WindowStore | None = None,
    ) -> None:
        if not 1 <= page_limit <= MAX_PAGE_LIMIT:
            raise VendorConfigError(f"{VENDOR}: page_limit {page_limit}; FRED takes 1..100000")
        self._key = (api_key or "").strip()
        self.page_limit = page_limit
        self.budget = WeightBudget(
            requests_per_minute, 60, clock=clock, sleep=sleep,
            name=budget_name(base_url, "requests"), store=budget_store,
        )  # fmt: skip
        self.http = VendorHttpClient(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            max_wait_seconds=max_wait_seconds, headers={"accept": "application/json"},
            limiter=self.budget, sleep=sleep, clock=clock, base_url_setting=URL_SETTING,
            error_hook=_refine, transient_codes=TRANSIENT_CODES, error_body=_is_error_body,
            wait_window_on_rate_limit=True,
        )  # fmt: skip

    def __repr__(self) -> str:
        key = MASK if self._key else "(none)"
        return f"FredClient({self.http.base_url!r}, api_key={key})"

    def observations(self, series_id: str, start: date, end: date) -> pl.DataFrame:
        """The current vintage of ``series_id`` for observation dates in [start, end]: one
        row per date, ``realtime_start`` = ``realtime_end`` = FRED's today."""
        _check_window("observation", start, end)
        return self._fetch(series_id, start, end, {})

    def vintages(
        self, series_id: str, start: date, end: date, realtime_start: date, realtime_end: date
    ) -> pl.DataFrame:
        """Every vintage of the observations in [start, end] whose real-time period meets
        [realtime_start, realtime_end]: one row per (date, vintage period), periods clipped
        to the window; pass ``realtime_end=OPEN_END`` to see current vintages end 9999-12-31.
        A value is known from its row's ``realtime_start`` (when the window began earlier)."""
        _check_window("observation", start, end)
        _check_window("realtime", realtime_start, realtime_end)
        window = {"realtime_start": realtime_start.isoformat(),
                  "realtime_end": realtime_end.isoformat()}  # fmt: skip
        return self._fetch(series_id, start, end, window)

    # --- paging and parsing -------------------------------------------------------------

    def _fetch(
        self, series_id: str, start: date, end: date, window: Mapping[str, str]
    ) -> pl.DataFrame:
        params: dict[str, Any] = {
            "series_id": series_id, "api_key": self._key, "file_type": "json",
            "observation_start": start.isoformat(), "observation_end": end.isoformat(),
            **window, "sort_order": "asc", "limit": self.page_limit,
        }  # fmt: skip
        if not self._key:
            raise FredKeyMissing(
                VENDOR, OBSERVATIONS, self.http.shown_params(params),
                message="no API key configured",
                hint=f"set {KEY_SETTING} (FRED's 32-character key, sent as the api_key query "
                "parameter; nothing was sent)",
            )  # fmt: skip
        rows: list[dict[str, Any]] = []
        total: int | None = None
        offset, asked_again, requests = 0, False, 0
        while total is None or offset < total:
            page = {**params, "offset": offset}
            count, got = self._page(page)
            requests += 1
            if total is not None and count != total and not asked_again:
                # FRED published while we paged: the rows may have shifted between pages.
                shown = self.http.describe(OBSERVATIONS, page)
                log.warning("%s %s: count went from %d to %d while paging; starting over",
                            VENDOR, shown, total, count)  # fmt: skip
                rows, total, offset, asked_again = [], None, 0, True
                continue
            total = count
            expected = min(self.page_limit, count - offset)
            if len(got) < expected and not asked_again:
                # A short page is a hiccup more often than lost history: ask once more.
                log.warning("%s %s: %d rows where count=%d implies %d; asking once more",
                            VENDOR, self.http.describe(OBSERVATIONS, page), len(got), count,
                            expected)  # fmt: skip
                asked_again = True
                continue
            if len(got) < expected:
                raise self._bad(page, f"{len(got)} rows at offset {offset} where count={count} "
                                f"implies {expected}; the answer is incomplete")  # fmt: skip
            rows.extend(got)
            # By the rows asked, not received: a page with a duplicated row must not skip one.
            offset += self.page_limit
        frame = _frame(series_id, rows, lambda msg: self._bad(params, msg))
        log.info("%s %s [%s, %s]: %d rows (%d missing '.') in %d request(s)",
                 VENDOR, series_id, start, end, frame.height, frame["missing"].sum(),
                 requests)  # fmt: skip
        return frame

    def _page(self, params: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        """One page's ``count`` and ``observations``, their shape checked."""
        body = self.http.get_json(OBSERVATIONS, params, expect=dict)
        count, obs = body.get("count"), body.get("observations")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise self._bad(params, f"'count' is {count!r}, not a row count; keys {sorted(body)}")
        if not isinstance(obs, list):
            raise self._bad(params, f"'observations' is {type(obs).__name__}, not a list")
        for row in obs:
            if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in _ROW_KEYS):
                raise self._bad(params, f"an observation lacks one of {list(_ROW_KEYS)} as "
                                f"text: {str(row)[:120]!r}")  # fmt: skip
        return count, obs

    def _bad(self, params: Mapping[str, Any], message: str) -> VendorResponseError:
        shown = self.http.shown_params(params)
        return VendorResponseError(VENDOR, OBSERVATIONS, shown, "GET", 200, None, message)


def _check_window(what: str, start: date, end: date) -> None:
    if end < start:
        raise ValueError(f"{what} window [{start}, {end}]: end is before start")


def _frame(
    series_id: str, rows: list[dict[str, Any]], bad: Callable[[str], VendorResponseError]
) -> pl.DataFrame:
    """Rows as the contract: dates parsed, "." as null + missing, any other non-number an
    error naming the series and date; duplicates (same date and vintage) dropped."""
    raw = pl.DataFrame(
        {k: [r[k] for r in rows] for k in _ROW_KEYS}, schema=dict.fromkeys(_ROW_KEYS, pl.String)
    )
    dates = {k: pl.col(k).str.to_date("%Y-%m-%d", strict=False) for k in _ROW_KEYS if k != "value"}
    frame = raw.with_columns(
        **{f"{k}_parsed": e for k, e in dates.items()},
        missing=pl.col("value") == MISSING,
        number=pl.col("value").str.strip_chars().cast(pl.Float64, strict=False),
    )
    for k in dates:
        broken = frame.filter(pl.col(f"{k}_parsed").is_null())
        if broken.height:
            row = broken.row(0, named=True)
            raise bad(f"series {series_id}: {k} {row[k]!r} is not a YYYY-MM-DD date")
    wrong = frame.filter(~pl.col("missing") & (pl.col("number").is_null() | ~pl.col("number")
                                               .is_finite()))  # fmt: skip
    if wrong.height:
        row = wrong.row(0, named=True)
        raise bad(f"series {series_id} date {row['date']}: value {row['value']!r} is neither a "
                  f"number nor {MISSING!r} (FRED's missing); {wrong.height} such rows")  # fmt: skip
    out = (
        frame.select(
            pl.lit(series_id).alias("series_id"),
            pl.col("date_parsed").alias("date"),
            pl.when(pl.col("missing")).then(None).otherwise(pl.col("number")).alias("value"),
            "missing",
            pl.col("realtime_start_parsed").alias("realtime_start"),
            pl.col("realtime_end_parsed").alias("realtime_end"),
        )
        .unique(subset=["date", "realtime_start"], keep="first", maintain_order=True)
        .sort("date", "realtime_start")
    )
    return conform(out, FRED_OBSERVATION_SCHEMA)
