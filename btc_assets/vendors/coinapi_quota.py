"""CoinAPI's quota headers, read from every answer (errors included) for run metadata.

CoinAPI counts "request credits" in a 24 h window: one per 100 items returned. Each answer
says where the key stands in ``x-ratelimit-limit``, ``-remaining`` (negative with overage),
``-used``, ``-request-cost`` and ``-reset`` (an ISO time), per the recorded headers in
vendor-apis.md §5.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from btc_assets.vendors.coinapi_parse import iso_ticks
from btc_assets.vendors.ratelimit import WeightBudget


@dataclass(frozen=True)
class CoinApiQuota:
    """The ``x-ratelimit-*`` headers of the last answer (None where one was absent).
    ``remaining`` goes negative on plans with overage."""

    limit: int | None
    remaining: int | None
    used: int | None
    request_cost: int | None
    reset: datetime | None


def header_int(headers: httpx.Headers | Mapping[str, str], name: str) -> int | None:
    raw = str(headers.get(name) or "").strip()
    return int(raw) if re.fullmatch(r"-?\d+", raw) else None


def header_time(headers: httpx.Headers | Mapping[str, str], name: str) -> datetime | None:
    raw = headers.get(name)
    try:
        ticks = iso_ticks(raw) if raw else None
    except ValueError:
        return None
    if ticks is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)


class QuotaHeaders(WeightBudget):
    """Not a throttle: the cost of a CoinAPI request is known only from its answer. The
    session calls ``observe`` with the headers of every answer, errors included, which is
    where the quota is read. ``acquire`` is never called (requests are sent with weight 0)."""

    def __init__(self) -> None:
        super().__init__(1, 1.0, name="coinapi quota headers")
        self.last: CoinApiQuota | None = None
        self.credits = 0
        self._quota_lock = threading.Lock()

    def observe(self, headers: httpx.Headers | Mapping[str, str]) -> None:
        quota = CoinApiQuota(
            *(header_int(headers, f"x-ratelimit-{n}") for n in ("limit", "remaining", "used")),
            header_int(headers, "x-ratelimit-request-cost"),
            header_time(headers, "x-ratelimit-reset"),
        )
        if quota == CoinApiQuota(None, None, None, None, None):
            return  # a proxy's page or a fault: keep what the vendor said last
        with self._quota_lock:
            self.last = quota
            self.credits += max(quota.request_cost or 0, 0)
