"""The embedded warehouse: DuckDB views over the lake, one per table, quality-gated.

A view lists the day files of its table except the days whose latest ``quality`` check
failed with ERROR, so what a user queries is what passed the gates; the excluded days are
named in the materialization metadata and stay in the lake for inspection.
"""

from collections.abc import Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.assets.common import table_key
from btc_assets.core.tables import Table
from btc_assets.defs.day_gate import blocked_days
from btc_assets.defs.resources import DatasetResource


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def duckdb_catalog_asset(tables: Sequence[Table]) -> dg.AssetsDefinition:
    @dg.asset(
        name="duckdb_catalog",
        description="DuckDB views (one per lake table, named after it) over the day files "
        "that passed their blocking quality check, in data/warehouse.duckdb: "
        "`SELECT * FROM bars_15m`.",
        group_name="warehouse",
        kinds={"duckdb"},
        automation_condition=dg.AutomationCondition.eager(),
        deps=[table_key(table) for table in tables],
    )
    def _catalog(
        context: dg.AssetExecutionContext, dataset: DatasetResource, duckdb: DuckDBResource
    ) -> dg.MaterializeResult:
        lake, symbol = dataset.lake(), dataset.symbol
        views: dict[str, int] = {}
        excluded: dict[str, list[str]] = {}
        with duckdb.get_connection() as conn:
            for table in tables:
                days = lake.days_present(table.name, symbol)
                blocked = blocked_days(context.instance, [table_key(table)], days)
                files = [
                    str(lake.day_file(table.name, symbol, d)) for d in days if d not in blocked
                ]
                if blocked:
                    excluded[table.name] = sorted(d.isoformat() for d in blocked)
                if not files:
                    conn.execute(f'DROP VIEW IF EXISTS "{table.name}"')
                    continue
                conn.execute(
                    f'CREATE OR REPLACE VIEW "{table.name}" AS SELECT * FROM read_parquet('
                    f"{_sql_list(files)}, hive_partitioning = false, union_by_name = true)"
                )
                (rows,) = conn.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
                views[table.name] = int(rows)
        missing = sorted({t.name for t in tables} - set(views))
        if missing:
            context.log.warning(f"no lake files yet for {missing}; their views are absent")
        return dg.MaterializeResult(
            metadata={
                "views": dg.MetadataValue.json(views),
                "excluded_days": dg.MetadataValue.json(excluded),
                "missing_tables": dg.MetadataValue.json(missing),
                "database": dg.MetadataValue.path(duckdb.database),
            }
        )

    return _catalog
