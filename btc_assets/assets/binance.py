"""Binance feeds: spot and USD-M perp 1m klines, and funding settlements.

Fetched one day at a time: the request count per day (2 spot, 1 perp, 1 funding) is part of
the contract and shows in each day's metadata.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import polars as pl

from btc_assets.assets.common import Table
from btc_assets.assets.raw import FetchDays, Fetched, raw_asset
from btc_assets.core.schema import FUNDING_SCHEMA, KLINE_SCHEMA, day_bounds
from btc_assets.vendors.binance import BinanceClient

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
BINANCE_TABLES = (SPOT_1M, PERP_1M, FUNDING)

DayFetch = Callable[[BinanceClient, str, datetime, datetime], pl.DataFrame]


def _per_day(fetch_day: DayFetch) -> FetchDays:
    def fetch(resources: Any, symbol: str, days: list[date]) -> Fetched:
        client: BinanceClient = resources.binance.client()
        fetched = Fetched()
        for day in days:
            before = client.request_count
            fetched.frames[day] = fetch_day(client, symbol, *day_bounds(day))
            fetched.day_metadata[day] = {"http_requests": client.request_count - before}
        fetched.requests = client.request_count
        return fetched

    return fetch


_FETCHERS: dict[str, DayFetch] = {
    SPOT_1M.name: lambda c, s, a, b: c.spot_klines(s, "1m", a, b),
    PERP_1M.name: lambda c, s, a, b: c.futures_klines(s, "1m", a, b),
    FUNDING.name: lambda c, s, a, b: c.funding_rate(s, a, b),
}

binance_assets = [
    raw_asset(table, "binance", {"binance"}, _per_day(_FETCHERS[table.name]))
    for table in BINANCE_TABLES
]
