"""BigQuery raw tables: one daily-partitioned load asset per lake table, gated per day.

Each asset replaces its days in BigQuery from the verified lake day files (``btc_assets.
bigquery.replace_day``: staging load + one transaction), optionally staging them on GCS
first, then checks per day that BigQuery holds what the lake holds (``bq_row_parity``).
A day is loaded only when it passes the gate and verifies (``day_gate.read_gated``, the read
every asset uses). A blocked day is not loaded and does not fail the step: it is recorded
with its cause and fails ``bq_row_parity`` with ERROR, as lake tables record theirs. A day
whose file BigQuery refuses, or a service failure, fails the step after the loaded days
are recorded.

Adding a table is one line in ``bigquery_assets``: ``bigquery_load_asset(SOME_TABLE)``. The
resampled bar tables of ``Settings.bar_intervals`` are loaded under their lake names
(``spot_klines_1h``); the 1m klines keep their BigQuery names ``spot_klines``/``perp_klines``.

Published tables (``Table.published``: FRED, Alpha Vantage, CryptoQuant) store series, not
basket members: they are loaded per series name (``DatasetResource.lake_symbols``), through
the same gate. Parity counts rows, distinct keys (``Table.key``: a published table has many
rows per ``[symbol, ts]``, one per observation a vintage published) and a sum of the table's
value column (``PARITY_COLUMNS``).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.assets.common import range_days, run_symbols
from btc_assets.assets.day_metadata import (
    column_schema,
    markdown_table,
    materialize_days,
    merge_day_metadata,
    tag_blocked,
)
from btc_assets.core.forecast_schema import JoinedSeries
from btc_assets.core.schema import partition_day_expr
from btc_assets.core.tables import (
    ALPHAVANTAGE_DAILY,
    COINAPI_FUNDING,
    COINAPI_PERP_1H,
    COINAPI_SPOT_1H,
    CRYPTOQUANT_FLOWS,
    FEATURES,
    FEATURES_1H_NAME,
    FORECAST_SOURCE_TABLES,
    FRED_SERIES,
    PERP_1M,
    SPOT_1M,
    Table,
    features_1h_table,
    resampled_tables,
)
from btc_assets.defs import checks
from btc_assets.defs.day_gate import GatedRead, Input, gate_names, gated_deps
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL
from btc_assets.defs.resources import DatasetResource
from btc_assets.warehouse.bigquery import (
    DayFileError,
    DayLoad,
    SchemaDriftError,
    check_day_file,
    day_figures,
    ensure_table,
    replace_day,
)
from btc_assets.warehouse.resources import BigQueryWarehouseResource, GcsStagingResource

GROUP = "bigquery"
# The first of these a table has is what parity sums: base volume for klines, USD volume
# for the feature table (its CoinGlass bar volume; perp/spot base volumes are inputs).
VOLUME_COLUMNS = ("volume", "volume_usd")
# Tables whose parity sums another column: a published series' value (FRED's is null on a
# holiday, and a null sums as nothing on both sides), a bar's close where the volume is
# a by-product (CoinAPI's cross-check, Alpha Vantage sessions, features_1h), the funding
# rate of CoinAPI's funding metric.
PARITY_COLUMNS = {
    FRED_SERIES.name: "value",
    CRYPTOQUANT_FLOWS.name: "value",
    ALPHAVANTAGE_DAILY.name: "close",
    COINAPI_PERP_1H.name: "close",
    COINAPI_SPOT_1H.name: "close",
    COINAPI_FUNDING.name: "funding_rate",
    FEATURES_1H_NAME: "close",
}
PREVIEW_ROWS = 3


@dataclass(frozen=True)
class WarehouseTable:
    """A lake table and the BigQuery table (and asset ``bq_<name>``) it is loaded into."""

    source: Table
    name: str

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(f"bq_{self.name}")

    @property
    def interval(self) -> str:
        return self.source.every or "event"

    @property
    def parity_column(self) -> str:
        """The column whose per-day sum ``bq_row_parity`` compares."""
        wanted = PARITY_COLUMNS.get(self.source.name)
        candidates = (wanted,) if wanted else VOLUME_COLUMNS
        for column in candidates:
            if column in self.source.schema:
                return column
        raise ValueError(f"{self.source.name} has none of {candidates} to check parity on")

    @property
    def row_key(self) -> tuple[str, ...]:
        """The columns that identify a row (``Table.key``)."""
        return self.source.key


Figures = dict[date, tuple[int, float | None, int]]  # day -> (rows, sum, distinct keys)


def _lake_figures(lake_frame: pl.LazyFrame, table: WarehouseTable, days: list[date]) -> Figures:
    """Rows, the parity column's sum and distinct keys per day, from the verified lake scan."""
    column = table.parity_column
    frame = (
        lake_frame.filter(partition_day_expr().is_in(days))
        .group_by(partition_day_expr().alias("day"))
        .agg(
            pl.len().alias("rows"),
            pl.col(column).sum().alias("total"),
            pl.struct(list(table.row_key)).n_unique().alias("keys"),
        )
        .collect()
    )
    found = {
        row["day"]: (row["rows"], row["total"], row["keys"]) for row in frame.iter_rows(named=True)
    }
    return {day: found.get(day, (0, None, 0)) for day in days}


