"""The data contract: column names and dtypes of every table.

Time is UTC with millisecond precision. Bars are right-closed and labelled by their close
time: a 1m bar that opens at 00:00 has ``ts = 00:01``. Partition day ``D`` holds the rows with
``ts`` in ``(D 00:00, D+1 00:00]``. ``[symbol, ts]`` is unique in every table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

TS = pl.Datetime("ms", "UTC")
KEY = ("symbol", "ts")

KLINE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "quote_volume": pl.Float64(),
    "taker_buy_volume": pl.Float64(),
    "taker_buy_quote_volume": pl.Float64(),
    "trades": pl.Int64(),
}

# Resampled bars carry how many source bars they aggregate, so a short bar is visible.
BAR_SCHEMA: dict[str, pl.DataType] = {**KLINE_SCHEMA, "source_count": pl.Int64()}

# ts is the funding settlement time rounded to the minute (Binance stamps it a few ms late).
FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "funding_rate": pl.Float64(),
    "mark_price": pl.Float64(),
}

# Binance USD-M 5-minute positioning snapshots (data.binance.vision ``metrics``, REST
# ``/futures/data/openInterestHist``). ts = the snapshot's ``create_time``, so the midnight
# snapshot of D+1 belongs to partition D like every other table; 288 rows per full day.
# Open interest in base coins and in USDT; the ratio columns exist only in the archive
# (null where the REST tail filled the day).
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "sum_open_interest": pl.Float64(),
    "sum_open_interest_value": pl.Float64(),
    "count_toptrader_long_short_ratio": pl.Float64(),
    "sum_toptrader_long_short_ratio": pl.Float64(),
    "count_long_short_ratio": pl.Float64(),
    "sum_taker_long_short_vol_ratio": pl.Float64(),
}

# Binance USD-M commission rates of the account, one snapshot per symbol and UTC day. ts = when
# the snapshot was taken (the endpoint gives only the current rate, so a day without one
# holds a row with null fees and ``note`` saying why, stamped at the end of the day); fees in
# basis points (0.0002 -> 2.0), negative for a rebate; ``source`` = where the values came from
# (null when there are none).
EXCHANGE_FEE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "maker_bps": pl.Float64(),
    "taker_bps": pl.Float64(),
    "source": pl.String(),
    "note": pl.String(),
}

OHLC_COLUMNS = ("open", "high", "low", "close")
VOLUME_COLUMNS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
# Amounts that can never be negative, in whichever table carries them.
NON_NEGATIVE_COLUMNS = (
    *VOLUME_COLUMNS,
    "volume_usd",
    "taker_buy_volume_usd",
    "taker_sell_volume_usd",
    "spot_buy_volume_usd",
    "spot_sell_volume_usd",
    "futures_buy_volume_usd",
    "futures_sell_volume_usd",
    "long_liquidation_usd",
    "short_liquidation_usd",
)


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select exactly the contract's columns in order, cast to the contract's dtypes.

    Raises ``SchemaError`` naming the missing columns, so drift is never silent.
    """
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise SchemaError(f"missing columns {missing}; got {df.columns}")
    return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])


class SchemaError(ValueError):
    """A frame does not match its table's data contract."""


