"""The Definitions object: loads, and nothing silently drops out of the graph."""

import dagster as dg

from btc_assets.assets.bars import bar_assets
from btc_assets.assets.bigquery_loads import bigquery_assets
from btc_assets.core.tables import resampled_tables
from btc_assets.defs.definitions import defs

RAW_AND_BARS = {
    "binance_spot_klines_1m",
    "binance_perp_klines_1m",
    "binance_funding_rate",
    "binance_metrics",
    "spot_klines_15m",
    "perp_klines_15m",
    "spot_klines_1h",  # BTC_ASSETS_INTERVALS' default: 15m,1h
    "perp_klines_1h",
    "coinglass_price_ohlc",
    "coinglass_open_interest",
    "coinglass_funding",
    "coinglass_taker_volume",
    "coinglass_aggregated_taker",
    "coinglass_liquidations",
    "exchange_fees",  # the account's fee snapshots (signed endpoint): quality check only
}
FORECAST_SOURCES = {
    "coinapi_perp_ohlcv_1h",
    "coinapi_spot_ohlcv_1h",
    "coinapi_funding_1h",
    "fred_series",
    "alphavantage_daily",
    "cryptoquant_flows",
}
MODEL = {"training_dataset", "baseline_model"}
# the liquidation heatmap (tiles and their candles) and the signals of the alert history
MARKET = {"coinglass_heatmap_candles", "coinglass_liquidation_heatmap", "signals"}
WHALES = {"whale_alerts"}  # observed now, by its own job and sensor: never backfilled
DAILY_TABLES = {*RAW_AND_BARS, "bars_15m", *FORECAST_SOURCES, "features_1h", *MARKET}
# lake table -> its BigQuery load (group "bigquery"), see btc_assets/assets/bigquery_loads.py
BIGQUERY_LOADS = {
    "binance_spot_klines_1m": "bq_spot_klines",
    "binance_perp_klines_1m": "bq_perp_klines",
    "bars_15m": "bq_bars_15m",
    **{f"{m}_klines_{iv}": f"bq_{m}_klines_{iv}" for m in ("spot", "perp") for iv in ("15m", "1h")},
    # the forecasting sources (published series per series name) and features_1h
    **{
        name: f"bq_{name}"
        for name in (
            "coinapi_perp_ohlcv_1h",
            "coinapi_spot_ohlcv_1h",
            "coinapi_funding_1h",
            "fred_series",
            "alphavantage_daily",
            "cryptoquant_flows",
            "features_1h",
        )
    },
}


def test_definitions_load_with_the_expected_graph() -> None:
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    reports = {"duckdb_catalog", "qa_report", "forecast_monitoring"}
    assert keys == {*DAILY_TABLES, *BIGQUERY_LOADS.values(), *reports, *MODEL, *WHALES}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert jobs >= {"btc_daily", "warehouse_catalog", "live_today", "train_model", "whale_watch"}
    # the model is trained over a window by its own job, never per daily partition
    daily = {
        k.to_user_string()
        for k in defs.resolve_job_def("btc_daily").asset_layer.executable_asset_keys
    }
    assert not daily & MODEL
    assert daily >= MARKET and not daily & WHALES
    live = defs.resolve_job_def("live_today").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in live} >= MARKET  # today's signals as bars close
    watch = defs.resolve_job_def("whale_watch").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in watch} == WHALES
    assert defs.resolve_sensor_def("whale_watch").job_name == "whale_watch"
    train = defs.resolve_job_def("train_model").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in train} == MODEL
    assert defs.resolve_schedule_def("weekly_retrain").job_name == "train_model"
    assert defs.resolve_schedule_def("tail_refresh").cron_schedule == "30 0 * * *"
    for sensor in (
        "live_today",
        "quality_alerts",
        "run_failure_alerts",
        "whale_watch",
        "alert_notifier",
    ):
        assert defs.resolve_sensor_def(sensor) is not None


def test_every_lake_table_has_its_checks_and_single_run_backfills() -> None:
    graph = defs.resolve_asset_graph()
    checks_by_asset: dict[str, dict[str, bool]] = {}
    for check_key in graph.asset_check_keys:
        node = graph.get(check_key)
        checks_by_asset.setdefault(check_key.asset_key.to_user_string(), {})[check_key.name] = (
            node.blocking
        )
    assert checks_by_asset.keys() == DAILY_TABLES | set(BIGQUERY_LOADS.values()) | MODEL | WHALES
    assert checks_by_asset["training_dataset"] == {"no_lookahead": True}
    assert checks_by_asset["baseline_model"] == {"beats_naive_baselines": False}
    raw = {name for name in RAW_AND_BARS if name.startswith(("binance_", "coinglass_"))}
    for name in raw:
        assert checks_by_asset[name] == {"quality": True, "freshness": False}, name
    for name in RAW_AND_BARS - raw:
        assert checks_by_asset[name] == {"quality": True}, name
    assert checks_by_asset["bars_15m"] == {"quality": True, "reconciliation": False}
    for name in FORECAST_SOURCES | MARKET | WHALES:
        assert checks_by_asset[name] == {"quality": True}, name
    assert checks_by_asset["features_1h"] == {
        "quality": True,
        "point_in_time": True,
        "coinapi_reconciliation": False,
        "sources": False,
    }
    for name in DAILY_TABLES:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None
        assert node.backfill_policy == dg.BackfillPolicy.single_run()


