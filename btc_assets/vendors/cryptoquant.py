"""CryptoQuant daily on-chain flows for BTC (exchange flows, flow indicators) in long form.

A plain client (no Dagster, no settings) on the shared :class:`VendorHttpClient`.
:meth:`CryptoQuantClient.daily` reads one metric of the :data:`CATALOGUE` for a range of UTC
days as ``CRYPTOQUANT_DAILY_SCHEMA`` rows: one per (date, field), oldest first, one date once
even if the vendor repeats it. Long form because the seven endpoints serve one to four fields
each, under names the reference has only from third-party code: one table and lake layout
fits them all, a renamed or added field is data rather than a contract change, and a weekly
revision compares per (metric, exchange, date, field).

Wire (vendor-apis.md 8): ``GET /v1/btc/...``, ``Authorization: Bearer <token>``,
``window=day``, ``from``/``to`` as ``YYYYMMDD``, ``limit`` (1..100000, counted back from
``to``). Each request names a window of whole days and asks ``limit`` = its length, so the
answer does not depend on which end the vendor counts from; a range of N days takes
ceil(N / page_limit) requests. Rows come newest first and are sorted here. The forming UTC
day is never asked (its value would still change); a day not yet published is absent.

Answers are ``{"status":{"code","message"},"result":{"window","data":[...]}}``; the status
comes in the HTTP status or only inside an HTTP 200, handled alike: 401 →
:class:`CryptoQuantTokenRejected` (a config error naming ``CRYPTOQUANT_API_KEY``, never the
token), 403 → :class:`CryptoQuantPlanError`, 400/404/405 → :class:`CryptoQuantRequestRefused`
naming metric and parameters (both :class:`VendorRefused`, never retried); 429 and 5xx are
retried in the request's one retry loop. Code 200 ``deprecated`` is data plus a warning.
A malformed body or envelope is a :class:`VendorResponseError` naming the endpoint, a row
without its date or with a non-numeric value one naming the metric and date; JSON ``null``
stays null. Exchange-flow history is revised weekly (Tuesday 00:00 UTC re-clustering), so a
past day can read differently after a Tuesday (:attr:`MetricSpec.revised_weekly`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import httpx
import polars as pl

from btc_assets.clock import epoch_ms
from btc_assets.core.schema import CRYPTOQUANT_DAILY_SCHEMA, CRYPTOQUANT_NO_EXCHANGE, conform
from btc_assets.vendors.cryptoquant_catalogue import CATALOGUE, Metric, MetricSpec
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.hosts import LIVE_CRYPTOQUANT_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

VENDOR = "cryptoquant"
TOKEN_SETTING = "CRYPTOQUANT_API_KEY"
BASE_URL_SETTING = "CRYPTOQUANT_BASE_URL"
API_PREFIX = "/v1"
DEFAULT_EXCHANGE = "all_exchange"
MAX_LIMIT = 100_000  # the documented ceiling of ``limit``
DAY_MS = 86_400_000
# Status codes inside an HTTP 200 that mean "try again", as the same HTTP status would.
RETRY_CODES: dict[int | str, type[VendorError]] = {
    429: VendorRateLimited, 500: VendorUnavailable, 502: VendorUnavailable,
    503: VendorUnavailable, 504: VendorUnavailable,
}  # fmt: skip
_REFUSED = (400, 404, 405)


_BY_PATH = {API_PREFIX + spec.path: m for m, spec in CATALOGUE.items()}


class CryptoQuantTokenMissing(VendorError, VendorConfigError):
    """No token configured: raised before any request is sent."""


class CryptoQuantTokenRejected(VendorError, VendorConfigError):
    """401: CryptoQuant did not accept the token (unknown, expired, rotated)."""


class CryptoQuantPlanError(VendorRefused):
    """403: the token's plan does not include this endpoint."""


class CryptoQuantRequestRefused(VendorRefused):
    """400/404/405: the metric, its parameters or the path are not served as asked."""


def _status_of(body: Any) -> tuple[int | str | None, str | None]:
    """``status.code`` and ``status.message`` (+ ``description`` when sent) of a body."""
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        return None, None
    message = status.get("message")
    text = None if message is None else str(message)
    if status.get("description"):
        text = f"{text or 'error'}: {status['description']}"
    return status.get("code"), text


def _envelope_error(body: Any) -> bool:
    """An HTTP 200 answer is an error when its ``status.code`` is not 200 (the session's
    ``vendor_message`` reads it from ``status``; a body without ``status`` is a shape error,
    found by the page reader with the endpoint named)."""
    if not isinstance(body, dict):
        return True
    code, _ = _status_of(body)
    return code is not None and str(code).strip() != "200"


