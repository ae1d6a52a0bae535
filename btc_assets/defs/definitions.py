"""The one Definitions object: assets, checks, resources and jobs."""

from __future__ import annotations

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.assets.bars import bar_assets
from btc_assets.assets.bigquery_loads import bigquery_assets, bigquery_job
from btc_assets.assets.binance import binance_assets
from btc_assets.assets.coinglass import coinglass_assets
from btc_assets.assets.duckdb_catalog import duckdb_catalog_asset
from btc_assets.assets.exchange_fees import exchange_fees
from btc_assets.assets.features import bars_15m
from btc_assets.assets.features_1h import features_1h_asset
from btc_assets.assets.forecast_monitoring import forecast_monitoring_asset
from btc_assets.assets.forecast_sources import forecast_source_assets
from btc_assets.assets.heatmap import heatmap_assets
from btc_assets.assets.model import model_assets
from btc_assets.assets.reports import qa_report
from btc_assets.assets.signals import signals
from btc_assets.assets.whales import whale_alerts
from btc_assets.core.tables import (
    ALERT_HISTORY_VIEW,
    ALERT_TABLES,
    RAW_TABLES,
    kline_aliases,
    lake_tables,
)
from btc_assets.defs.alert_sensors import build_alert_notifier, build_whale_watch
from btc_assets.defs.automation import (
    MAX_RUNTIME_TAG,
    build_freshness_checks,
    build_live_today,
    build_quality_alerts,
    build_run_failure_alerts,
    build_tail_refresh,
    build_warehouse_refresh,
    build_weekly_retrain,
    live_max_runtime_seconds,
)
from btc_assets.defs.forecast_resources import (
    AlphaVantageResource,
    CoinApiResource,
    CryptoQuantResource,
    FredResource,
    forecast_resource,
)
from btc_assets.defs.market_resources import (
    alert_delivery_resource,
    signals_resource,
    whale_watch_resource,
)
from btc_assets.defs.model_resources import model_resource
from btc_assets.defs.resources import (
    BinanceAccountResource,
    BinanceResource,
    CoinGlassResource,
    DatasetResource,
    QualityGatesResource,
    SandboxResource,
    SymbolConfig,
    TelegramResource,
    rate_budget_config,
)
from btc_assets.settings import (
    SANDBOX_FAULTS_SETTING,
    Settings,
    SettingsError,
    load_settings,
)
from btc_assets.warehouse.resources import warehouse_resources

SETTINGS = load_settings()
raw_freshness = build_freshness_checks(RAW_TABLES, SETTINGS)

DAILY_TABLES = dg.AssetSelection.groups(
    "binance", "bars", "coinglass", "features", "market_structure", "signals"
)
# The forecasting sources publish daily (and Alpha Vantage allows 25 requests a day): the
# daily job builds them, the live job every few minutes does not.
FORECAST_TABLES = dg.AssetSelection.groups("forecast_sources", "forecast")
# Freshness is about now, not about a historical range: only the live job evaluates it.
daily_job = dg.define_asset_job(
    "btc_daily",
    selection=(DAILY_TABLES | FORECAST_TABLES) - dg.AssetSelection.checks(raw_freshness),
    description="Every daily lake table of the range: raw feeds, resampled bars, features, "
    "the forecasting sources and features_1h.",
)
live_job = dg.define_asset_job(
    "live_today",
    selection=DAILY_TABLES,
    description="Today's partial partition of every daily table, closed bars only, and the "
    "raw feeds' freshness checks.",
    # Run monitoring fails a live run still going after this (its worker died unnoticed).
    run_tags={MAX_RUNTIME_TAG: str(live_max_runtime_seconds(SETTINGS))},
    # One partial day is seconds of work; a process per step would spend far longer loading
    # the code (~13 processes every interval), and a killed worker would orphan them.
    executor_def=dg.in_process_executor,
)
catalog_job = dg.define_asset_job(
    "warehouse_catalog",
    selection=dg.AssetSelection.groups("warehouse", "reports"),
    description="DuckDB views over the lake, and the QA report.",
    executor_def=dg.in_process_executor,  # two light steps, after every live run
)

whale_job = dg.define_asset_job(
    "whale_watch",
    selection=dg.AssetSelection.groups("whales"),
    description="Today's Hyperliquid whale positions and events into the alert history.",
    executor_def=dg.in_process_executor,  # one light step every few minutes
)

model_job = dg.define_asset_job(
    "train_model",
    selection=dg.AssetSelection.groups("model"),
    description="The training dataset over its window, then the baseline model (promoted "
    "for the prediction service).",
    executor_def=dg.in_process_executor,  # two steps in sequence: one process is enough
)


