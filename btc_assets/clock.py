"""The project's one wall clock.

Everything that asks "what time is it" (today's partial partition, the sensors, freshness,
``verify``'s lag, the sandbox's forming candle, the vendor clients' forming-candle cut) reads
it here, through the module attribute (``clock.now_utc()``), so a test can pin the time for all
of them at once. Rate limiters keep ``time.time``: their windows are real seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime


def epoch_seconds() -> float:
    return time.time()


def now_utc() -> datetime:
    return datetime.fromtimestamp(epoch_seconds(), UTC)


def today_utc() -> date:
    return now_utc().date()


def epoch_ms() -> int:
    """The data clock the vendor clients and the sandbox take: what has closed by now."""
    return int(epoch_seconds() * 1000)
