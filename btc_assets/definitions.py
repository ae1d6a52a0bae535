"""The one Definitions object: assets, checks, resources and jobs."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.assets.bars import PERP_15M, SPOT_15M, bar_assets
from btc_assets.assets.binance import BINANCE_TABLES, binance_assets
from btc_assets.assets.warehouse import duckdb_catalog_asset
from btc_assets.resources import BinanceResource, DatasetResource, SandboxResource
from btc_assets.settings import Settings, load_settings

LAKE_TABLES = (*BINANCE_TABLES, SPOT_15M, PERP_15M)

daily_job = dg.define_asset_job(
    "btc_daily",
    selection=dg.AssetSelection.groups("binance", "bars"),
    description="Every daily lake table of the range: raw feeds, then resampled bars.",
)
catalog_job = dg.define_asset_job(
    "warehouse_catalog", selection=dg.AssetSelection.groups("warehouse")
)


def build_resources(settings: Settings) -> dict[str, object]:
    sandbox = SandboxResource(
        enabled=settings.is_sandbox, seed=settings.sandbox_seed, faults=settings.sandbox_faults
    )
    return {
        "dataset": DatasetResource(
            lake_root=str(settings.lake_dir),
            symbol=settings.symbol,
            tail_days=settings.tail_days,
        ),
        "sandbox": sandbox,
        "binance": BinanceResource(
            spot_base_url=settings.binance_spot_base_url,
            futures_base_url=settings.binance_futures_base_url,
            sandbox=sandbox,
        ),
        "duckdb": DuckDBResource(database=str(settings.warehouse_path)),
    }


all_assets = [*binance_assets, *bar_assets, duckdb_catalog_asset(LAKE_TABLES)]

defs = dg.Definitions(
    assets=all_assets,
    resources=build_resources(load_settings()),
    jobs=[daily_job, catalog_job],
)