def _refine(err: VendorError) -> VendorError:
    """The final refusals as errors that say what to change (transient ones pass through)."""
    if type(err) is not VendorError:
        return err
    code = str(err.code if err.code is not None else err.status).strip()
    metric = _BY_PATH.get(err.endpoint, "?")
    if code == "401":
        return err.evolve(
            CryptoQuantTokenRejected,
            "CryptoQuant did not accept the token sent as 'Authorization: Bearer' (not "
            f"shown); check {TOKEN_SETTING} against the token in your CryptoQuant account "
            "(tokens are rotated yearly)",
        )
    if code == "403":
        return err.evolve(
            CryptoQuantPlanError,
            f"{err.endpoint} (metric={metric}) is not in this token's CryptoQuant plan; "
            "upgrade the plan or stop asking for the metric",
        )
    if code in {str(c) for c in _REFUSED}:
        hint = f"CryptoQuant refused metric={metric} as asked; check its exchange and window"
        if code != "400":
            hint += f" and {BASE_URL_SETTING} ({LIVE_CRYPTOQUANT_URL}, paths under /v1/)"
        return err.evolve(CryptoQuantRequestRefused, hint)
    return err


class _CryptoQuantHttp(VendorHttpClient):
    """The shared session, taught two CryptoQuant habits: the bare token is a secret too
    (the shared layer masks the whole ``Authorization`` value, "Bearer <token>", which a
    vendor echoing the token alone would get past), and a non-200 body names its failure in
    ``status``, not at the top level."""

    def __init__(self, token: str | None, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.add_secret(token or "")

    def vendor_message(self, body: Any) -> tuple[int | str | None, str | None]:
        return _status_of(body)


class CryptoQuantClient(SessionClient):
    """CryptoQuant (``api.cryptoquant.com/v1``) daily BTC metrics; see the module docstring.

    ``page_limit`` days per request (at most 100000); ``requests_per_minute`` is a
    conservative local budget (the plans' limits are UNCONFIRMED); a rate-limit answer that
    names no wait waits for the next minute. ``now_ms`` is the data clock deciding which
    day is still forming; ``clock``/``sleep`` drive waits, so tests can fake both.
    """

    def __init__(
        self,
        base_url: str = LIVE_CRYPTOQUANT_URL,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_wait_seconds: float = 120.0,
        page_limit: int = MAX_LIMIT,
        requests_per_minute: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        now_ms: Callable[[], int] = epoch_ms,
        rng: random.Random | None = None,
        budget_store: WindowStore | None = None,
    ) -> None:
        if not 1 <= page_limit <= MAX_LIMIT:
            raise VendorConfigError(f"{VENDOR}: page_limit={page_limit}; expected 1..{MAX_LIMIT}")
        self.token = (token or "").strip() or None
        self.page_limit, self.now_ms = page_limit, now_ms
        self.deprecated: set[str] = set()  # endpoints answered with status "deprecated"
        headers = {"accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.budget = WeightBudget(requests_per_minute, 60, clock=clock, sleep=sleep,
                                   name=budget_name(base_url, "requests"),
                                   store=budget_store)  # fmt: skip
        self.http = _CryptoQuantHttp(
            self.token, VENDOR, base_url, transport=transport, timeout=timeout,
            max_retries=max_retries, max_wait_seconds=max_wait_seconds, headers=headers,
            limiter=self.budget, sleep=sleep, clock=clock, base_url_setting=BASE_URL_SETTING,
            error_hook=_refine, transient_codes=RETRY_CODES, error_body=_envelope_error,
            wait_window_on_rate_limit=True, rng=rng,
        )  # fmt: skip

    def __repr__(self) -> str:
        shown = "***" if self.token else None
        return f"CryptoQuantClient(base_url={self.http.base_url!r}, token={shown!r})"

    def daily(
        self, metric: Metric | str, start: date, end: date, exchange: str = DEFAULT_EXCHANGE
    ) -> pl.DataFrame:
        """``metric`` for the UTC days ``start..end`` (inclusive) that have closed and been
        published, as ``CRYPTOQUANT_DAILY_SCHEMA`` rows sorted by (date, field)."""
        name = _metric(metric)
        spec = CATALOGUE[name]
        if end < start:
            raise ValueError(f"{VENDOR} {name}: end {end} is before start {start}")
        exchange = (exchange or "").strip()
        if spec.per_exchange and not exchange:
            raise ValueError(f"{VENDOR} {name}: exchange is empty (e.g. {DEFAULT_EXCHANGE!r})")
        if not spec.per_exchange and exchange != DEFAULT_EXCHANGE:
            raise ValueError(f"{VENDOR} {name} is not per exchange; do not pass exchange=")
        path = API_PREFIX + spec.path
        base = {"exchange": exchange} if spec.per_exchange else {}
        if self.token is None:
            raise CryptoQuantTokenMissing(
                VENDOR, path, self.http.shown_params(base), message="no API token configured",
                hint=f"set {TOKEN_SETTING} (sent as 'Authorization: Bearer <token>')",
            )  # fmt: skip
        today = date(1970, 1, 1) + timedelta(days=self.now_ms() // DAY_MS)
        last = min(end, today - timedelta(days=1))  # the forming day is never asked for
        frames = [_wide(spec, [])]
        cursor = start
        while cursor <= last:
            to = min(cursor + timedelta(days=self.page_limit - 1), last)
            params = {**base, "window": "day", "from": _ymd(cursor), "to": _ymd(to),
                      "limit": (to - cursor).days + 1}  # fmt: skip
            frames.append(self._page(name, spec, path, params))
            cursor = to + timedelta(days=1)
        wide = (
            pl.concat(frames)
            .unique(subset="date", keep="first", maintain_order=True)
            .filter(pl.col("date").is_between(start, last))
            .sort("date")
        )
        shown = exchange if spec.per_exchange else CRYPTOQUANT_NO_EXCHANGE
        _warn_missing(name, shown, wide, start, last)
        long = wide.unpivot(index="date", on=list(spec.fields), variable_name="field")
        long = long.with_columns(pl.lit(str(name)).alias("metric"), pl.lit(shown).alias("exchange"))
        return conform(long.sort("date", "field"), CRYPTOQUANT_DAILY_SCHEMA)

    def _page(
        self, metric: Metric, spec: MetricSpec, path: str, params: Mapping[str, Any]
    ) -> pl.DataFrame:
        """One request's rows as a wide frame (date + the spec's fields). Error statuses
        (429/5xx retried) are handled by the session's one retry loop."""
        body = self.http.get_json(path, params, expect=dict)
        shown = self.http.shown_params(params)
        status, result = body.get("status"), body.get("result")
        data = result.get("data") if isinstance(result, dict) else None
        if not isinstance(status, dict) or not isinstance(data, list):
            what = "'status'" if not isinstance(status, dict) else "a 'result.data' list"
            message = f"envelope lacks {what}; top-level keys {sorted(body)}"
            raise VendorResponseError(VENDOR, path, shown, "GET", 200, None, message)
        if result.get("window") not in (None, "day"):
            message = f"asked window=day, answered window={result.get('window')!r}"
            raise VendorResponseError(VENDOR, path, shown, "GET", 200, None, message)
        if str(status.get("message", "")).strip().lower() == "deprecated":
            self.deprecated.add(path)
            request = self.http.describe(path, params)
            log.warning("%s %s: CryptoQuant marks this endpoint deprecated; its data is used, "
                        "but plan a replacement", VENDOR, request)  # fmt: skip
        try:
            return _wide(spec, data, metric, path)
        except VendorResponseError as exc:  # say which request brought the bad row
            raise VendorResponseError(VENDOR, path, shown, "GET", 200, None, exc.message) from None


def _metric(metric: Metric | str) -> Metric:
    try:
        return Metric(metric)
    except ValueError:
        raise ValueError(
            f"{VENDOR}: metric {metric!r} unknown; expected one of {[m.value for m in Metric]}"
        ) from None


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _wide(
    spec: MetricSpec, rows: list[Any], metric: Metric | None = None, path: str = ""
) -> pl.DataFrame:
    """Rows → ``date`` (Date) and one Float64 column per field. Extra keys are ignored."""
    dates: list[date] = []
    columns: dict[str, list[float | None]] = {f: [] for f in spec.fields}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _bad(metric, path, f"row {i} is not an object: {str(row)[:100]}")
        day = _row_date(row, metric, path, i)
        for field in spec.fields:
            if field not in row:
                raise _bad(metric, path, f"{day}: row lacks {field!r}; has {sorted(row)}")
            columns[field].append(_number(row[field], metric, path, day, field))
        dates.append(day)
    schema = {"date": pl.Date, **{f: pl.Float64 for f in spec.fields}}
    return pl.DataFrame({"date": dates, **columns}, schema=schema)


def _row_date(row: Mapping[str, Any], metric: Metric | None, path: str, i: int) -> date:
    """The UTC day a row describes: ``date`` ("YYYY-MM-DD"), or ``datetime``'s day part."""
    raw = next((row[k] for k in ("date", "datetime") if row.get(k) is not None), None)
    if raw is None:
        raise _bad(metric, path, f"row {i} has no 'date' (or 'datetime'); keys {sorted(row)}")
    try:
        return date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise _bad(metric, path, f"row {i} date {raw!r} is not YYYY-MM-DD") from None


def _number(value: Any, metric: Metric | None, path: str, day: date, field: str) -> float | None:
    """A JSON number or numeric string; ``null`` stays null (no value that day)."""
    if value is None:
        return None
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):  # "abc" stays NaN: refused below
            number = float(value)
    if not math.isfinite(number):
        raise _bad(metric, path, f"{day}: {field!r} is not a number: {str(value)[:40]!r}")
    return number


def _bad(metric: Metric | None, path: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, path, None, status=200, message=f"metric={metric} {message}")


def _warn_missing(
    metric: Metric, exchange: str, wide: pl.DataFrame, start: date, last: date
) -> None:
    """A gap is never silent. The most recent closed day may simply not be published yet
    (the vendor's delay), so it is mentioned at INFO; any older missing day is a WARNING."""
    if last < start:
        return
    got = set(wide["date"].to_list())
    missing = [start + timedelta(days=i) for i in range((last - start).days + 1)]
    missing = [d for d in missing if d not in got]
    if not missing:
        return
    old = [d for d in missing if d < last]
    level = logging.WARNING if old else logging.INFO
    shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
    log.log(level, "%s %s %s %s..%s: %d day(s) missing (%s)", VENDOR, metric, exchange, start,
            last, len(missing), shown)  # fmt: skip
