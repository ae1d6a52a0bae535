"""Client-side usage budgets: stay under a vendor's limit instead of drawing 429s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import httpx

log = logging.getLogger("btc_assets.vendors")


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

    def until_next_window(self) -> float:
        """Seconds until the next window opens (plus the same hair :meth:`acquire` adds):
        how long a rate-limit answer that names no wait should wait."""
        with self._lock:
            opens = (self._current_window() + 1) * self.window_seconds
            return max(opens - self.clock(), 0.0) + 0.05

    def observe(self, headers: httpx.Headers | Mapping[str, str]) -> None:
        if self.header is None:
            return
        value = headers.get(self.header) or headers.get(self.header.lower())
        if value is None or not str(value).strip().isdigit():
            return
        with self._lock:
            self._roll()
            self.used = int(value)
