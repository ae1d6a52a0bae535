"""The forecasting sources' raw feeds: CoinAPI, FRED, Alpha Vantage and CryptoQuant.

Each is a daily-partitioned raw asset built by ``raw.raw_asset``: the same gate,
provenance and reuse as Binance and CoinGlass.

- **CoinAPI** (per basket member): 1HRS OHLCV of the Binance perp and spot pair, and the
  perp's funding metric, one request per contiguous span of days. A symbol or metric
  CoinAPI does not serve (404, or 403 for the plan) is stored empty as "not served" (a
  warning), never retried within the run; a window CoinAPI answers 550 "no data" for, too.
- **FRED** (per series): the vintages published in the span (ALFRED real-time window), one
  request per span; partition D holds what became known in D (``core/publication.py``).
- **Alpha Vantage** (per ticker): one ``TIME_SERIES_DAILY`` request per run whatever the
  range (it serves the latest 100 sessions on a free key); days older than what it served
  are stored empty as "outside the compact window". The day's request budget
  (``ALPHAVANTAGE_DAILY_LIMIT``, shared by every process through a file) is never exceeded:
  once spent, the days are not asked and what is stored stays (``Fetched.kept``).
- **CryptoQuant** (the BTC asset): one request per configured endpoint per span.

A key that is not set in live (``COINAPI_API_KEY``, ``FRED_API_KEY``,
``ALPHAVANTAGE_API_KEY``, ``CRYPTOQUANT_API_KEY``) stores nothing over what exists and
records the missing days as not served, naming the variable: a deployment without one
vendor still builds every other table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import polars as pl

from btc_assets import clock
from btc_assets.assets.raw import FetchDays, Fetched, raw_asset, span_runs, split_days
from btc_assets.core.forecast_schema import (
    COINAPI_BAR_SCHEMA,
    COINAPI_FUNDING_SCHEMA,
    CRYPTOQUANT_ASSET,
)
from btc_assets.core.publication import (
    alphavantage_rows,
    cryptoquant_rows,
    event_days_for,
    fred_rows,
)
from btc_assets.core.schema import conform, day_bounds
from btc_assets.core.tables import (
    ALPHAVANTAGE_DAILY,
    COINAPI_FUNDING,
    COINAPI_PERP_1H,
    COINAPI_SPOT_1H,
    CRYPTOQUANT_FLOWS,
    FRED_SERIES,
    Table,
)
from btc_assets.vendors.alphavantage import AlphaVantageDailyLimit
from btc_assets.vendors.coinapi import (
    FUNDING_METRIC,
    METRICS_HISTORY,
    OHLCV_HISTORY,
    CoinApiClient,
    CoinApiForbidden,
    CoinApiNotServed,
    binance_symbol_id,
)
from btc_assets.vendors.cryptoquant import API_PREFIX, CATALOGUE, CryptoQuantPlanError, Metric
from btc_assets.vendors.errors import VendorRefused
from btc_assets.vendors.fred import OBSERVATIONS

GROUP = "forecast_sources"
HOURLY = "1HRS"
# Observation dates asked with each vintage window: revisions of older dates change
# nothing a bar sees (only the latest observation is joined).
FRED_OBSERVATION_LOOKBACK = timedelta(days=366)
# A FRED vintage date is known at its end in Central time: up to 30 h after it began (UTC).
FRED_LEAD = timedelta(hours=30)
CRYPTOQUANT_LEAD = timedelta(days=1)
# (the vendor's resource, the member or series, days to fetch) -> Fetched
VendorFetch = Callable[[Any, Any, list[date]], Fetched]


def _keyed(vendor: str) -> Callable[[VendorFetch], FetchDays]:
    """A fetch that is given its vendor's resource, and is not called when the vendor's key
    is not set: every day is then kept (nothing asked), saying which variable."""

    def wrap(fetch: VendorFetch) -> FetchDays:
        def keyed(resources: Any, member: Any, days: list[date]) -> Fetched:
            resource = getattr(resources, vendor)
            if not resource.has_key:
                why = f"{resource.key_setting} is not set: the vendor was not asked"
                return Fetched(kept=dict.fromkeys(days, why))
            return fetch(resource, member, days)

        return keyed

    return wrap


# --- CoinAPI -------------------------------------------------------------------------


def _coinapi(market: str, frame_of: Callable[[CoinApiClient, str, Any, Any], pl.DataFrame]):
    @_keyed("coinapi")
    def fetch(resource: Any, member: Any, days: list[date]) -> Fetched:
        client = resource.client()
        symbol = member.perp if market == "perp" else member.spot
        symbol_id = binance_symbol_id(symbol, market)
        fetched = Fetched()
        for span in span_runs(days):
            run = span.days
            try:
                frame = frame_of(client, symbol_id, span.start, span.end)
            except (CoinApiNotServed, CoinApiForbidden) as exc:
                for day in run:
                    fetched.unavailable[day] = f"not served by CoinAPI: {exc}"
                break  # the same answer for every span: not asked again
            frame = frame.with_columns(symbol=pl.lit(symbol))
            fetched.frames.update(split_days(frame, run))
        for day in days:  # an empty day inside a window CoinAPI said it has no data for
            start, end = day_bounds(day)
            said = [w.message for w in client.no_data if w.start < end and w.end > start]
            frame = fetched.frames.get(day)
            if said and (frame is None or frame.is_empty()):
                fetched.unavailable.setdefault(day, f"CoinAPI has no data (550): {said[0]}")
        fetched.requests = client.request_count
        return fetched

    return fetch


def _ohlcv(client: CoinApiClient, symbol_id: str, start: Any, end: Any) -> pl.DataFrame:
    frame = client.ohlcv(symbol_id, HOURLY, start, end)
    return conform(frame.with_columns(symbol=pl.lit("")), COINAPI_BAR_SCHEMA)


def _funding(client: CoinApiClient, symbol_id: str, start: Any, end: Any) -> pl.DataFrame:
    frame = client.metric(FUNDING_METRIC, symbol_id, HOURLY, start, end)
    out = frame.select(
        pl.lit("").alias("symbol"),
        "ts",
        pl.col("last").alias("funding_rate"),
        pl.col("count").alias("observations"),
        "symbol_id",
    )
    return conform(out, COINAPI_FUNDING_SCHEMA)


# --- published series ----------------------------------------------------------------


@_keyed("fred")
def _fred(resource: Any, member: Any, days: list[date]) -> Fetched:
    client = resource.client()
    fetched = Fetched()
    for span in span_runs(days):
        run, last = span.days, span.days[-1]
        window_start, _ = event_days_for(run, member.delay, FRED_LEAD)
        # Rows FRED clips to the window's start were published on it or before: unknown
        # when, so dropped (the partition that holds them asks a window starting earlier).
        try:
            vintages = client.vintages(
                member.name, window_start - FRED_OBSERVATION_LOOKBACK, last, window_start, last
            ).filter(pl.col("realtime_start") > window_start)
        except VendorRefused as exc:  # a series FRED does not have
            for day in days:
                fetched.unavailable[day] = f"FRED refused {member.name}: {exc}"
            break
        fetched.frames.update(split_days(fred_rows(vintages, member.delay), run))
    fetched.requests = client.request_count
    return fetched


@_keyed("alphavantage")
def _alphavantage(resource: Any, member: Any, days: list[date]) -> Fetched:
    client = resource.client()
    try:
        sessions = client.daily(member.name)
    except AlphaVantageDailyLimit as exc:  # the budget: never exceeded, days kept
        return Fetched(kept=dict.fromkeys(days, str(exc)), requests=client.request_count)
    except VendorRefused as exc:  # a ticker it does not serve, a premium-only answer
        why = f"Alpha Vantage refused {member.name}: {exc}"
        return Fetched(unavailable=dict.fromkeys(days, why), requests=client.request_count)
    rows = alphavantage_rows(sessions, member.delay)
    fetched = Fetched(frames=split_days(rows, days), requests=client.request_count)
    if sessions.height:
        oldest = sessions["date"].min()
        for day in days:
            if day < oldest:  # type: ignore[operator]
                fetched.unavailable[day] = (
                    f"before the oldest session Alpha Vantage served ({oldest}, "
                    f"outputsize={client.outputsize}: the latest 100 sessions; full history "
                    "is premium, ALPHAVANTAGE_OUTPUTSIZE=full)"
                )
    return fetched


@_keyed("cryptoquant")
def _cryptoquant(resource: Any, member: Any, days: list[date]) -> Fetched:
    client = resource.client()
    fetched_at = clock.now_utc()
    revised = frozenset(str(m) for m, spec in CATALOGUE.items() if spec.revised_weekly)
    fetched = Fetched()
    refused: list[str] = []
    for span in span_runs(days):
        run, last = span.days, span.days[-1]
        parts = []
        for metric, setting in member.metrics:
            since, _ = event_days_for(run, setting.delay, CRYPTOQUANT_LEAD)
            exchange = resource.exchange if CATALOGUE[metric].per_exchange else "all_exchange"
            try:
                frame = client.daily(metric, since, last, exchange=exchange)
            # Not in the plan (403): the other endpoints still come. A 400/404 (a wrong
            # exchange, path or base URL) fails the step: stored empty it would be reused.
            except CryptoQuantPlanError as exc:
                refused.append(f"{metric}: {exc}")
                continue
            parts.append(cryptoquant_rows(frame, setting.delay, fetched_at, CRYPTOQUANT_ASSET,
                                          revised))  # fmt: skip
        if not parts:
            fetched.unavailable.update(
                dict.fromkeys(run, "CryptoQuant refused every endpoint: " + "; ".join(refused))
            )
            continue
        fetched.frames.update(split_days(pl.concat(parts), run))
    for day in days:
        fetched.day_metadata[day] = {"refused_endpoints": "; ".join(refused) or "none"}
    fetched.requests = client.request_count
    return fetched


# --- the assets ----------------------------------------------------------------------


def _series_members(attribute: str) -> Callable[[Any], dict[str, Any]]:
    return lambda resources: {s.name: s for s in getattr(resources.forecast, attribute)()}


def _cryptoquant_members(resources: Any) -> dict[str, Any]:
    return {CRYPTOQUANT_ASSET: resources.forecast.cryptoquant_member()}


def _url(resource: str, path: str) -> Callable[[Any], str]:
    return lambda resources: getattr(resources, resource).base_url + path


def _cryptoquant_url(resources: Any) -> str:
    return resources.cryptoquant.base_url + API_PREFIX + CATALOGUE[Metric.NETFLOW].path


_COINAPI: list[tuple[Table, FetchDays, str]] = [
    (COINAPI_PERP_1H, _coinapi("perp", _ohlcv), OHLCV_HISTORY),
    (COINAPI_SPOT_1H, _coinapi("spot", _ohlcv), OHLCV_HISTORY),
    (COINAPI_FUNDING, _coinapi("perp", _funding), METRICS_HISTORY),
]

forecast_source_assets = [
    *(
        raw_asset(table, GROUP, {"coinapi"}, fetch, _url("coinapi", path))
        for table, fetch, path in _COINAPI
    ),
    raw_asset(
        FRED_SERIES,
        GROUP,
        {"fred", "forecast"},
        _fred,
        _url("fred", OBSERVATIONS),
        members=_series_members("fred_series"),
    ),
    raw_asset(
        ALPHAVANTAGE_DAILY,
        GROUP,
        {"alphavantage", "forecast"},
        _alphavantage,
        _url("alphavantage", "/query"),
        members=_series_members("alphavantage_series"),
    ),
    raw_asset(
        CRYPTOQUANT_FLOWS,
        GROUP,
        {"cryptoquant", "forecast"},
        _cryptoquant,
        _cryptoquant_url,
        members=_cryptoquant_members,
    ),
]
