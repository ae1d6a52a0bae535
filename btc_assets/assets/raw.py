"""Raw vendor feeds: one daily-partitioned asset per feed, one lake table each.

A day already complete in the lake (its manifest verifies) and older than the tail window
is reused without a request, unless the run carries the ``btc_assets/force`` tag.
"""

from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import checks
from btc_assets.assets.common import Table, forced, range_days, record_range, today_utc
from btc_assets.core.schema import FUNDING_SCHEMA, KLINE_SCHEMA, day_bounds
from btc_assets.partitions import DAILY, SINGLE_RUN
from btc_assets.resources import BinanceResource, DatasetResource
from btc_assets.vendors.binance import BinanceClient

Fetch = Callable[[BinanceClient, str, datetime, datetime], pl.DataFrame]

SPOT_1M = Table(
    "binance_spot_klines_1m",
    KLINE_SCHEMA,
    "1m",
    "Binance spot 1m klines (GET /api/v3/klines), ts = bar close time.",
)
PERP_1M = Table(
    "binance_perp_klines_1m",
    KLINE_SCHEMA,
    "1m",
    "Binance USD-M perpetual 1m klines (GET /fapi/v1/klines), ts = bar close time.",
)
FUNDING = Table(
    "binance_funding_rate",
    FUNDING_SCHEMA,
    None,
    "Binance USD-M funding settlements (GET /fapi/v1/fundingRate), ts rounded to the minute.",
    required=("funding_rate",),
)

_FETCHERS: dict[str, Fetch] = {
    SPOT_1M.name: lambda c, s, a, b: c.spot_klines(s, "1m", a, b),
    PERP_1M.name: lambda c, s, a, b: c.futures_klines(s, "1m", a, b),
    FUNDING.name: lambda c, s, a, b: c.funding_rate(s, a, b),
}
RAW_TABLES = (SPOT_1M, PERP_1M, FUNDING)


def _raw_asset(table: Table) -> dg.AssetsDefinition:
    fetch = _FETCHERS[table.name]

    @dg.asset(
        name=table.name,
        description=table.description,
        partitions_def=DAILY,
        backfill_policy=SINGLE_RUN,
        group_name="binance",
        kinds=table.kinds,
        check_specs=[checks.quality_check_spec(table.key)],
    )
    def _asset(
        context: dg.AssetExecutionContext, dataset: DatasetResource, binance: BinanceResource
    ) -> Iterator[Any]:
        days = range_days(context)
        lake, symbol = dataset.lake(), dataset.symbol
        force, today = forced(context), today_utc()
        client = binance.client()
        metadata: dict[date, dict[str, Any]] = {}
        for day in days:
            if (
                not force
                and dataset.reusable(day, today)
                and lake.is_complete(table.name, symbol, day)
            ):
                metadata[day] = {"source": "reused", "http_requests": 0}
                continue
            before = client.request_count
            frame = fetch(client, symbol, *day_bounds(day))
            lake.write_day(table.name, symbol, day, frame)
            metadata[day] = {"source": "vendor", "http_requests": client.request_count - before}
        reused = sum(1 for m in metadata.values() if m["source"] == "reused")
        context.log.info(f"{table.name}: fetched {len(days) - reused} day(s), reused {reused}")
        yield from record_range(context, table, lake, symbol, days, metadata)

    return _asset


raw_assets = [_raw_asset(table) for table in RAW_TABLES]