def partition_day_expr(ts: str | pl.Expr = "ts") -> pl.Expr:
    """The UTC day a row belongs to: ts in (D 00:00, D+1 00:00] -> D."""
    col = pl.col(ts) if isinstance(ts, str) else ts
    return col.dt.offset_by("-1ms").dt.date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """(start, end] of partition day D as UTC datetimes: (D 00:00, D+1 00:00]."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def floor_to_grid(moment: datetime, step: timedelta) -> datetime:
    """The latest bar boundary at or before ``moment`` on a grid aligned to midnight UTC."""
    return moment - (moment - day_bounds(moment.date())[0]) % step


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- CoinGlass v4 (15m history). ts = CoinGlass ``time`` (bar open) + interval, so every
# table keeps the close-time label. USD amounts as served; funding as a fraction (CoinGlass
# serves percent, e.g. "0.009229" % -> 0.00009229, Binance a fraction, e.g. "0.0001").

COINGLASS_PRICE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume_usd": pl.Float64(),
}

# Aggregated open interest across exchanges, USD OHLC per bar; ``close`` is oi_now.
COINGLASS_OI_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
}

# funding_source of each row. Per-bar rows hold the rate at a 15m close: CoinGlass (the close
# of its funding OHLC bar), or on the Binance fallback the latest Binance settlement at or
# before the close (BINANCE_SETTLEMENT_SOURCE, placed by core/funding.py). Rows of
# SETTLEMENT_TIME_SOURCE are settlements stamped at their own time (8h/4h/1h), as days stored
# by earlier versions of the fallback hold them; the features place them with the same rule.
BINANCE_SETTLEMENT_SOURCE = "binance_settlement"
SETTLEMENT_TIME_SOURCE = "binance_funding_rate"
FUNDING_SOURCES = (
    "coinglass_oi_weight",
    "coinglass_vol_weight",
    BINANCE_SETTLEMENT_SOURCE,
    SETTLEMENT_TIME_SOURCE,
)
COINGLASS_FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "funding_rate": pl.Float64(),
    "funding_source": pl.String(),
}

# Taker volume of the perp pair on one exchange (Binance BTCUSDT), USD.
COINGLASS_TAKER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "taker_buy_volume_usd": pl.Float64(),
    "taker_sell_volume_usd": pl.Float64(),
}

# Coin-level taker volume aggregated over an exchange list, spot and futures, USD.
COINGLASS_AGG_TAKER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "spot_buy_volume_usd": pl.Float64(),
    "spot_sell_volume_usd": pl.Float64(),
    "futures_buy_volume_usd": pl.Float64(),
    "futures_sell_volume_usd": pl.Float64(),
}

COINGLASS_LIQUIDATION_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "long_liquidation_usd": pl.Float64(),
    "short_liquidation_usd": pl.Float64(),
}

# --- The 15m feature table (see core/features.py for each definition).
FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    # CoinGlass price OHLC of the Binance perp pair, and its USD volume
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume_usd": pl.Float64(),
    # Binance 15m volumes (base asset)
    "perp_volume": pl.Float64(),
    "spot_volume": pl.Float64(),
    "oi_now": pl.Float64(),
    "oi_now_imputed": pl.Boolean(),
    "funding_now": pl.Float64(),
    "funding_now_imputed": pl.Boolean(),
    "funding_source": pl.String(),
    "rv_15m": pl.Float64(),
    "cvd_perp_15m": pl.Float64(),
    "cvd_perp_24h": pl.Float64(),
    "perp_share_60m": pl.Float64(),
    "liq_long_usd": pl.Float64(),
    "liq_short_usd": pl.Float64(),
    "oi_pctile_30d": pl.Float64(),
    "funding_pctile_30d": pl.Float64(),
    # where each column group came from, per partition day (FEATURE_SOURCES); funding says it
    # per value in funding_source
    "price_source": pl.String(),
    "oi_source": pl.String(),
    "cvd_source": pl.String(),
    "share_source": pl.String(),
    "liq_source": pl.String(),
}
# Values of the *_source columns. A day takes an input from CoinGlass when CoinGlass has at
# least one row of it in that day, else from its Binance substitute when that has a row, else
# it is UNAVAILABLE_SOURCE (liquidations have no substitute). See core/features.py.
COINGLASS_SOURCE = "coinglass"
UNAVAILABLE_SOURCE = "unavailable"
PRICE_SUBSTITUTE = "binance_perp_15m"
OI_SUBSTITUTE = "binance_metrics"
CVD_SUBSTITUTE = "binance_perp_taker"
SHARE_SUBSTITUTE = "binance_quote_volume"
# source column -> the values it can take
FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    "price_source": (COINGLASS_SOURCE, PRICE_SUBSTITUTE, UNAVAILABLE_SOURCE),
    "oi_source": (COINGLASS_SOURCE, OI_SUBSTITUTE, UNAVAILABLE_SOURCE),
    "cvd_source": (COINGLASS_SOURCE, CVD_SUBSTITUTE, UNAVAILABLE_SOURCE),
    "share_source": (COINGLASS_SOURCE, SHARE_SUBSTITUTE, UNAVAILABLE_SOURCE),
    "liq_source": (COINGLASS_SOURCE, UNAVAILABLE_SOURCE),
}
# Features derived by core/features.py (gated: no NaN or null after the 30-day warm-up).
DERIVED_FEATURES = (
    "rv_15m",
    "cvd_perp_15m",
    "cvd_perp_24h",
    "perp_share_60m",
    "oi_pctile_30d",
    "funding_pctile_30d",
)

# --- FRED observations: one row per (series_id, date, realtime_start), not [symbol, ts].
# ``date`` is the observation date (what the value describes); ``realtime_start`` ..
# ``realtime_end`` the real-time period in which FRED served this value (a vintage: ALFRED),
# clipped by FRED to the requested window, 9999-12-31 while still current. ``value`` is null
# and ``missing`` true where FRED printed "." (holidays of a daily series).
FRED_OBSERVATION_SCHEMA: dict[str, pl.DataType] = {
    "series_id": pl.String(),
    "date": pl.Date(),
    "value": pl.Float64(),
    "missing": pl.Boolean(),
    "realtime_start": pl.Date(),
    "realtime_end": pl.Date(),
}

# --- Alpha Vantage daily series: one row per (symbol, date), not [symbol, ts]. ``symbol`` is
# the equity's ticker (SPY) or the FX pair joined (EURUSD); ``date`` the session date in
# ``time_zone`` as the vendor's Meta Data names it (US/Eastern for equities, UTC for FX).
# ``volume`` in shares, null for FX (FX_DAILY serves none). Sorted oldest first.
ALPHAVANTAGE_DAILY_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    "time_zone": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}

# --- CryptoQuant daily on-chain metrics in long form: one row per (metric, exchange, date,
# field), so every endpoint (one to four fields each) fits one table. ``date`` is the UTC day
# the value describes (not when it was published: exchange flows are revised weekly, so the
# point-in-time layer stamps availability); ``exchange`` is CRYPTOQUANT_NO_EXCHANGE for a
# metric that is not per exchange (MPI). ``value`` is null where the vendor served null.
CRYPTOQUANT_NO_EXCHANGE = "none"
CRYPTOQUANT_DAILY_SCHEMA: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "exchange": pl.String(),
    "date": pl.Date(),
    "field": pl.String(),
    "value": pl.Float64(),
}

# --- CoinAPI (the cross-check of Binance hourly bars, and symbol metrics such as funding).
# ``symbol_id`` is CoinAPI's id (BINANCE_SPOT_BTC_USDT, BINANCEFTS_PERP_BTC_USDT); the asset
# layer maps it to the project's symbol. ts = ``time_period_end`` (the close, right-closed:
# the 1HRS period [00:00, 01:00) is ts 01:00). Unique on [symbol_id, ts] (and metric_id).
COINAPI_OHLCV_SCHEMA: dict[str, pl.DataType] = {
    "symbol_id": pl.String(),
    "ts": TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trades": pl.Int64(),
}
# first/last/min/max/sum of the metric's values inside the period, and how many there were.
COINAPI_METRIC_SCHEMA: dict[str, pl.DataType] = {
    "symbol_id": pl.String(),
    "metric_id": pl.String(),
    "ts": TS,
    "first": pl.Float64(),
    "last": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "sum": pl.Float64(),
    "count": pl.Int64(),
}
