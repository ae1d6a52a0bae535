"""The embedded warehouse: DuckDB views over the lake, one per table, quality-gated.

A view lists the verified day files of its table, through the same gate every asset reads
by (``day_gate.unusable_days``): a day whose latest ``quality`` check failed with ERROR
(blocked ones included), that does not verify against its manifest, or that another env
wrote is left out, so what a user queries is what passed the gates. The excluded days and
their causes are in the materialization metadata; the files stay in the lake for inspection.
Files are immutable, so a view keeps reading the version it verified until it is rebuilt.
"""

from collections.abc import Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.core.tables import Table
from btc_assets.defs.day_gate import Input, gated_deps, unusable_days
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
        **gated_deps(Input(table) for table in tables),
    )
    def _catalog(
        context: dg.AssetExecutionContext, dataset: DatasetResource, duckdb: DuckDBResource
    ) -> dg.MaterializeResult:
        lake = dataset.lake()
        views: dict[str, int] = {}
        excluded: dict[str, dict[str, str]] = {}
        with duckdb.get_connection() as conn:
            for table in tables:
                files: list[str] = []
                reasons: dict[str, str] = {}
                for symbol in dataset.lake_symbols(table):
                    days = lake.days_present(table.name, symbol)
                    left_out, usable, _ = unusable_days(
                        context.instance, lake, table, symbol, days, dataset.env
                    )
                    files += [str(usable[d].path) for d in sorted(usable)]
                    reasons.update(
                        {f"{symbol} {d.isoformat()}": why for d, why in sorted(left_out.items())}
                    )
                if reasons:
                    excluded[table.name] = reasons
                    context.log.warning(
                        f"{table.name}: {len(reasons)} symbol-day(s) left out of the view: "
                        + "; ".join(f"{d}: {why}" for d, why in list(reasons.items())[:5])
                    )
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
                "excluded_day_count": sum(len(v) for v in excluded.values()),
                "missing_tables": dg.MetadataValue.json(missing),
                "database": dg.MetadataValue.path(duckdb.database),
            }
        )

    return _catalog
