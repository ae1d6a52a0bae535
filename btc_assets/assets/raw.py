"""Raw vendor feeds: one daily-partitioned asset per feed, one lake table each.

A day already complete in the lake (its manifest verifies) and older than the tail window
is reused without a request, unless the run carries the ``btc_assets/force`` tag. Each vendor
module supplies how to fetch a list of days: per day (Binance klines, whose request count per
day is part of the contract) or per contiguous span (CoinGlass pages 1000 bars per request).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.common import (
    LAKE_KINDS,
    forced,
    range_days,
    record_range,
    table_key,
)
from btc_assets.core.schema import conform, partition_day_expr
from btc_assets.core.tables import Table
from btc_assets.defs import checks
from btc_assets.defs.partitions import DAILY, SINGLE_RUN


@dataclass
class Fetched:
    """What a fetch of some days brought back."""

    frames: dict[date, pl.DataFrame] = field(default_factory=dict)
    day_metadata: dict[date, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0


# (resources, symbol, days to fetch) -> Fetched
FetchDays = Callable[[Any, str, list[date]], Fetched]


def spans(days: list[date]) -> list[tuple[date, date]]:
    """Maximal runs of consecutive days, as (first, last)."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def split_days(frame: pl.DataFrame, days: list[date]) -> dict[date, pl.DataFrame]:
    """A range frame cut into partition days; a day without rows gets an empty frame."""
    parts = frame.with_columns(_day=partition_day_expr()).partition_by(
        "_day", as_dict=True, include_key=False
    )
    empty = frame.clear()
    return {day: parts.get((day,), empty) for day in days}


def raw_asset(
    table: Table, group: str, vendor_resources: set[str], fetch: FetchDays
) -> dg.AssetsDefinition:
    @dg.asset(
        name=table.name,
        description=table.description,
        partitions_def=DAILY,
        backfill_policy=SINGLE_RUN,
        group_name=group,
        kinds=LAKE_KINDS,
        required_resource_keys={"dataset", *vendor_resources},
        check_specs=[checks.quality_check_spec(table_key(table))],
    )
    def _asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        days = range_days(context)
        # Every bar closed before the fetch starts must be there, today's included.
        as_of = clock.now_utc() if clock.today_utc() in days else None
        dataset = context.resources.dataset
        lake, symbol = dataset.lake(), dataset.symbol
        force, today = forced(context), clock.today_utc()
        stale = [
            day
            for day in days
            if force
            or not dataset.reusable(day, today)
            or not lake.is_complete(table.name, symbol, day)
        ]
        fetched = fetch(context.resources, symbol, stale) if stale else Fetched()
        for day in stale:
            frame = fetched.frames.get(day)
            if frame is None:
                frame = pl.DataFrame(schema=dict(table.schema))
            lake.write_day(table.name, symbol, day, conform(frame, dict(table.schema)))
        metadata: dict[date, dict[str, Any]] = {
            day: {"source": "reused", "http_requests": 0} for day in days if day not in stale
        }
        for day in stale:
            metadata[day] = {"source": "vendor", **fetched.day_metadata.get(day, {})}
        context.log.info(
            f"{table.name}: fetched {len(stale)} day(s) in {fetched.requests} request(s), "
            f"reused {len(days) - len(stale)}"
        )
        yield from record_range(
            context,
            table,
            lake,
            symbol,
            days,
            metadata,
            {"run_http_requests": fetched.requests},
            as_of=as_of,
        )

    return _asset