def table_parity_verdicts(
    table: WarehouseTable, lake_figures: Figures, warehouse_figures: Figures
) -> dict[date, checks.Verdict]:
    """``checks.parity_verdicts`` on rows and sums, and the distinct keys compared too: a
    row there twice and another missing can leave the count, and a sum over nulls, alike."""
    column, key = table.parity_column, ", ".join(table.row_key)
    verdicts = checks.parity_verdicts(
        {d: (rows, total) for d, (rows, total, _) in lake_figures.items()},
        {d: (rows, total) for d, (rows, total, _) in warehouse_figures.items()},
        column,
    )
    out: dict[date, checks.Verdict] = {}
    for day, verdict in verdicts.items():
        lake_keys = lake_figures[day][2]
        bq_keys = warehouse_figures.get(day, (0, None, 0))[2]
        metadata = {**verdict.metadata, "key": key, "bigquery_keys": bq_keys}
        metadata["lake_keys"] = lake_keys
        if bq_keys == lake_keys:
            out[day] = replace(verdict, metadata=metadata)
            continue
        problem = f"distinct ({key}): BigQuery {bq_keys}, lake {lake_keys}"
        out[day] = replace(
            verdict,
            passed=False,
            description=problem if verdict.passed else f"{verdict.description}; {problem}",
            metadata=metadata,
        )
    return out


def _stored_names(
    context: dg.AssetExecutionContext, dataset: DatasetResource, source: Table
) -> list[str]:
    """The names ``source`` stores that this run loads: a published table's series (all of
    them: the run's symbol tag names basket members), else the run's basket members' names."""
    if source.published:
        return dataset.lake_symbols(source)
    members = run_symbols(context, dataset.symbols)
    return list(dict.fromkeys(n for m in members if (n := m.lake_symbol(source))))


def _gated_reads(
    context: dg.AssetExecutionContext,
    dataset: DatasetResource,
    source: Table,
    names: Sequence[str],
    days: list[date],
) -> dict[str, GatedRead]:
    """The day gate (``day_gate``) for one same-day input, by the names the table stores:
    what ``read_gated`` does per basket member, for names that need not be members (a
    published table's series). A day is blocked for a name when its latest upstream
    ``quality`` failed with ERROR naming it, its file does not verify, or another env
    wrote it; one ``day_failures`` query for every name."""
    reads: dict[str, GatedRead] = {}
    gated = gate_names(context.instance, dataset.lake(), source, names, days, dataset.env)
    for name, (reasons, usable, frame) in gated.items():
        blocked = {d: [f"{source.name} {name} {d} {reasons[d]}"] for d in days if d in reasons}
        reads[name] = GatedRead(
            days=[d for d in days if d not in blocked],
            blocked=blocked,
            frames={"lake": frame},
            committed={"lake": usable},
        )
        if blocked:
            context.log.warning(
                f"{name}: {len(blocked)} day(s) blocked upstream, not loaded: "
                + "; ".join(f"{d}: {' | '.join(why)}" for d, why in sorted(blocked.items()))
            )
    return reads


