"""Basket members worked on at once, inside one asset step.

A step covers every symbol of the basket for its range of days (one daily partition holds the
whole basket), so without this its wall time is the sum of its symbols'. A member's work is
mostly waiting: vendor round trips, zstd and Parquet in pyarrow, sha256 and fsync of lake
files, Polars queries; all of them release the GIL, so threads overlap them on any number of
cores without a process per symbol (whose start-up and pickled frames would cost more than
the work). ``BTC_ASSETS_SYMBOL_WORKERS`` bounds them (``DatasetResource.symbol_workers``).

The work given here must not log through Dagster's context nor yield events: it returns what
the step reports, and the step reports it in basket order, so the event log reads the same
whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_members(
    work: Callable[[Item], Result], items: Sequence[Item], workers: int
) -> list[Result]:
    """``work(item)`` for every item, up to ``workers`` at once; results in ``items`` order.

    The first exception raised (in ``items`` order) propagates once every started item has
    ended: no write of another member is cut off halfway, and the step fails as it would
    have one member at a time.
    """
    if workers < 1:
        raise ValueError(f"symbol workers {workers!r}: expected a whole number >= 1")
    if workers == 1 or len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                            thread_name_prefix="btc-assets-member") as pool:  # fmt: skip
        futures = [pool.submit(work, item) for item in items]
    return [future.result() for future in futures]
