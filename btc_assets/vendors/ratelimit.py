"""Client-side usage budgets: stay under a vendor's limit instead of drawing 429s."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx

from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")


class WeightBudget:
    """A client-side usage budget per fixed clock window (Binance: weight per minute).

    Before a request of known cost, :meth:`acquire` sleeps to the next window if the cost
    would push usage past ``limit * safety``. :meth:`observe` takes the server's own count
    from ``header`` (case-insensitive) when the vendor sends one, since other processes on
    the same IP share it; without a header the budget counts locally, which makes it a plain
    requests-per-window limiter for vendors that publish no counter.

    With a ``store`` the count of each window lives there, under ``name``, shared by every
    process (every run, every pod) that opens the same store: the check and the charge are
    one atomic step in the store, so all of them together stay under ``limit * safety``.
    Clients name a budget after the vendor host and the limit's bucket (:func:`budget_name`)
    so every client of one host shares one count. Without a store it counts in-process.
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
        store: WindowStore | None = None,
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
        self.store = store
        # Two limits of one name but different windows must not share rows.
        self._key = f"{self.name} /{window_seconds:g}s"

    def _current_window(self) -> int:
        return int(self.clock() // self.window_seconds)

    def _roll(self) -> None:
        window = self._current_window()
        if window > self._window:
            self._window, self.used = window, 0

    def acquire(self, cost: int = 1) -> float:
        """Reserve ``cost``; return the seconds slept waiting for the next window."""
        if self.store is not None:
            return self._acquire_shared(self.store, cost)
        with self._lock:  # holding the lock while asleep keeps concurrent callers in line
            self._roll()
            waited = 0.0
            if self.used + cost > self.limit * self.safety and self.used > 0:
                waited = self._wait_for_next(self._window, f"used {self.used} + {cost}")
                # The sleep may be simulated: the window is over whatever the clock says.
                self._window = max(self._window + 1, self._current_window())
                self.used = 0
            self.used += cost
            return waited

    def _wait_for_next(self, window: int, why: str) -> float:
        """Sleep until ``window`` is over; return the seconds slept."""
        waited = max((window + 1) * self.window_seconds - self.clock() + 0.05, 0.0)
        log.info(
            "rate budget %s: %s > %.0f; sleeping %.2f s for the next window",
            self.name, why, self.limit * self.safety, waited,
        )  # fmt: skip
        self.sleep(waited)
        self.slept += waited
        return waited

    def _acquire_shared(self, store: WindowStore, cost: int) -> float:
        """As :meth:`acquire`, but the window's count is the store's: a refusal means the
        processes together filled this window, so sleep to the next one and ask again."""
        with self._lock:
            waited = 0.0
            window = self._current_window()
            while True:
                expires = (window + 1) * self.window_seconds
                used = store.charge(self._key, window, cost, self.limit * self.safety, expires)
                if used is not None:
                    self._window, self.used = window, used
                    return waited
                why = f"the shared window's count + {cost}"
                waited += self._wait_for_next(window, why)
                # The sleep may be simulated: the window is over whatever the clock says.
                window = max(window + 1, self._current_window())

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
            if self.store is None:
                self.used = int(value)
                return
            # The header counts every process on the key or IP: the shared count follows it
            # up, never down (a late answer may predate charges made since).
            expires = (self._window + 1) * self.window_seconds
            self.used = self.store.raise_to(self._key, self._window, int(value), expires)


def budget_name(base_url: str, bucket: str) -> str:
    """The shared count's name: the vendor host (with its port, if any) and the bucket of
    the limit (``fapi.binance.com weight``), so every client of one host shares it."""
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:  # a malformed port: the client's own URL check names the setting
        port = None
    host = (parts.hostname or base_url).lower()
    return f"{host}:{port} {bucket}" if port else f"{host} {bucket}"