def _preview(path: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(pl.read_parquet(path, n_rows=PREVIEW_ROWS)))


def _day_metadata(load: DayLoad, lake_path: str) -> dict[str, Any]:
    source = (
        dg.MetadataValue.url(load.source_uri)
        if load.source_uri.startswith("gs://")
        else dg.MetadataValue.path(load.source_uri)
    )
    return {
        "dagster/row_count": load.rows,
        "bigquery_job_ids": ", ".join(load.job_ids),
        "bigquery_jobs": len(load.job_ids),
        "bytes_loaded": load.bytes_loaded,
        "bytes_processed": load.bytes_processed,
        "destination_table": load.destination,
        "source_uri": source,
        "lake_path": dg.MetadataValue.path(lake_path),
        "preview": _preview(lake_path),
    }


def _failure(
    table: WarehouseTable,
    loads: Mapping[str, Mapping[date, DayLoad]],
    blocked: Mapping[tuple[str, date], list[str]],
    refused: Mapping[tuple[str, date], str],
    error: Exception | None,
) -> dg.Failure:
    reasons = [f"{s} {d}: {why}" for (s, d), why in sorted(refused.items())]
    text = f"{table.key.to_user_string()}: {len(refused)} symbol-day(s) refused"
    if reasons:
        text += f" ({'; '.join(reasons)})"
    if error is not None:
        text += f"; stopped by {error.__class__.__name__}: {error}"
    loaded = sum(len(days) for days in loads.values())
    return dg.Failure(
        description=f"{text}. {loaded} other symbol-day(s) were loaded.",
        metadata={
            "blocked_days": sorted(f"{s} {d.isoformat()}" for s, d in blocked),
            "refused_days": sorted(f"{s} {d.isoformat()}" for s, d in refused),
        },
    )