def test_derived_tables_depend_on_their_sources() -> None:
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    for interval in ("15m", "1h"):
        assert parents(f"spot_klines_{interval}") == {"binance_spot_klines_1m"}
        assert parents(f"perp_klines_{interval}") == {"binance_perp_klines_1m"}
    assert parents("bars_15m") == {
        "coinglass_price_ohlc",
        "coinglass_open_interest",
        "coinglass_funding",
        "coinglass_taker_volume",
        "coinglass_aggregated_taker",
        "coinglass_liquidations",
        "binance_perp_klines_1m",
        "perp_klines_15m",
        "spot_klines_15m",
        "binance_metrics",  # the substitutes for days CoinGlass has none of
        "binance_funding_rate",
    }
    assert parents("qa_report") == {
        "bars_15m",
        "coinglass_liquidation_heatmap",
        "coinglass_heatmap_candles",
    }
    assert parents("signals") == {"bars_15m"}
    assert parents("coinglass_liquidation_heatmap") == {"coinglass_heatmap_candles"}
    assert parents("whale_alerts") == set()
    assert parents("features_1h") == {
        "perp_klines_1h",
        "spot_klines_1h",
        "binance_perp_klines_1m",
        "bars_15m",
        "coinapi_perp_ohlcv_1h",
        "coinapi_spot_ohlcv_1h",
        "coinapi_funding_1h",
        "fred_series",
        "alphavantage_daily",
        "cryptoquant_flows",
    }


def test_the_forecast_tables_are_daily_but_not_live() -> None:
    # Alpha Vantage allows 25 requests a day: the live job (every few minutes) must not ask.
    daily = defs.resolve_job_def("btc_daily").asset_layer.selected_asset_keys
    live = defs.resolve_job_def("live_today").asset_layer.selected_asset_keys
    names = {*FORECAST_SOURCES, "features_1h"}
    assert names <= {k.to_user_string() for k in daily}
    assert not names & {k.to_user_string() for k in live}


def test_bigquery_loads_are_gated_daily_assets_of_their_own_group() -> None:
    graph = defs.resolve_asset_graph()
    for source, name in BIGQUERY_LOADS.items():
        node = graph.get(dg.AssetKey(name))
        assert {k.to_user_string() for k in node.parent_keys} == {source}
        assert node.group_name == "bigquery"
        assert node.kinds == {"bigquery"}
        assert node.partitions_def is not None
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        (check,) = [k for k in graph.asset_check_keys if k.asset_key == node.key]
        assert check.name == "bq_row_parity" and graph.get(check).blocking
    job = defs.resolve_job_def("btc_bigquery")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(
        BIGQUERY_LOADS.values()
    )
    # The daily and live jobs never touch BigQuery: make demo runs it only when selected.
    for other in ("btc_daily", "live_today"):
        selected = defs.resolve_job_def(other).asset_layer.selected_asset_keys
        assert not {k.to_user_string() for k in selected} & set(BIGQUERY_LOADS.values())


def test_the_asset_graph_is_acyclic() -> None:
    graph = defs.resolve_asset_graph()
    done: set[dg.AssetKey] = set()

    def visit(key: dg.AssetKey, path: tuple[dg.AssetKey, ...]) -> None:
        assert key not in path, f"cycle: {[k.to_user_string() for k in (*path, key)]}"
        if key in done:
            return
        for parent in graph.get(key).parent_keys:
            if graph.has(parent):
                visit(parent, (*path, key))
        done.add(key)

    for key in graph.get_all_asset_keys():
        visit(key, ())


def test_other_intervals_give_their_tables_and_loads_and_always_15m_1h() -> None:
    intervals = ["1m", "4h", "1d"]
    names = {a.key.to_user_string(): a for a in bar_assets(intervals)}
    assert set(names) == {  # 15m and 1h always: bars_15m and features_1h read them
        f"{m}_klines_{iv}" for m in ("spot", "perp") for iv in ("15m", "1h", "4h", "1d")
    }
    for table in resampled_tables(intervals):
        (dep,) = names[table.name].asset_deps[dg.AssetKey(table.name)]
        assert table.source is not None and dep.to_user_string() == table.source.name
    loads = {a.key.to_user_string() for a in bigquery_assets(intervals)}
    assert loads >= {"bq_spot_klines_1d", "bq_perp_klines_4h", "bq_spot_klines_15m"}
    assert not any("klines_1m" in name for name in loads)  # 1m is loaded as spot/perp_klines
