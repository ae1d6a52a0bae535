"""Binance feeds: spot and USD-M perp 1m klines, and funding settlements.

Fetched one day at a time: the request count per day (2 spot, 1 perp, 1 funding) is part of
the contract and shows in each day's metadata.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import polars as pl

from btc_assets.assets.raw import FetchDays, Fetched, Origin, raw_asset
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import BINANCE_TABLES, FUNDING, PERP_1M, SPOT_1M, Table
from btc_assets.vendors.binance import FUNDING_RATE, FUTURES_KLINES, SPOT_KLINES, BinanceClient

DayFetch = Callable[[BinanceClient, str, datetime, datetime], pl.DataFrame]


def _per_day(table: Table, fetch_day: DayFetch) -> FetchDays:
    def fetch(resources: Any, member: Any, days: list[date]) -> Fetched:
        client: BinanceClient = resources.binance.client()
        fetched = Fetched()
        symbol = member.lake_symbol(table)
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

_ORIGINS: dict[str, Origin] = {
    SPOT_1M.name: lambda r: r.binance.spot_base_url + SPOT_KLINES,
    PERP_1M.name: lambda r: r.binance.futures_base_url + FUTURES_KLINES,
    FUNDING.name: lambda r: r.binance.futures_base_url + FUNDING_RATE,
}

binance_assets = [
    raw_asset(
        table, "binance", {"binance"}, _per_day(table, _FETCHERS[table.name]), _ORIGINS[table.name]
    )
    for table in BINANCE_TABLES
]