def bigquery_load_asset(source: Table, name: str | None = None) -> dg.AssetsDefinition:
    """The asset ``bq_<name>`` loading lake table ``source`` into BigQuery table ``name``."""
    table = WarehouseTable(source, name or source.name)
    parity_column = table.parity_column
    row_key = list(table.row_key)
    check_spec = checks.parity_check_spec(table.key, parity_column)
    check_spec = check_spec._replace(
        description=f"{check_spec.description} Distinct ({', '.join(row_key)}) must match too."
    )

    @dg.asset(
        name=table.key.path[-1],
        description=f"Lake table {source.name} in BigQuery table {table.name} (DAY-partitioned "
        "on ts, clustered by symbol"
        + (", the series" if source.published else "")
        + "): each day replaced atomically from its verified day file, staged on GCS when "
        "GCS_STAGING_BUCKET is set.",
        partitions_def=DAILY,
        backfill_policy=DAILY_BACKFILL,
        group_name=GROUP,
        kinds={"bigquery"},
        **gated_deps([Input(source)]),
        check_specs=[check_spec],
    )
    def _load(
        context: dg.AssetExecutionContext,
        dataset: DatasetResource,
        bigquery: BigQueryWarehouseResource,
        gcs_staging: GcsStagingResource,
    ) -> Iterator[Any]:
        lake, days = dataset.lake(), range_days(context)
        names = _stored_names(context, dataset, source)
        reads = _gated_reads(context, dataset, source, names, days)
        loads: dict[str, dict[date, DayLoad]] = {name: {} for name in names}
        refused: dict[tuple[str, date], str] = {}
        error: Exception | None = None
        warehouse: dict[str, Any] = {}
        with bigquery.get_client() as client:
            target = bigquery.table(table.name)
            ensure_table(client, target, source.schema, bigquery.location)
            storage = gcs_staging.client()
            for name in names:
                files = reads[name].committed["lake"]
                for day in reads[name].days:
                    try:
                        # A GCS lake's day is downloaded (verified) for the checks and load.
                        with lake.local_copy(files[day]) as path:
                            check_day_file(path, source.schema, name, day)  # before staging
                            uri = gcs_staging.stage(
                                storage, path, table.name, table.interval, day, symbol=name
                            )
                            loads[name][day] = replace_day(
                                client, target, source.schema, name, day, path, source_uri=uri
                            )
                    except (SchemaDriftError, DayFileError) as exc:
                        refused[(name, day)] = str(exc)  # this day's data; others may be fine
                    except Exception as exc:
                        # Service or staging trouble: stop, record what is done, then fail.
                        error = exc
                        break
                if error is not None:
                    break
            try:
                for name in names:
                    warehouse[name] = day_figures(
                        client, target, name, list(loads[name]), parity_column, row_key
                    )
            except Exception:
                if error is None:
                    raise
                warehouse = {}  # the service is down: the error below says so
        built = {
            day: {
                name: _day_metadata(load, str(reads[name].committed["lake"][day].path))
                for name in names
                if (load := loads[name].get(day)) is not None
            }
            for day in days
        }
        blocked = {(name, d): why for name in names for d, why in reads[name].blocked.items()}
        per_day = {
            day: merge_day_metadata(built[day], blocked, day, len(names))
            for day in days
            if built[day] or any(d == day for _, d in blocked)
        }
        complete = not refused and error is None
        yield from materialize_days(
            context,
            table.key,
            per_day,
            common={
                "dagster/column_schema": column_schema(source),
                "dagster/table_name": target.table_id,
            },
            range_only={
                "symbols": len(names),
                "days": len({d for name in names for d in loads[name]}),
                "blocked_days": len({d for _, d in blocked}),
                "rows": sum(load.rows for name in names for load in loads[name].values()),
                "bigquery_jobs": sum(
                    len(load.job_ids) for name in names for load in loads[name].values()
                ),
                "gcs_staging": gcs_staging.enabled,
            },
            materialize_all=complete,
        )
        verdicts: dict[date, dict[str, checks.Verdict]] = {}
        for name in names:
            if name in warehouse:
                loaded = lake.read_days(source.name, name, list(loads[name]), dict(source.schema))
                lake_figures = _lake_figures(loaded.frame, table, list(loads[name]))
                found = table_parity_verdicts(table, lake_figures, warehouse[name])
                for day, verdict in found.items():
                    verdicts.setdefault(day, {})[name] = verdict
            for day, reasons in reads[name].blocked.items():
                verdicts.setdefault(day, {})[name] = checks.blocked_verdict(reasons)
        for day, found in sorted(verdicts.items()):
            yield checks.merge_verdicts(table.key, checks.ROW_PARITY, day, found)
        if blocked:
            tag_blocked(context, table.key, blocked)
        if not complete:
            raise _failure(table, loads, blocked, refused, error) from error
        yield from checks.check_outputs(context)

    return _load


def bigquery_assets(
    intervals: Iterable[str], series: Iterable[JoinedSeries] = ()
) -> list[dg.AssetsDefinition]:
    """The load assets: 1m klines, the resampled bars of ``intervals``, the feature table,
    the forecasting sources and ``features_1h`` with the columns of the joined ``series``
    (``ForecastSettings.joined_series``)."""
    return [
        bigquery_load_asset(SPOT_1M, "spot_klines"),
        bigquery_load_asset(PERP_1M, "perp_klines"),
        *(bigquery_load_asset(table) for table in resampled_tables(intervals)),
        bigquery_load_asset(FEATURES),
        *(bigquery_load_asset(table) for table in FORECAST_SOURCE_TABLES),
        bigquery_load_asset(features_1h_table(series)),
    ]


bigquery_job = dg.define_asset_job(
    "btc_bigquery",
    selection=dg.AssetSelection.groups(GROUP),
    description="Load the lake's daily tables into BigQuery (WAREHOUSE=bigquery).",
)
