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
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

log = logging.getLogger("btc_assets.vendors")

RETRY_STATUSES = frozenset({408, 418, 429})  # and every 5xx
RATE_LIMIT_STATUSES = frozenset({418, 429})
SECRET_PARAMS = frozenset(
    {"apikey", "api_key", "api-key", "token", "access_token", "signature", "secret", "password"}
)
SECRET_HEADERS = frozenset(
    {"authorization", "x-mbx-apikey", "cg-api-key", "x-coinapi-key", "x-api-key"}
)
MASK = "***"
_PARAM_RE = re.compile(
    r"(?i)\b(" + "|".join(re.escape(n) for n in sorted(SECRET_PARAMS)) + r")=([^&\s,}'\"]+)"
)
_HEADER_RE = re.compile(
    r"(?i)\b(" + "|".join(re.escape(n) for n in sorted(SECRET_HEADERS)) + r")"
    r"(['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+)?([^\s,'\"}]+)"
)
_TELEGRAM_RE = re.compile(r"/bot(\d+:[A-Za-z0-9_-]+)")
_RETRY_AFTER_TEXT = re.compile(r"(?i)retry after (\d+(?:\.\d+)?)")
_CLIP = 80  # characters of a POST body field shown in logs and errors (message texts are long)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with keys and tokens masked: known secret values, ``apikey=...``-style query
    parameters, ``Authorization:``-style headers and Telegram's ``/bot<token>`` path."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PARAM_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _TELEGRAM_RE.sub(f"/bot{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks secrets in third-party log records: httpx logs every request URL at INFO, and
    some vendors carry the secret in the URL (Telegram's ``/bot<token>``, ``apikey=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: logging reports it at emit
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_REDACTING_FILTER = RedactingFilter()
logging.getLogger("httpx").addFilter(_REDACTING_FILTER)


class VendorConfigError(ValueError):
    """A vendor client cannot be built from the settings it was given."""


class VendorError(Exception):
    """A vendor call failed; ``str()`` says where and why, never with a secret in it.

    ``params`` are stored already redacted. The fields are positional ``args`` so the error
    pickles (Dagster may ship it across processes). ``details`` holds structured fields of
    the vendor's error body that a vendor module may act on (Telegram's ``parameters``:
    ``retry_after``, ``migrate_to_chat_id``); it is not part of ``str()``.
    """

    def __init__(
        self,
        vendor: str,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
        status: int | None = None,
        code: int | str | None = None,
        message: str = "",
        hint: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            vendor, endpoint, dict(params or {}), method, status, code, message, hint, details
        )
        self.vendor, self.endpoint, self.params, self.method = (
            vendor,
            endpoint,
            self.args[2],
            method,
        )
        self.status, self.code, self.message, self.hint = status, code, message, hint
        self.details: Mapping[str, Any] = dict(details or {})

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in (self.params or {}).items())
        outcome = f"HTTP {self.status}" if self.status is not None else "no response"
        if self.code is not None:
            outcome += f" code {self.code}"
        text = f"{self.vendor} {self.method} {self.endpoint} {{{shown}}} -> {outcome}: "
        text += self.message
        return f"{text} -- {self.hint}" if self.hint else text

    def evolve(self, cls: type[VendorError], hint: str = "") -> VendorError:
        """The same failure as a more specific class (vendors refine generic errors)."""
        return cls(*self.args[:7], hint or self.hint, *self.args[8:])


class VendorRateLimited(VendorError):
    """429/418 that retrying did not cure, or a ban longer than we are willing to wait."""


class VendorUnavailable(VendorError):
    """5xx, timeouts or dropped connections on every attempt."""


class VendorResponseError(VendorError):
    """An answer we cannot use: malformed or truncated JSON, or a shape that drifted."""


class WeightBudget:
    """A client-side usage budget per fixed clock window (Binance: weight per minute).

    Before a request of known cost, :meth:`acquire` sleeps to the next window if the cost
    would push usage past ``limit * safety``. :meth:`observe` takes the server's own count
    from ``header`` (case-insensitive) when the vendor sends one, since other processes on
    the same IP share it; without a header the budget counts locally, which makes it a plain
    requests-per-window limiter for vendors that publish no counter.
    """

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        *,
        header: str | None = None,
        safety: float = 0.9,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        name: str = "",
    ) -> None:
        if limit <= 0 or window_seconds <= 0 or not 0 < safety <= 1:
            raise ValueError("WeightBudget needs limit > 0, window > 0 and 0 < safety <= 1")
        self.limit = limit
        self.window_seconds = window_seconds
        self.header = header
        self.safety = safety
        self.clock = clock
        self.sleep = sleep
        self.name = name or f"{limit}/{window_seconds:g}s"
        self.used = 0
        self.slept = 0.0  # total seconds waited, for logs and tests
        self._window = -1
        self._lock = threading.Lock()

    def _current_window(self) -> int:
        return int(self.clock() // self.window_seconds)

    def _roll(self) -> None:
        window = self._current_window()
        if window > self._window:
            self._window, self.used = window, 0

    def acquire(self, cost: int = 1) -> float:
        """Reserve ``cost``; return the seconds slept waiting for the next window."""
        with self._lock:  # holding the lock while asleep keeps concurrent callers in line
            self._roll()
            waited = 0.0
            if self.used + cost > self.limit * self.safety and self.used > 0:
                waited = (self._window + 1) * self.window_seconds - self.clock() + 0.05
                waited = max(waited, 0.0)
                log.info(
                    "rate budget %s: used %d + %d > %.0f; sleeping %.2f s for the next window",
                    self.name,
                    self.used,
                    cost,
                    self.limit * self.safety,
                    waited,
                )
                self.sleep(waited)
                self.slept += waited
                # The sleep may be simulated: the window is over whatever the clock says.
                self._window = max(self._window + 1, self._current_window())
                self.used = 0
            self.used += cost
            return waited

    def observe(self, headers: httpx.Headers | Mapping[str, str]) -> None:
        if self.header is None:
            return
        value = headers.get(self.header) or headers.get(self.header.lower())
        if value is None or not str(value).strip().isdigit():
            return
        with self._lock:
            self._roll()
            self.used = int(value)


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
        self._secrets.update(_TELEGRAM_RE.findall(path))
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