def _optional_secret(name: str) -> dg.EnvVar | None:
    """``dg.EnvVar(name)`` if the variable is set, else None. An unset EnvVar fails the
    resource's init, and so every run; a secret only one optional asset needs (the Binance
    account's, for the fee snapshots) lets that asset skip instead. Only presence is read."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else None


def _secrets(settings: Settings) -> dict[str, str | dg.EnvVar | None]:
    """Live secrets only ever come from the environment; the sandbox's are not secrets, and
    are imported only in sandbox mode (live mode imports nothing of the sandbox)."""
    if not settings.is_sandbox:
        return {
            "coinglass_key": dg.EnvVar("COINGLASS_API_KEY"),
            "telegram_token": dg.EnvVar("TELEGRAM_BOT_TOKEN"),
            "telegram_chat": dg.EnvVar("TELEGRAM_CHAT_ID"),
            "binance_key": _optional_secret("BINANCE_API_KEY"),
            "binance_secret": _optional_secret("BINANCE_API_SECRET"),
            # Each forecasting vendor is optional: without its key its feed records its
            # days as not served, naming the variable, and the rest is built.
            "coinapi_key": _optional_secret("COINAPI_API_KEY"),
            "fred_key": _optional_secret("FRED_API_KEY"),
            "alphavantage_key": _optional_secret("ALPHAVANTAGE_API_KEY"),
            "cryptoquant_key": _optional_secret("CRYPTOQUANT_API_KEY"),
        }
    from btc_assets.sandbox import credentials

    return {
        "coinglass_key": credentials.SANDBOX_COINGLASS_KEY,
        "telegram_token": credentials.SANDBOX_TELEGRAM_TOKEN,
        "telegram_chat": credentials.SANDBOX_TELEGRAM_CHAT_ID,
        "binance_key": credentials.SANDBOX_BINANCE_API_KEY,
        "binance_secret": credentials.SANDBOX_BINANCE_API_SECRET,
        "coinapi_key": credentials.SANDBOX_COINAPI_KEY,
        "fred_key": credentials.SANDBOX_FRED_API_KEY,
        "alphavantage_key": credentials.SANDBOX_ALPHAVANTAGE_KEY,
        "cryptoquant_key": credentials.SANDBOX_CRYPTOQUANT_TOKEN,
    }


def _checked_fault_plan(settings: Settings) -> str:
    """The sandbox's fault plan, read once here so that a bad one stops the definitions from
    loading, naming the variable, the entry and the problem, instead of failing the first
    fetch that meets it. Live mode uses no plan and imports nothing of the sandbox."""
    if not settings.is_sandbox:
        return settings.sandbox_faults
    from btc_assets.sandbox.faults import FaultPlan, FaultPlanError

    try:
        FaultPlan.from_json(settings.sandbox_faults, source=SANDBOX_FAULTS_SETTING)
    except FaultPlanError as exc:
        raise SettingsError(str(exc)) from None
    return settings.sandbox_faults


def basket(settings: Settings) -> list[SymbolConfig]:
    """The configured symbols as the assets' resource sees them."""
    return [
        SymbolConfig(perp=s.perp, spot=s.spot, coin=s.coin, coinglass_pair=s.coinglass_pair)
        for s in settings.symbols
    ]


def forecast_resources(
    settings: Settings, secrets: dict[str, str | dg.EnvVar | None], sandbox: SandboxResource
) -> dict[str, object]:
    """The forecasting sources' clients and their series."""
    forecast, wait = settings.forecast, settings.vendor_max_wait_seconds
    budgets = rate_budget_config(settings.rate_budget_store_url)
    return {
        "forecast": forecast_resource(forecast),
        "coinapi": CoinApiResource(
            base_url=forecast.coinapi_base_url, api_key=secrets["coinapi_key"],
            max_wait_seconds=wait, sandbox=sandbox,
        ),
        "fred": FredResource(
            base_url=forecast.fred_base_url, api_key=secrets["fred_key"],
            max_wait_seconds=wait, rate_budget_url=budgets, sandbox=sandbox,
        ),
        "alphavantage": AlphaVantageResource(
            base_url=forecast.alphavantage_base_url, api_key=secrets["alphavantage_key"],
            daily_limit=forecast.alphavantage_daily_limit,
            outputsize=forecast.alphavantage_outputsize,
            # One count for every process of the deployment, per env (a sandbox run must
            # not spend the live key's requests).
            budget_file=str(settings.data_dir / "state" / f"alphavantage_{settings.env}.json"),
            # The sandbox is a local process: no minute spacing needed there.
            requests_per_minute=None if settings.is_sandbox else 5,
            max_wait_seconds=wait, rate_budget_url=budgets, sandbox=sandbox,
        ),
        "cryptoquant": CryptoQuantResource(
            base_url=forecast.cryptoquant_base_url, api_key=secrets["cryptoquant_key"],
            exchange=forecast.cryptoquant_exchange, max_wait_seconds=wait,
            rate_budget_url=budgets, sandbox=sandbox,
        ),
    }  # fmt: skip


