"""CoinGlass's plan history ends; the feature table goes on, from Binance, saying so per column.

The sandbox plays a plan that serves 15m bars for the last few days only. Days before that
edge are stored empty by the CoinGlass feeds (a warning with the reason, not a block), and
``bars_15m`` takes each input from Binance for them: every day passes its gates, and the
days on either side of the edge differ in their ``*_source`` columns.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.defs.checks import QUALITY
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import evaluations, resources, run_range

PLAN_DAYS = 3  # the sandbox's CoinGlass serves 15m bars for the last 3 days


def test_features_cross_the_coinglass_history_edge_on_binance_substitutes(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    today = clock.today_utc()
    days = [today - timedelta(days=n) for n in range(5, 1, -1)]  # today-5 .. today-2
    res = resources(tmp_path, sandbox_coinglass_history_days=PLAN_DAYS)
    result = run_range(instance, res, days[0].isoformat(), days[-1].isoformat())
    assert result.success
    first_served = days[-1]  # now - 3 days falls inside today-3: today-2 is the first whole day
    by_key = {(e.asset_key.to_user_string(), e.check_name, e.partition): e
              for e in evaluations(result)}  # fmt: skip

    # The CoinGlass feeds: days outside the window are stored empty, with a warning, no block.
    for day in days[:-1]:
        price = by_key[("coinglass_price_ohlc", QUALITY, day.isoformat())]
        assert price.severity == dg.AssetCheckSeverity.WARN and "0/96" in (price.description or "")
    # The feature table: every day passes every gate.
    for day in days:
        gate = by_key[("bars_15m", QUALITY, day.isoformat())]
        assert gate.passed, (day, gate.description)

    lake = Lake(tmp_path / "lake")
    frame = lake.read_days("bars_15m", "BTCUSDT", days).frame.collect()
    assert frame.height == 4 * 96
    sources = (
        frame.with_columns(day=(pl.col("ts") - pl.duration(milliseconds=1)).dt.date())
        .group_by("day")
        .agg(pl.col("^.*_source$").unique().sort().str.join(","))
        .sort("day")
    )
    before = sources.filter(pl.col("day") < first_served)
    after = sources.filter(pl.col("day") == first_served)
    assert set(before["price_source"]) == {"binance_perp_15m"}
    assert set(before["oi_source"]) == {"binance_metrics"}
    assert set(before["cvd_source"]) == {"binance_perp_taker"}
    assert set(before["share_source"]) == {"binance_quote_volume"}
    assert set(before["liq_source"]) == {"unavailable"}
    assert set(before["funding_source"]) == {"binance_settlement"}
    for column in ("price_source", "oi_source", "cvd_source", "share_source", "liq_source"):
        assert after[column].to_list() == ["coinglass"], column
    # Funding inside the window is CoinGlass's own, even when the run's range starts outside.
    assert after["funding_source"].to_list() == ["coinglass_oi_weight"]
    # A missing value stays null with its flag: no Binance liquidation feed.
    substituted = frame.filter(pl.col("liq_source") == "unavailable")
    assert substituted["liq_long_usd"].null_count() == substituted.height > 0
    # The gate's figures say where each column came from.
    figures = by_key[("bars_15m", QUALITY, days[0].isoformat())].metadata
    assert figures["price_from_binance_perp_15m_pct"].value == 100.0
