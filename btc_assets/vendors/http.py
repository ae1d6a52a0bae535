"""The HTTP session every vendor client shares: one retry policy, rate limits, redaction.

No Dagster here. A vendor module builds one :class:`VendorHttpClient` per base URL and calls
:meth:`VendorHttpClient.get_json` (or :meth:`~VendorHttpClient.post_json`); what comes back is
parsed JSON, what goes wrong is a :class:`VendorError` whose text names the vendor, endpoint,
parameters (secrets redacted), HTTP status and the vendor's own code and message.

Every request runs through one :class:`~btc_assets.vendors.retry.RequestRetry` loop (see
``vendors/retry.py`` for the policy). This module decides what is worth retrying:
408/418/429/5xx, timeouts and dropped connections, malformed JSON, and the vendor codes a
client declares transient (``transient_codes``), in an error body of any status, HTTP 200
included. Everything else fails at once: a 4xx, a definite vendor code, a shape we cannot use.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, Self

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
from btc_assets.vendors.retry import (
    RequestRetry,
    RetryPolicy,
    Transient,
    body_retry_after,
    parse_retry_after,
)

log = logging.getLogger("btc_assets.vendors")
_CLIP = 80  # characters of a POST body field shown in logs and errors (message texts are long)


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
    return body.get("code"), None


class VendorHttpClient:
    """One vendor host: a pooled ``httpx.Client`` with the retry policy, a rate budget and
    redaction.

    ``transient_codes`` maps vendor codes (compared as text) that mean "try again" to the
    error class raised if retrying does not cure them (Binance -1003 → VendorRateLimited).
    ``error_body`` says whether an HTTP 200 body is an error answer (CoinGlass's envelope
    with a non-"0" code); without it, a 200 body of another type than ``expect`` is one.
    ``wait_window_on_rate_limit``: a rate-limit answer naming no wait waits for the
    limiter's next window (a vendor whose limit is per clock minute). ``clock`` (epoch
    seconds) reads ``Retry-After`` dates; ``sleep`` is every wait, so tests can fake both.
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
        max_wait_seconds: float = 120.0,
        headers: Mapping[str, str] | None = None,
        secret_params: Iterable[str] = (),
        secret_headers: Iterable[str] = (),
        limiter: WeightBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        base_url_setting: str | None = None,
        error_hook: Callable[[VendorError], VendorError] | None = None,
        transient_codes: Mapping[int | str, type[VendorError]] | None = None,
        error_body: Callable[[Any], bool] | None = None,
        wait_window_on_rate_limit: bool = False,
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
        try:
            self.policy = RetryPolicy(
                max_retries, malformed_retries, backoff_base, backoff_cap, max_wait_seconds
            )
        except ValueError as exc:
            raise VendorConfigError(f"{vendor}: {exc}") from None
        self.limiter = limiter
        self.sleep = sleep
        self.clock = clock
        self.error_hook = error_hook
        self.error_body = error_body
        self.wait_window_on_rate_limit = wait_window_on_rate_limit
        self._transient_codes = {_code_key(k): v for k, v in (transient_codes or {}).items()}
        self._rng = rng or random.Random()
        self.requests_sent = 0  # every attempt on the wire, retries included
        self._count_lock = threading.Lock()
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
        if "hint" in kw:
            kw["hint"] = self.redact(str(kw["hint"]))
        err = cls(self.vendor, self.redact(path), self.shown_params(params), method, **kw)
        return self.error_hook(err) if self.error_hook else err

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
        the vendor's message, after retries if its code is one of ``transient_codes``.
        """
        return self._request("GET", path, params, None, weight, budgets, expect)

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET ``path`` and return the body as it came (a zip, a checksum file), with the
        same retries and errors as :meth:`get_json`; only HTTP 200 counts as an answer."""
        return self._request("GET", path, params, None, 0, (), bytes)  # type: ignore[no-any-return]

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

        def give_up(failure: Transient, verdict: str) -> VendorError:
            return self._error(failure.cls, path, display, method, hint=verdict, **failure.fields)

        window = self.limiter.until_next_window if self.limiter is not None else None
        run = RequestRetry(
            self.policy, sleep=self.sleep, rng=self._rng, give_up=give_up,
            shown=f"{self.vendor} {method} {self.describe(path, display)}",
            window_wait=window if self.wait_window_on_rate_limit else None, redact=self.redact,
        )  # fmt: skip
        return run.call(
            lambda: self._attempt(method, path, params, body, display, weight, budgets, expect, run)
        )

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        body: Mapping[str, Any] | None,
        display: Mapping[str, Any],
        weight: int,
        budgets: Sequence[tuple[WeightBudget, int]],
        expect: type | None,
        run: RequestRetry,
    ) -> Any:
        if self.limiter is not None and weight:
            self.limiter.acquire(weight)
        for budget, cost in budgets:
            budget.acquire(cost)
        started = time.perf_counter()
        with self._count_lock:  # clients may share one session across threads
            self.requests_sent += 1
        try:
            response = self._client.request(method, path, params=params, json=body)
        except httpx.TransportError as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
            reason = f"{kind}: {type(exc).__name__}: {self.redact(str(exc)) or 'no detail'}"
            raise Transient(reason, VendorUnavailable, message=reason) from None
        finally:
            run.on_wire(time.perf_counter() - started)
        for limiter in (self.limiter, *(b for b, _ in budgets)):
            if limiter is not None:
                limiter.observe(response.headers)
        status = response.status_code
        ms = (time.perf_counter() - started) * 1000
        log.debug("%s -> %d in %.0f ms", run.shown, status, ms)
        if status != 200:
            self._refuse(response, path, display, method)
        if expect is bytes:
            return response.content
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = self.redact(response.text[:60])
            message = f"malformed JSON ({exc}; {len(response.content)} bytes, starts {text!r})"
            raise Transient(
                "malformed JSON", VendorResponseError, malformed=True, status=200, message=message
            ) from None
        if self.error_body is not None:
            failed = self.error_body(answer)
        else:
            failed = expect is not None and not isinstance(answer, expect)
        if not failed:
            return answer
        code, message = self.vendor_message(answer)
        if code is None and message is None:
            wanted = f"a JSON {expect.__name__}" if expect is not None else "a data answer"
            message = f"expected {wanted}, got {self.redact(response.text[:120])!r}"
            raise self._error(
                VendorResponseError, path, display, method, status=200, message=message
            )
        self.raise_failure(response, answer, code, message, path, display, method)

    def _refuse(
        self, response: httpx.Response, path: str, params: Mapping[str, Any], method: str = "GET"
    ) -> NoReturn:
        """A non-200: always raises, :class:`Transient` when it is worth retrying."""
        try:
            body = response.json()
        except ValueError:
            body = None
        code, message = self.vendor_message(body)
        self.raise_failure(response, body, code, message, path, params, method)

    # --- what a vendor's session may override (its own error habits), calling super() -----

    def vendor_message(self, body: Any) -> tuple[int | str | None, str | None]:
        """The (code, message) an error body carries; override where a vendor nests them
        (CryptoQuant's ``status``)."""
        return _vendor_message(body)

    def add_secret(self, value: str) -> None:
        """One more value to mask wherever it appears (a token a vendor echoes on its own)."""
        if value:
            self._secrets.add(value)

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
        """Raise the failure ``response`` carries: :class:`Transient` for a retryable status
        or a transient vendor code, else the final :class:`VendorError` (never retried).

        A vendor whose statuses or texts mean something else (CoinAPI's final 550, Alpha
        Vantage's throttle vs. spent quota inside HTTP 200) overrides this, raises what it
        knows, and calls ``super().raise_failure`` for the rest."""
        status = response.status_code
        if message is None and status != 200:
            message = response.reason_phrase or response.text[:200].strip()
        message = message or "no message"
        fields = {"status": status, "code": code, "message": message, "details": _details(body)}
        if status in RETRY_STATUSES or status >= 500:
            cls: type[VendorError] | None = (
                VendorRateLimited if status in RATE_LIMIT_STATUSES else VendorUnavailable
            )
        else:
            cls = self._transient_codes.get(_code_key(code)) if code is not None else None
        if cls is None:
            raise self._error(VendorError, path, params, method, **fields)
        waits = [parse_retry_after(response.headers.get("retry-after"), self.clock())]
        if issubclass(cls, VendorRateLimited):
            waits.append(body_retry_after(body, message))
        # Header and body may both name a wait; the longer one is never too early.
        after = max((w for w in waits if w is not None), default=None)
        shown_code = f" code {code}" if code is not None else ""
        raise Transient(f"HTTP {status}{shown_code} {message}", cls, after=after, **fields)


def _code_key(code: int | str) -> str:
    return str(code).strip()


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
