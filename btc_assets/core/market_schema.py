"""Contracts of the market-structure tables: liquidation heatmaps and the alert history.

Heatmap tiles are CoinGlass's ``liquidation/heatmap/model1`` (pair) or
``liquidation/aggregated-heatmap/model1`` (coin, over exchanges) answers in long form: one
row per non-empty cell, ``ts`` the close of the candle the cell's column stands for (CoinGlass
labels candles by their open, in seconds), ``price_level`` the ``y_axis`` value of its row,
``intensity`` the estimated liquidation leverage in USD there. ``scope`` says which model:
``pair`` (the Binance perp pair) or ``coin`` (aggregated over exchanges). The candles the
answer came with are their own table, right-closed like every bar.

The alert history is one schema shared by every source of alerts (the ``signals`` asset,
the Hyperliquid whale watch): ``dedupe_key`` identifies the event, so an alert seen again
(a re-run, a backfill, the next poll) is the same row and is notified at most once.
"""

from __future__ import annotations

import polars as pl

from btc_assets.core.schema import TS

HEATMAP_SCOPES = ("pair", "coin")

HEATMAP_TILE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "scope": pl.String(),
    "price_level": pl.Float64(),
    "intensity": pl.Float64(),
}
HEATMAP_TILE_KEY = ("symbol", "scope", "ts", "price_level")

HEATMAP_CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "scope": pl.String(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume_usd": pl.Float64(),
}
HEATMAP_CANDLE_KEY = ("symbol", "scope", "ts")

# Severities in rising order; a filter "severity >= medium" keeps medium and high.
SEVERITIES = ("low", "medium", "high")

ALERT_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS,  # when the condition held (a bar close) or the event was first seen
    "symbol": pl.String(),  # the basket member's perp (BTCUSDT)
    "kind": pl.String(),  # liquidation_cascade, funding_anomaly, oi_shock, whale_position, ...
    "severity": pl.String(),  # one of SEVERITIES
    "value": pl.Float64(),  # the statistic that crossed (ratio, z-score, log change, USD)
    "threshold": pl.Float64(),  # the threshold of that severity it crossed
    "details": pl.String(),  # JSON object: the inputs behind the value, sorted keys
    "dedupe_key": pl.String(),  # unique per event and severity, stable across runs
}
ALERT_KEY = ("dedupe_key",)


def severity_rank(severity: str) -> int:
    """0 for low, 1 medium, 2 high; ValueError naming the choices otherwise."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"severity {severity!r}: expected one of {list(SEVERITIES)}") from None
