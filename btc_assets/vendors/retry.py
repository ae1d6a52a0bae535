"""The one retry policy every vendor request follows, on ``tenacity``.

One request is one tenacity loop, whoever the vendor: nothing above it retries again, so a
page can never wait "retries x retries". An attempt that fails in a way worth repeating
raises :class:`Transient`; anything else (a definite refusal, a shape we cannot use) passes
through untouched and is never retried.

Wait: what the vendor asks (``Retry-After`` in seconds or as an HTTP date, Telegram's
``retry_after``), else exponential backoff with equal jitter; on a vendor whose limit is a
clock window, a rate-limit answer that names no wait waits for the next window.

Stop: after ``max_retries`` failed attempts (``malformed_retries`` for unparseable bodies),
or before the request's total time (on the wire plus asleep) would pass
``max_wait_seconds``. A vendor asking for a longer wait than that fails at once, naming it.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import tenacity

from btc_assets.vendors.errors import VendorError, VendorRateLimited

log = logging.getLogger("btc_assets.vendors")
T = TypeVar("T")
_RETRY_AFTER_TEXT = re.compile(r"(?i)retry after (\d+(?:\.\d+)?)")


class Transient(Exception):
    """This attempt failed in a way worth repeating; ``cls`` and ``fields`` make the final
    error if the policy stops. ``after`` is the wait the vendor asked for, if any."""

    def __init__(
        self,
        reason: str,
        cls: type[VendorError],
        *,
        malformed: bool = False,
        after: float | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(reason)
        self.reason, self.cls, self.malformed, self.after, self.fields = (
            reason, cls, malformed, after, fields,
        )  # fmt: skip

    @property
    def rate_limited(self) -> bool:
        return issubclass(self.cls, VendorRateLimited)


def parse_retry_after(raw: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    Junk (``nan``, ``inf``, a negative number, text that is no date) counts as absent, so
    the caller falls back to its own backoff; a date in the past means "now" (0).
    """
    if raw is None:
        return None
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        return max(when.timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def body_retry_after(body: Any, message: str | None) -> float | None:
    """The wait a rate-limit body asks for: Telegram's ``parameters.retry_after``, else a
    "retry after N" in the message (some Telegram 429s come without ``parameters``)."""
    params = body.get("parameters") if isinstance(body, dict) else None
    value = params.get("retry_after") if isinstance(params, dict) else None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0:  # JSON parsers accept NaN, Infinity
        return float(value)
    found = _RETRY_AFTER_TEXT.search(message or "")
    return float(found.group(1)) if found else None


@dataclass(frozen=True)
class RetryPolicy:
    """The knobs, the same for every vendor; see the module docstring for what they do."""

    max_retries: int = 5
    malformed_retries: int = 2
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_wait_seconds: float = 120.0

    def __post_init__(self) -> None:
        for name in ("max_retries", "malformed_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"retry policy: {name}={value!r}; expected a whole number >= 0")
        for name in ("backoff_base", "backoff_cap", "max_wait_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"retry policy: {name}={value!r}; expected seconds >= 0")

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Equal jitter: half the exponential ceiling for sure, the other half at random."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(failures - 1, 0))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RequestRetry:
    """One request's run through the policy: counts its failures and its time.

    ``give_up(transient, verdict)`` builds the final error when the policy stops;
    ``window_wait`` (seconds to the rate limiter's next window) makes a rate-limit answer
    without a stated wait wait for that window; ``shown`` is the request as logs show it.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None],
        rng: random.Random,
        give_up: Callable[[Transient, str], VendorError],
        shown: str,
        window_wait: Callable[[], float] | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.policy, self.sleep, self.rng = policy, sleep, rng
        self.give_up, self.shown, self.window_wait, self.redact = (
            give_up, shown, window_wait, redact,
        )  # fmt: skip
        self.failures = {False: 0, True: 0}  # by kind: transport/status/code, malformed body
        self.wire_seconds = 0.0  # time inside the HTTP exchanges (a timeout takes real time)
        self.verdict = ""

    def on_wire(self, seconds: float) -> None:
        self.wire_seconds += seconds

    def call(self, attempt: Callable[[], T]) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            wait=self._wait,
            stop=self._stop,
            sleep=self.sleep,
            before_sleep=self._log,
            retry_error_callback=self._fail,
        )
        return retrying(self._counted, attempt)

    def _counted(self, attempt: Callable[[], T]) -> T:
        try:
            return attempt()
        except Transient as exc:
            self.failures[exc.malformed] += 1
            raise

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = _transient(state)
        if exc.after is not None:
            return exc.after
        delay = self.policy.backoff(self.failures[exc.malformed], self.rng)
        if exc.rate_limited and self.window_wait is not None:
            delay = max(delay, self.window_wait())
        return delay

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        """Runs after ``_wait``: ``state.upcoming_sleep`` is the wait it chose."""
        exc, policy = _transient(state), self.policy
        limit = policy.malformed_retries if exc.malformed else policy.max_retries
        spent = self.wire_seconds + state.idle_for
        attempts = state.attempt_number
        if self.failures[exc.malformed] > limit:
            self.verdict = f"gave up after {_attempts(attempts)} in {spent:.1f} s"
        elif exc.after is not None and exc.after > policy.max_wait_seconds:
            self.verdict = (
                f"the vendor asks to wait {exc.after:.0f} s (Retry-After), more than "
                f"max_wait_seconds={policy.max_wait_seconds:g}; not waiting"
            )
        elif spent + state.upcoming_sleep > policy.max_wait_seconds:
            self.verdict = (
                f"gave up after {_attempts(attempts)} in {spent:.1f} s: waiting "
                f"{state.upcoming_sleep:.1f} s more would pass "
                f"max_wait_seconds={policy.max_wait_seconds:g}"
            )
        return bool(self.verdict)

    def _log(self, state: tenacity.RetryCallState) -> None:
        exc = _transient(state)
        log.warning(
            "%s failed (%s); retry %d in %.2f s", self.shown, self.redact(exc.reason),
            state.attempt_number, state.upcoming_sleep,
        )  # fmt: skip

    def _fail(self, state: tenacity.RetryCallState) -> Any:
        raise self.give_up(_transient(state), self.verdict) from None


def _transient(state: tenacity.RetryCallState) -> Transient:
    exc = state.outcome.exception() if state.outcome is not None else None
    if not isinstance(exc, Transient):  # retry_if_exception_type lets nothing else in
        raise TypeError(f"retry policy consulted about {exc!r}, not a Transient failure")
    return exc


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"
