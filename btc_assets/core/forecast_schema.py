"""The data contract of the forecasting sources and of ``features_1h``.

Published tables. FRED, Alpha Vantage and CryptoQuant publish a value some time after the
period it describes. Their lake rows carry both clocks:

- ``event_time``: the start (00:00 UTC) of the day the value describes (a FRED observation
  date, an Alpha Vantage session date, a CryptoQuant UTC day);
- ``available_at``: when a user could first have known it (``core/publication.py``);
- ``ts`` = ``available_at``: the lake's clock. Partition day D holds what became known in
  (D 00:00, D+1 00:00], so a bar of day D can only see rows of partitions up to D, and a
  re-run of an old day changes nothing known before it.

Their key is not ``[symbol, ts]`` (one vintage publishes many observations at once):
``PUBLISHED_KEYS`` names it per table. ``symbol`` is the series: a FRED series id, an Alpha
Vantage ticker, the CryptoQuant asset.

CoinAPI's hourly bars are ordinary bar tables (``COINAPI_BAR_SCHEMA``, ``[symbol, ts]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from btc_assets.core.schema import TS

FRED_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),  # FRED series id, e.g. DGS10
    "ts": TS,
    "event_time": TS,
    "available_at": TS,
    "value": pl.Float64(),  # null where FRED served "." (a holiday): ``missing`` is True
    "missing": pl.Boolean(),
    "vintage_date": pl.Date(),  # FRED's realtime_start: the day this value was published
}
ALPHAVANTAGE_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),  # ticker, e.g. SPY
    "ts": TS,
    "event_time": TS,
    "available_at": TS,
    "session_date": pl.Date(),  # in the vendor's time zone (US/Eastern for equities)
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
CRYPTOQUANT_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),  # the asset, BTC
    "ts": TS,
    "event_time": TS,
    "available_at": TS,
    "metric": pl.String(),  # netflow, reserve, ... (vendors.cryptoquant.Metric)
    "exchange": pl.String(),
    "field": pl.String(),  # netflow_total, reserve, ...
    "value": pl.Float64(),
    # Fetched after the vendor's weekly re-clustering that followed the day: the value may
    # differ from the one first published (CryptoQuant keeps no vintages).
    "revised": pl.Boolean(),
}
PUBLISHED_KEYS: dict[str, tuple[str, ...]] = {
    "fred_series": ("symbol", "event_time", "available_at"),
    "alphavantage_daily": ("symbol", "event_time"),
    "cryptoquant_flows": ("symbol", "event_time", "metric", "exchange", "field"),
}

COINAPI_BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),  # the project's name (BTCUSDT); symbol_id is CoinAPI's
    "ts": TS,  # time_period_end
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trades": pl.Int64(),
    "symbol_id": pl.String(),
}
COINAPI_FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,  # time_period_end of the hour
    "funding_rate": pl.Float64(),  # the metric's last value in the hour
    "observations": pl.Int64(),
    "symbol_id": pl.String(),
}

# The name cryptoquant_flows stores its rows under (the asset its BTC endpoints describe).
CRYPTOQUANT_ASSET = "BTC"

# Values of the ``<series>_source`` columns of features_1h.
FRED_SOURCE = "fred"
ALPHAVANTAGE_SOURCE = "alphavantage"
CRYPTOQUANT_SOURCE = "cryptoquant"
CRYPTOQUANT_REVISED_SOURCE = "cryptoquant_revised"
COINAPI_SOURCE = "coinapi"


@dataclass(frozen=True)
class JoinedSeries:
    """A published series joined into features_1h as of its publication.

    Columns: ``<prefix><value>`` for each value, and ``<prefix>source``,
    ``<prefix>event_time``, ``<prefix>available_at``, ``<prefix>null_reason``.
    """

    prefix: str  # e.g. "fred_dgs10_"
    table: str  # the lake table it comes from
    symbol: str  # its name there (series id, ticker, asset)
    values: tuple[str, ...]  # the value columns, as named in features_1h without prefix
    max_staleness_hours: float  # older than this (bar close - event_time): null, with why
    metric: str | None = None  # CryptoQuant: which (metric, exchange, field)
    exchange: str | None = None
    field: str | None = None

    def columns(self) -> dict[str, pl.DataType]:
        out: dict[str, pl.DataType] = {f"{self.prefix}{v}": pl.Float64() for v in self.values}
        out[f"{self.prefix}source"] = pl.String()
        out[f"{self.prefix}event_time"] = TS
        out[f"{self.prefix}available_at"] = TS
        out[f"{self.prefix}null_reason"] = pl.String()
        return out


# features_1h before its joined series (``features_1h_schema`` adds theirs).
HOURLY_BASE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    # Binance perp 1h bar (perp_klines_1h)
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "quote_volume": pl.Float64(),
    # Binance spot 1h bar (spot_klines_1h); null for a perp without a spot pair
    "spot_close": pl.Float64(),
    "spot_volume": pl.Float64(),
    "basis": pl.Float64(),  # close / spot_close - 1
    "ret_1h": pl.Float64(),
    "ret_4h": pl.Float64(),
    "ret_24h": pl.Float64(),
    "rv_1h": pl.Float64(),  # sqrt(sum of squared 1m log returns in the hour)
    "rv_24h": pl.Float64(),  # the same over the 24 hours ending at ts
    "minutes_1h": pl.Int64(),  # 1m closes the hour held (60 when whole)
    # the hourly roll-up of bars_15m
    "bars_15m": pl.Int64(),  # its rows in the hour (4 when whole)
    "oi_now": pl.Float64(),
    "oi_delta_1h": pl.Float64(),
    "oi_delta_4h": pl.Float64(),
    "oi_delta_24h": pl.Float64(),
    "oi_source": pl.String(),
    "funding_rate": pl.Float64(),
    "funding_source": pl.String(),
    "funding_delta_24h": pl.Float64(),
    "cvd_perp_1h": pl.Float64(),
    "liq_long_usd": pl.Float64(),
    "liq_short_usd": pl.Float64(),
    "oi_pctile_30d": pl.Float64(),
    "funding_pctile_30d": pl.Float64(),
    # the CoinAPI cross-check of the Binance bars (null when CoinAPI has no bar)
    "coinapi_perp_close": pl.Float64(),
    "coinapi_spot_close": pl.Float64(),
    "coinapi_divergence_bp": pl.Float64(),  # |close / coinapi_perp_close - 1| in bp
    "coinapi_source": pl.String(),  # "coinapi" or "unavailable"
}


def features_1h_schema(series: Sequence[JoinedSeries]) -> dict[str, pl.DataType]:
    schema = dict(HOURLY_BASE_SCHEMA)
    for s in series:
        schema.update(s.columns())
    return schema
