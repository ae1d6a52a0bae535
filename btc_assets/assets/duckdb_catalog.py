"""The embedded warehouse: DuckDB views over the lake, one per table, quality-gated.

A view lists the verified day files of its table, through the same gate every asset reads
by (``day_gate.unusable_days``): a day whose latest ``quality`` check failed with ERROR
(blocked ones included), that does not verify against its manifest, or that another env
wrote is left out, so what a user queries is what passed the gates. The excluded days and
their causes are in the materialization metadata; the files stay in the lake for inspection.
Files are immutable, so a view keeps reading the version it verified until it is rebuilt.

Aliases (``spot_klines_1m`` when BTC_ASSETS_INTERVALS lists 1m) are views over another
table's view, with ``source_count = 1`` so they read as resampled bars do: they serve what
that view serves. Bar views of intervals no longer configured are dropped, so no view keeps
serving a file list nobody re-checks.
"""

from collections.abc import Mapping, Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from btc_assets.core.bars import BINANCE_INTERVALS
from btc_assets.core.tables import Table, kline_aliases, resampled_tables
from btc_assets.defs.day_gate import Input, gated_deps, unusable_days
from btc_assets.defs.resources import DatasetResource


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


# Every bar view name a configuration could have made, to drop the ones this one does not.
_ALL_BAR_VIEWS = frozenset(
    [t.name for t in resampled_tables(BINANCE_INTERVALS)] + list(kline_aliases(["1m"]))
)


def duckdb_catalog_asset(
    tables: Sequence[Table],
    aliases: Mapping[str, Table] | None = None,
    unions: Mapping[str, Sequence[Table]] | None = None,
) -> dg.AssetsDefinition:
    """The catalog over ``tables``; ``aliases`` maps further view names to one of them (the
    1m klines as ``{spot,perp}_klines_1m``, see ``core.tables.kline_aliases``); ``unions``
    maps a view name to tables of one schema it stacks (``alert_history``: the rows of every
    alert table, each as gated as its own view)."""
    aliases = dict(aliases or {})
    unions = {name: tuple(parts) for name, parts in (unions or {}).items()}
    unknown = sorted(n for n, t in aliases.items() if t.name not in {t.name for t in tables})
    if unknown:
        raise ValueError(f"aliases {unknown} name tables outside the catalog")

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
            lake.register_duckdb(conn)  # a GCS lake's views read gs:// through gcsfs
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
            for alias, table in aliases.items():
                if table.name not in views:
                    conn.execute(f'DROP VIEW IF EXISTS "{alias}"')
                    continue
                conn.execute(
                    f'CREATE OR REPLACE VIEW "{alias}" AS SELECT *, CAST(1 AS BIGINT) AS '
                    f'source_count FROM "{table.name}"'
                )
                views[alias] = views[table.name]
            for name, parts in unions.items():
                present = [t.name for t in parts if t.name in views]
                if not present:
                    conn.execute(f'DROP VIEW IF EXISTS "{name}"')
                    continue
                stacked = " UNION ALL BY NAME ".join(f'SELECT * FROM "{p}"' for p in present)
                conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {stacked}')
                views[name] = sum(views[p] for p in present)
            configured = {t.name for t in tables} | set(aliases)
            for stale in sorted(_ALL_BAR_VIEWS - configured):
                conn.execute(f'DROP VIEW IF EXISTS "{stale}"')
        missing = sorted(({t.name for t in tables} | set(aliases)) - set(views))
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
