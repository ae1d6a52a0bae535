"""A per-UTC-day request budget that refuses instead of waiting (Alpha Vantage's free tier).

A per-minute budget (:class:`~btc_assets.vendors.ratelimit.WeightBudget`) sleeps to the next
window; waiting for tomorrow is no plan, so :class:`DailyBudget` raises
:class:`DailyBudgetSpent` before a request would pass the day's ``limit``: nothing is sent.

It plugs into the HTTP session as one of a request's ``budgets``, so every attempt on the
wire (retries included: the vendor counts those too) is charged. With ``path`` the count is
kept in a small JSON file (``{"day": "YYYY-MM-DD", "used": N}``), shared by every process
that names the same file: read and written under an exclusive lock on a sibling ``.lock``
file, and replaced atomically (temporary file + rename), so a crash never leaves half a
count. A new UTC day starts from zero.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from btc_assets.vendors.ratelimit import WeightBudget

log = logging.getLogger("btc_assets.vendors")
DAY_SECONDS = 86_400.0


class DailyBudgetSpent(Exception):
    """The day's requests are used up; nothing was sent. Vendor clients turn it into their
    own error (which names the endpoint); ``str()`` says how many and which day."""

    def __init__(self, name: str, used: int, limit: int, day: date) -> None:
        super().__init__(name, used, limit, day)
        self.name, self.used, self.limit, self.day = name, used, limit, day

    def __str__(self) -> str:
        return (
            f"daily request budget {self.name} spent: {self.used} of {self.limit} requests "
            f"used on {self.day.isoformat()} (UTC); nothing sent, it renews at 00:00 UTC"
        )


class DailyBudget(WeightBudget):
    """At most ``limit`` requests per UTC day, counted in memory or in the JSON file ``path``.

    ``clock`` gives epoch seconds (tests pass a fake one). A subclass of ``WeightBudget`` with
    a one-day window so the HTTP session can charge it like any other budget; unlike the
    parent it never sleeps and takes no server header.
    """

    def __init__(
        self,
        limit: int = 25,
        *,
        path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "",
    ) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"DailyBudget: limit={limit!r}; expected a whole number > 0")
        super().__init__(limit, DAY_SECONDS, safety=1.0, clock=clock, name=name or f"{limit}/day")
        self.path = Path(path) if path is not None else None
        self._day: date | None = None  # the in-memory count's day (without a file)

    # --- what the client asks -----------------------------------------------------------

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), UTC).date()

    def used_today(self) -> int:
        with self._locked():
            return self._load(self.today())

    def remaining(self) -> int:
        return max(self.limit - self.used_today(), 0)

    def check(self, cost: int = 1) -> None:
        """Raise :class:`DailyBudgetSpent` if ``cost`` more requests would pass the limit."""
        with self._locked():
            day = self.today()
            used = self._load(day)
            if used + cost > self.limit:
                raise DailyBudgetSpent(self.name, used, self.limit, day)

    def acquire(self, cost: int = 1) -> float:
        """Charge ``cost`` requests to today, or raise :class:`DailyBudgetSpent` (nothing
        charged). Returns 0.0: this budget never sleeps."""
        with self._locked():
            day = self.today()
            used = self._load(day)
            if used + cost > self.limit:
                raise DailyBudgetSpent(self.name, used, self.limit, day)
            self._store(day, used + cost)
            return 0.0

    def spend_all(self) -> None:
        """Mark today as used up: the vendor said so (the key's quota is shared with other
        programs, or a count was lost), and asking again today only wastes a call."""
        with self._locked():
            day = self.today()
            if self._load(day) < self.limit:
                log.warning("daily budget %s: the vendor reports today's quota spent; "
                            "no more requests until 00:00 UTC", self.name)  # fmt: skip
                self._store(day, self.limit)

    # --- the count, in memory or on disk ------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's lock, then (with a file) an exclusive lock other processes honour."""
        with self._lock:
            if self.path is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_name(self.path.name + ".lock")
            with open(lock_path, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self, day: date) -> int:
        if self.path is None:
            return self.used if self._day == day else 0
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        try:
            state = json.loads(text)
            stored_day, used = date.fromisoformat(state["day"]), int(state["used"])
        except (ValueError, TypeError, KeyError) as exc:
            # Starting again from zero could spend a quota twice: make someone look.
            raise ValueError(
                f"daily budget file {self.path} is unreadable ({exc!r}); fix or delete it"
            ) from None
        return used if stored_day == day else 0

    def _store(self, day: date, used: int) -> None:
        self._day, self.used = day, used
        if self.path is None:
            return
        payload = json.dumps({"day": day.isoformat(), "used": used, "limit": self.limit})
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(payload + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # atomic: readers see the old count or the new one
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
