"""Every lake table by name: its contract, its bar interval and what it holds.

The catalogue the Dagster layer builds assets from and the operations commands (``verify``)
read without importing Dagster. A new table is declared here first, then given an asset in
``assets/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from btc_assets.core.schema import (
    BAR_SCHEMA,
    COINGLASS_AGG_TAKER_SCHEMA,
    COINGLASS_FUNDING_SCHEMA,
    COINGLASS_LIQUIDATION_SCHEMA,
    COINGLASS_OI_SCHEMA,
    COINGLASS_PRICE_SCHEMA,
    COINGLASS_TAKER_SCHEMA,
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

# --- resampled bars
SPOT_15M = Table(
    "spot_klines_15m",
    BAR_SCHEMA,
    "15m",
    "Binance spot 15m bars resampled from 1m (right-closed, ts = close time); source_count "
    "says how many 1m bars each holds.",
    market="spot",
)
PERP_15M = Table(
    "perp_klines_15m",
    BAR_SCHEMA,
    "15m",
    "Binance USD-M perpetual 15m bars resampled from 1m (right-closed, ts = close time).",
)

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

RAW_TABLES = (*BINANCE_TABLES, *COINGLASS_TABLES)
# Every table in the lake, in the order the demo and ``verify`` list them.
LAKE_TABLES = (*BINANCE_TABLES, SPOT_15M, PERP_15M, *COINGLASS_TABLES, FEATURES)