def build_resources(settings: Settings) -> dict[str, object]:
    secrets = _secrets(settings)
    sandbox = SandboxResource(
        enabled=settings.is_sandbox,
        seed=settings.sandbox_seed,
        faults=_checked_fault_plan(settings),
        coinglass_history_days=settings.sandbox_coinglass_history_days,
        latency_ms=settings.sandbox_latency_ms,
        request_log=str(settings.sandbox_request_log) if settings.sandbox_request_log else None,
    )
    # Every run's clients charge the same per-host counts (vendors/shared_budget.py).
    budgets = rate_budget_config(settings.rate_budget_store_url)
    return {
        "dataset": DatasetResource(
            lake_root=str(settings.lake_location),
            reports_root=str(settings.reports_dir),
            symbols=basket(settings),
            env=settings.env,
            tail_days=settings.tail_days,
            gap_confirmations=settings.gap_confirmations,
            symbol_workers=settings.symbol_workers,
            stream_root=str(settings.stream_dir),
            stream_grace_seconds=settings.stream.grace_seconds,
            series=settings.forecast.published_names(),
        ),
        "sandbox": sandbox,
        "binance": BinanceResource(
            spot_base_url=settings.binance_spot_base_url,
            futures_base_url=settings.binance_futures_base_url,
            archive_base_url=settings.binance_archive_base_url,
            use_archive=settings.binance_archive,
            max_wait_seconds=settings.vendor_max_wait_seconds,
            rate_budget_url=budgets,
            sandbox=sandbox,
        ),
        "binance_account": BinanceAccountResource(
            futures_base_url=settings.binance_futures_base_url,
            api_key=secrets["binance_key"],
            api_secret=secrets["binance_secret"],
            max_wait_seconds=settings.vendor_max_wait_seconds,
            rate_budget_url=budgets,
            sandbox=sandbox,
        ),
        "coinglass": CoinGlassResource(
            base_url=settings.coinglass_base_url,
            api_key=secrets["coinglass_key"],
            exchange=settings.coinglass_exchange,
            exchange_list=settings.coinglass_exchange_list,
            requests_per_minute=settings.coinglass_requests_per_minute,
            # The sandbox plays the plan it models unless a plan depth is set explicitly.
            history_days=settings.coinglass_history_days
            or (settings.sandbox_coinglass_history_days if settings.is_sandbox else None),
            max_wait_seconds=settings.vendor_max_wait_seconds,
            rate_budget_url=budgets,
            sandbox=sandbox,
        ),
        "gates": QualityGatesResource(),
        **forecast_resources(settings, secrets, sandbox),
        "model": model_resource(settings.model),
        "signal_thresholds": signals_resource(settings.signals),
        "whale_watch": whale_watch_resource(settings.signals),
        "alert_delivery": alert_delivery_resource(
            settings.signals, settings.data_dir / "state", settings.env
        ),
        "telegram": TelegramResource(
            base_url=settings.telegram_base_url,
            token=secrets["telegram_token"],
            chat_id=secrets["telegram_chat"],
            sandbox=sandbox,
        ),
        "duckdb": DuckDBResource(database=str(settings.warehouse_path)),
        **warehouse_resources(settings.warehouse),
    }


all_assets = [
    *binance_assets,
    exchange_fees,
    *bar_assets(SETTINGS.bar_intervals),
    *coinglass_assets,
    *heatmap_assets,
    bars_15m,
    signals,
    whale_alerts,
    *forecast_source_assets,
    features_1h_asset(SETTINGS.forecast.joined_series()),
    duckdb_catalog_asset(
        lake_tables(SETTINGS.bar_intervals, SETTINGS.forecast.joined_series()),
        aliases=kline_aliases(SETTINGS.bar_intervals),
        unions={ALERT_HISTORY_VIEW: ALERT_TABLES},
    ),
    qa_report,
    forecast_monitoring_asset(SETTINGS.forecast.joined_series()),
    *bigquery_assets(SETTINGS.bar_intervals, SETTINGS.forecast.joined_series()),
    *model_assets(SETTINGS.forecast.joined_series()),
]

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=[raw_freshness],
    resources=build_resources(SETTINGS),
    jobs=[daily_job, catalog_job, live_job, bigquery_job, model_job, whale_job],
    schedules=[build_tail_refresh(daily_job, SETTINGS), build_weekly_retrain(model_job, SETTINGS)],
    sensors=[
        build_live_today(live_job, SETTINGS),
        build_quality_alerts(SETTINGS),
        build_run_failure_alerts(SETTINGS),
        build_warehouse_refresh(catalog_job, SETTINGS),
        build_whale_watch(whale_job, SETTINGS),
        build_alert_notifier(SETTINGS),
    ],
)
