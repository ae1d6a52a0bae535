"""What goes wrong talking to a vendor, and how secrets are kept out of what is said.

One ``redact`` for every log line and error; ``VendorError`` names the vendor, endpoint,
parameters (redacted), HTTP status and the vendor's own code and message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

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
TELEGRAM_TOKEN_RE = re.compile(r"/bot(\d+:[A-Za-z0-9_-]+)")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with keys and tokens masked: known secret values, ``apikey=...``-style query
    parameters, ``Authorization:``-style headers and Telegram's ``/bot<token>`` path."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _PARAM_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return TELEGRAM_TOKEN_RE.sub(f"/bot{MASK}", text)


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


class VendorRefused(VendorError):
    """A definite "no": the plan does not serve it, the endpoint or symbol does not exist
    (404), or the vendor has no history there. Retrying will not change the answer, so this
    is the only failure a fallback may act on; a transient failure must fail the step."""


class VendorResponseError(VendorError):
    """An answer we cannot use: malformed or truncated JSON, or a shape that drifted."""
