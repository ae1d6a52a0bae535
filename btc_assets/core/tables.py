"""Every lake table by name: its contract, its bar interval and what it holds.

The catalogue the Dagster layer builds assets from and the operations commands (``verify``)
read without importing Dagster. A new table is declared here first, then given an asset in
``assets/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from btc_assets.core.bars import BINANCE_INTERVALS, bar_duration
from btc_assets.core.forecast_schema import (
    ALPHAVANTAGE_SERIES_SCHEMA,
    COINAPI_BAR_SCHEMA,
    COINAPI_FUNDING_SCHEMA,
    CRYPTOQUANT_SERIES_SCHEMA,
    FRED_SERIES_SCHEMA,
    PUBLISHED_KEYS,
    JoinedSeries,
    features_1h_schema,
)
from btc_assets.core.market_schema import (
    ALERT_KEY,
    ALERT_SCHEMA,
    HEATMAP_CANDLE_KEY,
    HEATMAP_CANDLE_SCHEMA,
    HEATMAP_TILE_KEY,
    HEATMAP_TILE_SCHEMA,
)
from btc_assets.core.schema import (
    BAR_SCHEMA,
    COINGLASS_AGG_TAKER_SCHEMA,
    COINGLASS_FUNDING_SCHEMA,
    COINGLASS_LIQUIDATION_SCHEMA,
    COINGLASS_OI_SCHEMA,
    COINGLASS_PRICE_SCHEMA,
    COINGLASS_TAKER_SCHEMA,
    EXCHANGE_FEE_SCHEMA,
    FEATURE_SCHEMA,
    FUNDING_SCHEMA,
    KLINE_SCHEMA,
    METRICS_SCHEMA,
)


@dataclass(frozen=True)
class Table:
    """A daily lake table; its asset has the same name."""

    name: str
    schema: Mapping[str, pl.DataType]
    every: str | None  # bar interval; None for point-in-time events (funding)
    description: str
    required: tuple[str, ...] = field(default=())  # columns that must never be null
    # Whose name the table stores a basket member under: its perp symbol, or (for spot
    # tables) its spot pair, which is what the rows are (1000PEPEUSDT's spot is PEPEUSDT).
    market: str = "perp"
    source: Table | None = None  # the table it is resampled from, for resampled bars
    # The columns that identify a row; published tables (``core/forecast_schema.py``) have
    # more than [symbol, ts]: one vintage publishes many observations at once.
    key: tuple[str, ...] = ("symbol", "ts")

    @property
    def published(self) -> bool:
        """A table of late-published values, stored by when they became known: a day may
        hold no row at all (no publication that day), and its symbols are series, not the
        basket (``market == "series"``)."""
        return self.market == "series"


# --- Binance (raw)
SPOT_1M = Table(
    "binance_spot_klines_1m",
    KLINE_SCHEMA,
    "1m",
    "Binance spot 1m klines (GET /api/v3/klines), ts = bar close time.",
    market="spot",
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
METRICS = Table(
    "binance_metrics",
    METRICS_SCHEMA,
    "5m",
    "Binance USD-M open interest (coins and USDT) and long/short ratios, 5-minute snapshots "
    "(data.binance.vision metrics; GET /futures/data/openInterestHist for the last 30 days, "
    "without the ratios), ts = snapshot time.",
    required=("sum_open_interest", "sum_open_interest_value"),
)
BINANCE_TABLES = (SPOT_1M, PERP_1M, FUNDING, METRICS)
# Not among BINANCE_TABLES (the market-data feeds, fetched by raw_asset): a signed account
# endpoint with its own asset (assets/exchange_fees.py). One row per symbol and day.
EXCHANGE_FEES = Table(
    "exchange_fees",
    EXCHANGE_FEE_SCHEMA,
    None,
    "Binance USD-M commission rates of the account (GET /fapi/v1/commissionRate, signed), in "
    "basis points: one snapshot per symbol and UTC day, ts = when it was taken. A day with no "
    "snapshot (a past day, no credentials, a refusal) has null fees and a note saying why.",
)

# --- CoinGlass v4 (raw)
PRICE = Table(
    "coinglass_price_ohlc",
    COINGLASS_PRICE_SCHEMA,
    "15m",
    "CoinGlass futures pair price OHLC (GET /api/futures/price/history) of the Binance perp.",
)
OPEN_INTEREST = Table(
    "coinglass_open_interest",
    COINGLASS_OI_SCHEMA,
    "15m",
    "CoinGlass aggregated open interest OHLC in USD; close is oi_now.",
)
FUNDING_CG = Table(
    "coinglass_funding",
    COINGLASS_FUNDING_SCHEMA,
    None,
    "Funding rate as a fraction at each 15m close: CoinGlass OI-weighted, else "
    "volume-weighted, else (on a definite refusal only) the Binance settlement in force at "
    "the close; funding_source says which for every row.",
    required=("funding_rate", "funding_source"),
)
TAKER = Table(
    "coinglass_taker_volume",
    COINGLASS_TAKER_SCHEMA,
    "15m",
    "CoinGlass taker buy/sell volume (USD) of the Binance perp pair.",
)
AGG_TAKER = Table(
    "coinglass_aggregated_taker",
    COINGLASS_AGG_TAKER_SCHEMA,
    "15m",
    "CoinGlass coin-level taker buy/sell volume (USD), spot and futures, over the exchange list.",
)
LIQUIDATIONS = Table(
    "coinglass_liquidations",
    COINGLASS_LIQUIDATION_SCHEMA,
    "15m",
    "CoinGlass aggregated long/short liquidations (USD) over the exchange list.",
)
COINGLASS_TABLES = (PRICE, OPEN_INTEREST, FUNDING_CG, TAKER, AGG_TAKER, LIQUIDATIONS)

# --- market structure: CoinGlass liquidation heatmaps (raw) and the alert history
HEATMAP_TILES = Table(
    "coinglass_liquidation_heatmap",
    HEATMAP_TILE_SCHEMA,
    None,
    "CoinGlass liquidation heatmap model1 in long form: one row per non-empty cell, ts = the "
    "close of its candle, price_level = its y_axis value, intensity = estimated liquidation "
    "leverage in USD; scope 'pair' (the Binance perp pair) or 'coin' (aggregated over "
    "exchanges, where the plan serves it). The candle interval depends on the range asked "
    "(the day's provenance says which).",
    required=("scope", "price_level", "intensity"),
    key=HEATMAP_TILE_KEY,
)
HEATMAP_CANDLES = Table(
    "coinglass_heatmap_candles",
    HEATMAP_CANDLE_SCHEMA,
    None,
    "The price candles CoinGlass sends with each liquidation heatmap (ts = candle close), "
    "per scope: the price line drawn over the tiles.",
    required=("scope", "close"),
    key=HEATMAP_CANDLE_KEY,
)
HEATMAP_TABLES = (HEATMAP_TILES, HEATMAP_CANDLES)
SIGNALS = Table(
    "signals",
    ALERT_SCHEMA,
    None,
    "Market signals over bars_15m (liquidation cascade, funding anomaly, open-interest "
    "shock), one row per episode and severity reached; part of the alert history. "
    "Definitions in btc_assets/core/signals.py.",
    required=("kind", "severity", "value", "threshold", "dedupe_key"),
    key=ALERT_KEY,
)
WHALE_ALERTS = Table(
    "whale_alerts",
    ALERT_SCHEMA,
    None,
    "Hyperliquid whale positions and whale-alert events at or above the notional threshold "
    "(CoinGlass /api/hyperliquid/*), once per position or event, ts = when first seen; part "
    "of the alert history.",
    required=("kind", "severity", "value", "threshold", "dedupe_key"),
    key=ALERT_KEY,
)
ALERT_TABLES = (SIGNALS, WHALE_ALERTS)
ALERT_HISTORY_VIEW = "alert_history"  # the warehouse's union of ALERT_TABLES

# --- resampled bars: {spot,perp}_klines_<interval> from the 1m klines, one pair per interval
# of BTC_ASSETS_INTERVALS. The 1m klines are themselves the 1m bars: no resampled copy.
SOURCE_INTERVAL = "1m"
FEATURE_INTERVAL = "15m"  # bars_15m reads spot/perp_klines_15m: always built
HOURLY_INTERVAL = "1h"  # features_1h reads spot/perp_klines_1h: always built too
DEFAULT_INTERVALS = ("15m", "1h")
_KLINE_SOURCES = {"spot": (SPOT_1M, "Binance spot"), "perp": (PERP_1M, "Binance USD-M perpetual")}


def resampled_table(market: str, interval: str) -> Table:
    """``{market}_klines_{interval}``: ``market`` "spot" or "perp", ``interval`` a Binance
    interval longer than 1m ("15m", "1h", "1d")."""
    source, venue = _KLINE_SOURCES[market]
    if interval not in BINANCE_INTERVALS or interval == SOURCE_INTERVAL:
        raise ValueError(f"{interval!r} is not a Binance interval from 3m to 1d")
    return Table(
        f"{market}_klines_{interval}",
        BAR_SCHEMA,
        interval,
        f"{venue} {interval} bars resampled from {source.name} (right-closed, ts = close "
        "time; volumes the exact decimal sums); source_count says how many 1m bars each holds.",
        market=source.market,
        source=source,
    )


def bar_intervals(intervals: Iterable[str]) -> tuple[str, ...]:
    """The intervals to build, shortest first: ``intervals`` plus the feature tables' 15m
    and 1h."""
    wanted = {*intervals, FEATURE_INTERVAL, HOURLY_INTERVAL}
    unknown = sorted(wanted - set(BINANCE_INTERVALS))
    if unknown:
        raise ValueError(f"not Binance intervals from 1m to 1d: {unknown}")
    return tuple(sorted(wanted, key=bar_duration))


def resampled_tables(intervals: Iterable[str]) -> tuple[Table, ...]:
    """Spot and perp bar tables of every interval (15m always, 1m never: it is the source)."""
    return tuple(
        resampled_table(market, interval)
        for interval in bar_intervals(intervals)
        if interval != SOURCE_INTERVAL
        for market in _KLINE_SOURCES
    )


def kline_aliases(intervals: Iterable[str]) -> dict[str, Table]:
    """Warehouse names ``{market}_klines_1m`` for the 1m source tables when "1m" is asked
    for, so every configured interval can be queried as ``{market}_klines_<interval>``."""
    if SOURCE_INTERVAL not in set(intervals):
        return {}
    return {f"{m}_klines_{SOURCE_INTERVAL}": src for m, (src, _) in _KLINE_SOURCES.items()}


SPOT_15M = resampled_table("spot", FEATURE_INTERVAL)
PERP_15M = resampled_table("perp", FEATURE_INTERVAL)
SPOT_1H = resampled_table("spot", HOURLY_INTERVAL)
PERP_1H = resampled_table("perp", HOURLY_INTERVAL)

# --- features
FEATURES = Table(
    "bars_15m",
    FEATURE_SCHEMA,
    "15m",
    "15-minute BTCUSDT feature table: CoinGlass OHLC, Binance volumes, OI, funding (with "
    "imputation flags), realized vol, CVD, perp share, 30-day percentiles; on days CoinGlass "
    "has no row of an input, its Binance substitute (the *_source columns say which). "
    "Definitions in btc_assets/core/features.py.",
)

# --- forecasting sources (raw): CoinAPI's hourly cross-check, and the published series
COINAPI_PERP_1H = Table(
    "coinapi_perp_ohlcv_1h",
    COINAPI_BAR_SCHEMA,
    "1h",
    "CoinAPI 1HRS OHLCV of the Binance USD-M perp (GET /v1/ohlcv/BINANCEFTS_PERP_<base>_"
    "<quote>/history), ts = time_period_end: the cross-check of the Binance 1h bars.",
)
COINAPI_SPOT_1H = Table(
    "coinapi_spot_ohlcv_1h",
    COINAPI_BAR_SCHEMA,
    "1h",
    "CoinAPI 1HRS OHLCV of the Binance spot pair (GET /v1/ohlcv/BINANCE_SPOT_<base>_<quote>"
    "/history), ts = time_period_end.",
    market="spot",
)
COINAPI_FUNDING = Table(
    "coinapi_funding_1h",
    COINAPI_FUNDING_SCHEMA,
    "1h",
    "CoinAPI DERIVATIVES_FUNDING_RATE_CURRENT of the Binance perp, last value per hour (GET "
    "/v1/metrics/symbol/history): the fallback of features_1h's funding_rate. A plan or "
    "symbol CoinAPI does not serve (404) is stored empty as 'not served'.",
    required=("funding_rate",),
)
FRED_SERIES = Table(
    "fred_series",
    FRED_SERIES_SCHEMA,
    None,
    "FRED observations by vintage (ALFRED realtime_start): partition D holds the values "
    "first published, or revised, on D; ts = available_at. '.' is value null, missing true.",
    market="series",
    key=PUBLISHED_KEYS["fred_series"],
)
ALPHAVANTAGE_DAILY = Table(
    "alphavantage_daily",
    ALPHAVANTAGE_SERIES_SCHEMA,
    None,
    "Alpha Vantage TIME_SERIES_DAILY sessions (SPY as the S&P 500 proxy, a dollar ETF), "
    "unadjusted; ts = available_at, the session's close plus the publication delay.",
    market="series",
    key=PUBLISHED_KEYS["alphavantage_daily"],
)
CRYPTOQUANT_FLOWS = Table(
    "cryptoquant_flows",
    CRYPTOQUANT_SERIES_SCHEMA,
    None,
    "CryptoQuant daily BTC exchange flows (netflow, reserve, inflow, outflow, whale ratio) "
    "in long form; ts = available_at, the UTC day's close plus the publication delay; "
    "revised says the value was fetched after the vendor re-clustered its wallets.",
    market="series",
    key=PUBLISHED_KEYS["cryptoquant_flows"],
)
PUBLISHED_TABLES = (FRED_SERIES, ALPHAVANTAGE_DAILY, CRYPTOQUANT_FLOWS)
COINAPI_TABLES = (COINAPI_PERP_1H, COINAPI_SPOT_1H, COINAPI_FUNDING)
FORECAST_SOURCE_TABLES = (*COINAPI_TABLES, *PUBLISHED_TABLES)

FEATURES_1H_NAME = "features_1h"


def features_1h_table(series: Iterable[JoinedSeries] = ()) -> Table:
    """``features_1h`` with the columns of the configured joined series."""
    return Table(
        FEATURES_1H_NAME,
        features_1h_schema(list(series)),
        "1h",
        "Hourly forecasting features per symbol: Binance perp/spot 1h bars, basis, returns, "
        "realized volatility, the hourly roll-up of bars_15m (OI, funding, CVD, "
        "liquidations), CoinAPI's cross-check, and macro / on-chain series joined as of "
        "their publication (available_at <= ts), each with <series>_source and a null "
        "reason. Definitions in btc_assets/core/hourly.py.",
    )


RAW_TABLES = (*BINANCE_TABLES, *COINGLASS_TABLES)


def lake_tables(intervals: Iterable[str], series: Iterable[JoinedSeries] = ()) -> tuple[Table, ...]:
    """Every table in the lake with bars of ``intervals`` (``Settings.bar_intervals``) and
    the joined ``series`` of features_1h, in the order the demo and ``verify`` list them."""
    return (
        *BINANCE_TABLES,
        EXCHANGE_FEES,
        *resampled_tables(intervals),
        *COINGLASS_TABLES,
        *HEATMAP_TABLES,
        FEATURES,
        *FORECAST_SOURCE_TABLES,
        features_1h_table(series),
        *ALERT_TABLES,
    )
