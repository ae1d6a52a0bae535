"""The HTTP session every vendor client shares: retries, rate limits, redaction, clear errors.

No Dagster here. A vendor module builds one :class:`VendorHttpClient` per base URL and calls
:meth:`VendorHttpClient.get_json` (or :meth:`~VendorHttpClient.post_json`); what comes back is
parsed JSON, what goes wrong is a :class:`VendorError` whose text names the vendor, endpoint,
parameters (secrets redacted), HTTP status and the vendor's own code and message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

import httpx

from btc_assets.vendors.errors import (
    MASK,
    RATE_LIMIT_STATUSES,
    RETRY_STATUSES,
    SECRET_HEADERS,
    SECRET_PARAMS,
    TELEGRAM_TOKEN_RE,
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorResponseError,
    VendorUnavailable,
    redact,
)
from btc_assets.vendors.ratelimit import WeightBudget

log = logging.getLogger("btc_assets.vendors")
_RETRY_AFTER_TEXT = re.compile(r"(?i)retry after (\d+(?:\.\d+)?)")
_CLIP = 80  # characters of a POST body field shown in logs and errors (message texts are long)


def _retry_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:  # the RFC also allows an HTTP date
        return max(email.utils.parsedate_to_datetime(raw).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _body_retry_after(body: Any, message: str | None) -> float | None:
    """The wait a rate-limit body asks for: Telegram's ``parameters.retry_after``, else a
    "retry after N" in the message (some Telegram 429s come without ``parameters``)."""
    params = body.get("parameters") if isinstance(body, dict) else None
    value = params.get("retry_after") if isinstance(params, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    found = _RETRY_AFTER_TEXT.search(message or "")
    return float(found.group(1)) if found else None


def _vendor_message(body: Any) -> tuple[int | str | None, str | None]:
    """The code and message of an error body in the shapes our vendors use."""
    if not isinstance(body, dict):
        return None, None
    for code_key, msg_key in (
        ("code", "msg"),
        ("error_code", "error_message"),
        ("error_code", "description"),
        ("code", "message"),
    ):
        if msg_key in body:
            return body.get(code_key), str(body[msg_key])
    for key in ("message", "error", "Error Message", "Note", "Information"):
        if key in body:
            return None, str(body[key])
    return None, None


class VendorHttpClient:
    """One vendor host: a pooled ``httpx.Client`` with retries, a rate budget and redaction.

    Retries 408/418/429/5xx, timeouts, connection errors and malformed JSON with exponential
    backoff and jitter, honouring ``Retry-After`` up to ``max_retry_after`` seconds; a longer
    ban fails at once with :class:`VendorRateLimited` rather than hanging a backfill.
    """

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        malformed_retries: int = 2,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_retry_after: float = 120.0,
        headers: Mapping[str, str] | None = None,
        secret_params: Iterable[str] = (),
        secret_headers: Iterable[str] = (),
        limiter: WeightBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        base_url_setting: str | None = None,
        error_hook: Callable[[VendorError], VendorError] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        setting = base_url_setting or f"the {vendor} base URL setting"
        url = (base_url or "").strip()
        if not url:
            raise VendorConfigError(f"{vendor}: no base URL configured; set {setting}")
        if not url.startswith(("http://", "https://")):
            raise VendorConfigError(
                f"{vendor}: base URL {redact(url)!r} is not an http(s) URL; fix {setting}"
            )
        self.vendor = vendor
        self.base_url = url.rstrip("/")
        self.max_retries = max_retries
        self.malformed_retries = malformed_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.limiter = limiter
        self.sleep = sleep
        self.error_hook = error_hook
        self._rng = rng or random.Random()
        self.requests_sent = 0  # every attempt on the wire, retries included
        self._secret_params = SECRET_PARAMS | {p.lower() for p in secret_params}
        secret_header_names = SECRET_HEADERS | {h.lower() for h in secret_headers}
        self._secrets = {
            v for k, v in (headers or {}).items() if k.lower() in secret_header_names and v
        }
        self._client = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            headers={"user-agent": "btc_assets/0.1", **(headers or {})},
            follow_redirects=False,
        )

    def __enter__(self) -> VendorHttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def describe(self, path: str, params: Mapping[str, Any]) -> str:
        """``/path {k=v, ...}`` with secrets masked, as logs and errors show a request."""
        shown = ", ".join(f"{k}={v}" for k, v in self.shown_params(params).items())
        return self.redact(f"{path} {{{shown}}}")

    def shown_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        return {
            k: MASK if k.lower() in self._secret_params else self.redact(str(v))
            for k, v in params.items()
        }

    def _error(
        self,
        cls: type[VendorError],
        path: str,
        params: Mapping[str, Any],
        method: str = "GET",
        **kw: Any,
    ) -> VendorError:
        if "message" in kw:
            kw["message"] = self.redact(str(kw["message"]))
        err = cls(self.vendor, self.redact(path), self.shown_params(params), method, **kw)
        return self.error_hook(err) if self.error_hook else err

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2**attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # equal jitter

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        weight: int = 1,
        budgets: Sequence[tuple[WeightBudget, int]] = (),
        expect: type | None = None,
    ) -> Any:
        """GET ``path`` and return its JSON.

        ``weight`` is charged to the client's limiter, ``budgets`` to extra buckets (e.g.
        Binance's funding-rate bucket). With ``expect`` (list/dict) an answer of another
        type is an error: an error object in an HTTP 200 raises :class:`VendorError` with
        the vendor's message (not retried: asking again gives the same answer).
        """
        return self._request("GET", path, params, None, weight, budgets, expect)

    def post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        *,
        weight: int = 1,
        budgets: Sequence[tuple[WeightBudget, int]] = (),
        expect: type | None = None,
    ) -> Any:
        """POST ``body`` as JSON to ``path`` and return the JSON answer; as :meth:`get_json`.

        Retried on the same failures as a GET, so a timeout after the vendor acted can send
        the request twice: use it where a duplicate is harmless (a notification) or the
        vendor deduplicates. Logs and errors show the body's fields, secrets masked and long
        values clipped.
        """
        return self._request("POST", path, params, body, weight, budgets, expect)

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        weight: int,
        budgets: Sequence[tuple[WeightBudget, int]],
        expect: type | None,
    ) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        body = None if body is None else {k: v for k, v in body.items() if v is not None}
        fields = {**params, **(body or {})}
        # Vendors echo keys back bare ("Invalid API-key <key>"): mask the values, not only
        # the name=value patterns.
        self._secrets.update(str(v) for k, v in fields.items() if k.lower() in self._secret_params)
        self._secrets.update(TELEGRAM_TOKEN_RE.findall(path))
        # What logs and errors show of the request: query and body fields, clipped.
        display = {k: _clip(v) for k, v in fields.items()} if body else params
        shown = self.describe(path, display)
        tries = {False: 0, True: 0}  # failed attempts: transport/status, malformed body
        while True:
            try:
                return self._attempt(
                    method, path, params, body, display, shown, weight, budgets, expect
                )
            except _Retry as retry:
                tries[retry.malformed] += 1
                n = tries[retry.malformed]
                if n > (self.malformed_retries if retry.malformed else self.max_retries):
                    hint = f"gave up after {n} attempts"
                    raise self._error(
                        retry.cls, path, display, method, hint=hint, **retry.fields
                    ) from None
                delay = retry.after if retry.after is not None else self._backoff(n - 1)
                log.warning(
                    "%s %s %s failed (%s); retry %d in %.2f s", self.vendor, method, shown,
                    self.redact(retry.reason), n, delay,
                )  # fmt: skip
                self.sleep(delay)

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        body: Mapping[str, Any] | None,
        display: Mapping[str, Any],
        shown: str,
        weight: int,
        budgets: Sequence[tuple[WeightBudget, int]],
        expect: type | None,
    ) -> Any:
        if self.limiter is not None and weight:
            self.limiter.acquire(weight)
        for budget, cost in budgets:
            budget.acquire(cost)
        started = time.perf_counter()
        self.requests_sent += 1
        try:
            response = self._client.request(method, path, params=params, json=body)
        except httpx.TransportError as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
            reason = f"{kind}: {type(exc).__name__}: {self.redact(str(exc)) or 'no detail'}"
            raise _Retry(reason, VendorUnavailable, message=reason) from None
        for limiter in (self.limiter, *(b for b, _ in budgets)):
            if limiter is not None:
                limiter.observe(response.headers)
        status = response.status_code
        ms = (time.perf_counter() - started) * 1000
        log.debug("%s %s %s -> %d in %.0f ms", self.vendor, method, shown, status, ms)
        if status != 200:
            self._refuse(response, path, display, method)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = self.redact(response.text[:60])
            message = f"malformed JSON ({exc}; {len(response.content)} bytes, starts {text!r})"
            raise _Retry(
                "malformed JSON", VendorResponseError, True, status=200, message=message
            ) from None
        if expect is None or isinstance(body, expect):
            return body
        code, message = _vendor_message(body)
        if message is None:
            message = f"expected a JSON {expect.__name__}, got {self.redact(response.text[:120])!r}"
            raise self._error(
                VendorResponseError, path, display, method, status=200, message=message
            )
        raise self._error(
            VendorError, path, display, method, status=200, code=code, message=message,
            details=_details(body),
        )  # fmt: skip

    def _refuse(
        self, response: httpx.Response, path: str, params: Mapping[str, Any], method: str = "GET"
    ) -> None:
        """Raise the final error for a non-200, or :class:`_Retry` when it is worth retrying."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        code, message = _vendor_message(body)
        if message is None:
            message = response.reason_phrase or response.text[:200].strip() or "no message"
        fields = {"status": status, "code": code, "message": message, "details": _details(body)}
        if status not in RETRY_STATUSES and status < 500:
            raise self._error(VendorError, path, params, method, **fields)
        cls = VendorRateLimited if status in RATE_LIMIT_STATUSES else VendorUnavailable
        waits = [_retry_after(response.headers)]
        if status in RATE_LIMIT_STATUSES:
            waits.append(_body_retry_after(body, message))
        # Header and body may both name a wait; the longer one is never too early.
        after = max((w for w in waits if w is not None), default=None)
        if after is not None and after > self.max_retry_after:
            hint = (
                f"the vendor asks to wait {after:.0f} s (Retry-After), more than "
                f"max_retry_after={self.max_retry_after:.0f} s; not waiting"
            )
            raise self._error(cls, path, params, method, hint=hint, **fields)
        raise _Retry(f"HTTP {status} {message}", cls, after=after, **fields)


def _details(body: Any) -> dict[str, Any] | None:
    """Structured fields of an error body worth keeping on the error (Telegram's
    ``parameters``); the message and code are taken by :func:`_vendor_message`."""
    params = body.get("parameters") if isinstance(body, dict) else None
    return dict(params) if isinstance(params, dict) else None


def _clip(value: Any) -> Any:
    text = value if isinstance(value, str) else None
    if text is None or len(text) <= _CLIP:
        return value
    return f"{text[:_CLIP]}... ({len(text)} chars)"


class _Retry(Exception):
    """Control flow inside get_json: this attempt failed in a way worth retrying."""

    def __init__(
        self,
        reason: str,
        cls: type[VendorError],
        malformed: bool = False,
        after: float | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(reason)
        self.reason, self.cls, self.malformed, self.after, self.fields = (
            reason, cls, malformed, after, fields,
        )  # fmt: skip


class SessionClient:
    """A vendor client over one :class:`VendorHttpClient` (``self.http``): a context
    manager that closes it, and the count of requests sent on the wire."""

    http: VendorHttpClient

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def request_count(self) -> int:
        """Requests sent on the wire so far, retries included."""
        return self.http.requests_sent
