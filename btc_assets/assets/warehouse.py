"""The embedded warehouse: DuckDB views over every lake table."""

from collections.abc import Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.assets.common import Table
from btc_assets.resources import DatasetResource


def duckdb_catalog_asset(tables: Sequence[Table]) -> dg.AssetsDefinition:
    @dg.asset(
        name="duckdb_catalog",
        description="DuckDB views (one per lake table, named after it) over all its day files, "
        "so `SELECT * FROM spot_klines_15m` works in data/warehouse.duckdb.",
        group_name="warehouse",
        kinds={"duckdb"},
        deps=[table.key for table in tables],
    )
    def _catalog(
        context: dg.AssetExecutionContext, dataset: DatasetResource, duckdb: DuckDBResource
    ) -> dg.MaterializeResult:
        lake = dataset.lake()
        present = set(lake.tables())
        views: dict[str, int] = {}
        with duckdb.get_connection() as conn:
            for table in tables:
                if table.name not in present:
                    conn.execute(f'DROP VIEW IF EXISTS "{table.name}"')
                    continue
                glob = lake.table_glob(table.name).replace("'", "''")
                conn.execute(
                    f'CREATE OR REPLACE VIEW "{table.name}" AS SELECT * FROM '
                    f"read_parquet('{glob}', hive_partitioning = false, union_by_name = true)"
                )
                (rows,) = conn.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()
                views[table.name] = int(rows)
        missing = sorted({t.name for t in tables} - set(views))
        if missing:
            context.log.warning(f"no lake files yet for {missing}; their views are absent")
        return dg.MaterializeResult(
            metadata={
                "views": dg.MetadataValue.json(views),
                "missing_tables": dg.MetadataValue.json(missing),
                "database": dg.MetadataValue.path(duckdb.database),
            }
        )

    return _catalog
