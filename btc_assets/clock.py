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


def run_from(start: float, speed: float = 1.0) -> None:
    """Make this process's clock start at ``start`` (epoch seconds) and run ``speed`` times
    faster than real time: an accelerated sandbox (``btc-assets stream --sandbox-clock``,
    the stream benchmarks). Never used in live mode."""
    global epoch_seconds
    real0 = time.time()

    def accelerated() -> float:
        return start + (time.time() - real0) * speed

    epoch_seconds = accelerated


def now_utc() -> datetime:
    return datetime.fromtimestamp(epoch_seconds(), UTC)


def today_utc() -> date:
    return now_utc().date()


def epoch_ms() -> int:
    """The data clock the vendor clients and the sandbox take: what has closed by now."""
    return int(epoch_seconds() * 1000)
