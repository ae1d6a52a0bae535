"""CoinGlass v4 feeds at 15m, fetched per contiguous span of days (1000 bars per request).

A day CoinGlass cannot serve (older than the plan's 15m history window,
``BTC_ASSETS_COINGLASS_HISTORY_DAYS``, or refused outright) is stored empty with the reason
in its provenance: its check warns, nothing downstream is blocked, and ``bars_15m`` takes
each such input from Binance for that day (``core/feature_sources.py``), saying so per
column.

The funding feed falls back from the OI-weighted to the volume-weighted CoinGlass series and
then to Binance's own settlements, on a definite refusal only (``coinglass_funding.py``);
every row records its ``funding_source`` and each day's metadata says why a fallback was
taken, so a fallback is never silent.
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import polars as pl

from btc_assets.assets.coinglass_funding import fetch_funding, outside_plan
from btc_assets.assets.raw import FetchDays, Fetched, Origin, raw_asset, span_runs, split_days
from btc_assets.core.tables import (
    AGG_TAKER,
    COINGLASS_TABLES,
    FUNDING_CG,
    LIQUIDATIONS,
    OPEN_INTEREST,
    PRICE,
    TAKER,
    Table,
)
from btc_assets.vendors.coinglass import (
    FUNDING_OI_WEIGHT,
    FUTURES_AGG_TAKER,
    LIQUIDATION,
    OI_HISTORY,
    PAIR_TAKER,
    PRICE_HISTORY,
    CoinGlassClient,
)
from btc_assets.vendors.errors import VendorRefused

# (client, resource, basket member (``SymbolConfig``), start, end) -> frame of the span
SpanFetch = Callable[[CoinGlassClient, Any, Any, datetime, datetime], pl.DataFrame]


def _per_span(fetch_span: SpanFetch) -> FetchDays:
    def fetch(resources: Any, member: Any, days: list[date]) -> Fetched:
        cg = resources.coinglass
        client = cg.client()
        fetched = Fetched()
        for day, why in outside_plan(client, days).items():
            fetched.unavailable[day] = f"{why}; bars_15m takes this input from Binance for the day"
        for span in span_runs([d for d in days if d not in fetched.unavailable]):
            run = span.days
            try:
                frame = fetch_span(client, cg, member, span.start, span.end)
            except VendorRefused as exc:  # a definite "no" (plan, symbol gated): not an outage
                for day in run:
                    fetched.unavailable[day] = f"CoinGlass refused: {exc}"
                continue
            fetched.frames.update(split_days(frame, run))
        fetched.requests = client.request_count
        return fetched

    return fetch


_FETCHERS: dict[str, FetchDays] = {
    PRICE.name: _per_span(
        lambda c, r, m, a, b: c.price_history(m.perp, r.exchange, a, b, pair=m.coinglass_pair)
    ),
    OPEN_INTEREST.name: _per_span(
        lambda c, r, m, a, b: c.open_interest_history(m.perp, m.coin, a, b)
    ),
    TAKER.name: _per_span(
        lambda c, r, m, a, b: c.pair_taker_history(m.perp, r.exchange, a, b, pair=m.coinglass_pair)
    ),
    AGG_TAKER.name: _per_span(
        lambda c, r, m, a, b: c.aggregated_taker_history(m.perp, m.coin, r.exchange_list, a, b)
    ),
    LIQUIDATIONS.name: _per_span(
        lambda c, r, m, a, b: c.liquidation_history(m.perp, m.coin, r.exchange_list, a, b)
    ),
    FUNDING_CG.name: fetch_funding,
}

_PATHS = {
    PRICE.name: PRICE_HISTORY,
    OPEN_INTEREST.name: OI_HISTORY,
    TAKER.name: PAIR_TAKER,
    AGG_TAKER.name: FUTURES_AGG_TAKER,
    LIQUIDATIONS.name: LIQUIDATION,
    FUNDING_CG.name: FUNDING_OI_WEIGHT,
}


def _origin(table: Table) -> Origin:
    return lambda resources: resources.coinglass.base_url + _PATHS[table.name]


coinglass_assets = [
    raw_asset(
        table,
        "coinglass",
        {"coinglass", "binance"} if table is FUNDING_CG else {"coinglass"},
        _FETCHERS[table.name],
        _origin(table),
    )
    for table in COINGLASS_TABLES
]
