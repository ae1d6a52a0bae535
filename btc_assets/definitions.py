"""The one Definitions object: assets, checks, resources and jobs."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.assets.bars import PERP_15M, SPOT_15M, bar_assets
from btc_assets.assets.binance import BINANCE_TABLES, binance_assets
from btc_assets.assets.coinglass import COINGLASS_TABLES, coinglass_assets
from btc_assets.assets.features import FEATURES, bars_15m
from btc_assets.assets.reports import qa_report
from btc_assets.assets.warehouse import duckdb_catalog_asset
from btc_assets.resources import (
    BinanceResource,
    CoinGlassResource,
    DatasetResource,
    QualityGatesResource,
    SandboxResource,
)
from btc_assets.settings import SANDBOX_COINGLASS_KEY, Settings, load_settings

LAKE_TABLES = (*BINANCE_TABLES, SPOT_15M, PERP_15M, *COINGLASS_TABLES, FEATURES)

daily_job = dg.define_asset_job(
    "btc_daily",
    selection=dg.AssetSelection.groups("binance", "bars", "coinglass", "features"),
    description="Every daily lake table of the range: raw feeds, resampled bars, features.",
)
catalog_job = dg.define_asset_job(
    "warehouse_catalog",
    selection=dg.AssetSelection.groups("warehouse", "reports"),
    description="DuckDB views over the lake, and the QA report.",
)


def build_resources(settings: Settings) -> dict[str, object]:
    sandbox = SandboxResource(
        enabled=settings.is_sandbox, seed=settings.sandbox_seed, faults=settings.sandbox_faults
    )
    return {
        "dataset": DatasetResource(
            lake_root=str(settings.lake_dir),
            reports_root=str(settings.reports_dir),
            symbol=settings.symbol,
            tail_days=settings.tail_days,
        ),
        "sandbox": sandbox,
        "binance": BinanceResource(
            spot_base_url=settings.binance_spot_base_url,
            futures_base_url=settings.binance_futures_base_url,
            sandbox=sandbox,
        ),
        "coinglass": CoinGlassResource(
            base_url=settings.coinglass_base_url,
            # The sandbox's key is not a secret; a real key only ever comes from the env.
            api_key=SANDBOX_COINGLASS_KEY
            if settings.is_sandbox
            else dg.EnvVar("COINGLASS_API_KEY"),
            exchange=settings.coinglass_exchange,
            exchange_list=settings.coinglass_exchange_list,
            requests_per_minute=settings.coinglass_requests_per_minute,
            sandbox=sandbox,
        ),
        "gates": QualityGatesResource(),
        "duckdb": DuckDBResource(database=str(settings.warehouse_path)),
    }


all_assets = [
    *binance_assets,
    *bar_assets,
    *coinglass_assets,
    bars_15m,
    duckdb_catalog_asset(LAKE_TABLES),
    qa_report,
]

defs = dg.Definitions(
    assets=all_assets,
    resources=build_resources(load_settings()),
    jobs=[daily_job, catalog_job],
)
