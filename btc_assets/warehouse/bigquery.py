"""BigQuery loads of lake day files: the contract as a schema, and an atomic replace per day.

No Dagster here: plain ``google-cloud-bigquery`` calls that an asset (or a script) drives.

Replacing partition day D, whose rows have ``ts`` in (D 00:00, D+1 00:00]:

1. the day file is checked against the data contract (columns, dtypes, ``ts`` inside the
   day, one symbol) before BigQuery is touched, so schema drift never reaches the warehouse;
2. it is loaded into a fresh staging table (from the local file, or from its ``gs://`` copy);
   the staging table expires after a day, so a crash leaves no litter behind;
3. one multi-statement script swaps the day: ``BEGIN TRANSACTION; DELETE`` the symbol's rows
   of the interval; ``INSERT ... SELECT`` from staging; ``COMMIT TRANSACTION;`` — any error
   rolls the whole transaction back, so the previous day stays as it was;
4. the staging table is dropped, whatever happened.

That is two BigQuery jobs per day (one load, one script). The day is an interval, not a
BigQuery partition: BigQuery puts a row in partition ``DATE(ts)``, so the last 15m bar of D,
labelled D+1 00:00, lives in partition D+1. Partition decorators (``table$YYYYMMDD``) are not
used either: no emulator runs them, and some fail silently there.

An empty lake day (a legal day: "fetched, nothing there") is mirrored: the script deletes
the day and inserts nothing, and no load job runs. The warehouse holds what the lake holds.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from btc_assets.core.schema import day_bounds

# Standard-SQL type names; BigQuery answers with the legacy ones (FLOAT, INTEGER, BOOLEAN).
_BQ_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "STRING",
    pl.Float64: "FLOAT64",
    pl.Int64: "INT64",
    pl.Boolean: "BOOL",
    pl.Date: "DATE",  # vintage_date, session_date of the published tables
}
_LEGACY = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
# A symbol is inlined as a SQL string literal: a basket name, a FRED id, a ticker (BRK.B).
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# Loose on purpose: BigQuery itself says what is wrong with a project id; this only keeps
# names that are inlined into SQL free of quotes, backticks and spaces.
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
STAGING_TTL = timedelta(days=1)


class BigQueryLoadError(RuntimeError):
    """A load was refused or failed; the target table was left as it was."""


class SchemaDriftError(BigQueryLoadError):
    """A lake day file, or the BigQuery table, does not match the data contract."""


class DayFileError(BigQueryLoadError):
    """A lake day file holds rows that do not belong to its day or symbol."""


class BigQueryAccessError(BigQueryLoadError):
    """BigQuery refused the project or dataset (permission, or no such project)."""


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        # Names are inlined into SQL, so only plain identifiers get through.
        if not _PROJECT.match(self.project):
            raise BigQueryAccessError(
                f"BigQuery project {self.project!r} is not a project id: check BIGQUERY_PROJECT"
            )
        for kind, name in (("dataset", self.dataset), ("table", self.table)):
            if not _NAME.match(name):
                raise BigQueryLoadError(f"BigQuery {kind} name {name!r} is not an identifier")

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def sql(self) -> str:
        return f"`{self.table_id}`"

    def sibling(self, table: str) -> TableRef:
        return TableRef(self.project, self.dataset, table)


@dataclass(frozen=True)
class DayLoad:
    """What one day's replace did."""

    day: date
    rows: int
    job_ids: tuple[str, ...]  # load (absent for an empty day), then the script
    bytes_loaded: int  # size of the Parquet file that was loaded
    bytes_processed: int  # reported by the script job (0 on the emulators)
    source_uri: str
    destination: str


# ---------------------------------------------------------------------- schema


def bq_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise SchemaDriftError(f"{dtype} has no time zone: BigQuery TIMESTAMP needs UTC")
        return "TIMESTAMP"
    try:
        return _BQ_TYPES[dtype.base_type()]
    except KeyError:
        raise SchemaDriftError(f"no BigQuery type for Polars {dtype}") from None


def bq_schema(contract: Mapping[str, pl.DataType]) -> list[bigquery.SchemaField]:
    """The contract as BigQuery columns, in order. All NULLABLE: that is what Parquet says,
    and a REQUIRED column would reject a day whose nulls the quality check already reports.
    Column names are inlined into SQL, so only plain identifiers get through (a joined
    series named after a ticker such as BRK.B would give features_1h an ``av_brk.b_close``)."""
    bad = [name for name in contract if not _NAME.match(name)]
    if bad:
        raise SchemaDriftError(
            f"column(s) {bad} are not BigQuery column names (letters, digits, underscores)"
        )
    return [bigquery.SchemaField(name, bq_type(dtype)) for name, dtype in contract.items()]


def _normal(field_type: str) -> str:
    return _LEGACY.get(field_type.upper(), field_type.upper())


def _drift(found: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    problems = []
    extra = [c for c in found if c not in wanted]
    missing = [c for c in wanted if c not in found]
    if extra:
        problems.append(f"extra column(s) {extra}")
    if missing:
        problems.append(f"missing column(s) {missing}")
    problems += [
        f"{c} is {found[c]}, contract says {wanted[c]}"
        for c in wanted
        if c in found and found[c] != wanted[c]
    ]
    return problems


# ---------------------------------------------------------------------- dataset and table


def _access_error(target: TableRef, what: str, exc: gexc.GoogleAPICallError) -> Exception:
    # The service's own sentence, without the request URL the client puts in front of it.
    detail = next((e.get("message") for e in exc.errors or [] if e.get("message")), exc.message)
    return BigQueryAccessError(
        f"BigQuery refused to {what} {target.project}.{target.dataset} "
        f"({exc.code} {exc.__class__.__name__}: {detail}). Check BIGQUERY_PROJECT and "
        "BIGQUERY_DATASET; the account needs roles/bigquery.dataEditor on the dataset (or "
        "bigquery.datasets.create on the project) and roles/bigquery.jobUser on the project. "
        "Nothing was loaded."
    )


def ensure_table(
    client: bigquery.Client,
    target: TableRef,
    contract: Mapping[str, pl.DataType],
    location: str | None = None,
) -> bigquery.Table:
    """Create the dataset and the table if missing; refuse an existing table that drifted.

    The table is DAY-partitioned on ``ts`` and clustered by ``symbol``.
    """
    dataset_id = f"{target.project}.{target.dataset}"
    try:
        client.get_dataset(dataset_id)
    except gexc.NotFound:
        dataset = bigquery.Dataset(dataset_id)
        dataset.location = location
        try:
            client.create_dataset(dataset, exists_ok=True)
        except (gexc.Forbidden, gexc.BadRequest, gexc.NotFound) as exc:
            raise _access_error(target, "create the dataset", exc) from exc
    except (gexc.Forbidden, gexc.BadRequest) as exc:
        raise _access_error(target, "read the dataset", exc) from exc
    try:
        table = client.get_table(target.table_id)
    except gexc.NotFound:
        table = bigquery.Table(target.table_id, schema=bq_schema(contract))
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field="ts"
        )
        table.clustering_fields = ["symbol"]
        try:
            return client.create_table(table, exists_ok=True)
        except gexc.Forbidden as exc:
            raise _access_error(target, "create a table in", exc) from exc
    except gexc.Forbidden as exc:
        raise _access_error(target, "read a table in", exc) from exc
    found = {f.name: _normal(f.field_type) for f in table.schema}
    problems = _drift(found, {f.name: f.field_type for f in bq_schema(contract)})
    if problems:
        raise SchemaDriftError(
            f"BigQuery table {target.table_id} does not match the contract: "
            f"{'; '.join(problems)}. Migrate it (ALTER TABLE) or drop it to recreate it; "
            "nothing was loaded."
        )
    return table


# ---------------------------------------------------------------------- one day


def check_day_file(path: Path, contract: Mapping[str, pl.DataType], symbol: str, day: date) -> int:
    """The number of rows of a day file that matches the contract; else a clear error."""
    found = {name: str(dtype) for name, dtype in pl.read_parquet_schema(path).items()}
    problems = _drift(found, {name: str(dtype) for name, dtype in contract.items()})
    if problems:
        raise SchemaDriftError(
            f"{path}: lake day {day} does not match the data contract: {'; '.join(problems)}. "
            "Nothing was loaded; fix the lake table (or the contract and the BigQuery table)."
        )
    keys = pl.read_parquet(path, columns=["symbol", "ts"], hive_partitioning=False)
    start, end = day_bounds(day)
    outside = keys.filter((pl.col("ts") <= start) | (pl.col("ts") > end) | pl.col("ts").is_null())
    strangers = keys.filter(pl.col("symbol").is_null() | (pl.col("symbol") != symbol))
    if not outside.is_empty() or not strangers.is_empty():
        raise DayFileError(
            f"{path}: {outside.height} row(s) with ts outside ({start}, {end}] and "
            f"{strangers.height} with symbol != {symbol!r}; nothing was loaded"
        )
    return keys.height


def _timestamp(moment: datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'"


def transaction_script(
    target: TableRef, staging: TableRef | None, columns: Sequence[str], symbol: str, day: date
) -> str:
    """The day swap as one script. Literals, not query parameters: bqemulator cannot mix
    parameters into scripts, and every value here is a checked identifier or a date."""
    if not _SYMBOL.match(symbol):
        raise BigQueryLoadError(
            f"symbol {symbol!r} is not alphanumeric (letters, digits and . _ - only)"
        )
    start, end = day_bounds(day)
    cols = ", ".join(f"`{c}`" for c in columns)
    statements = [
        "BEGIN TRANSACTION;",
        f"DELETE FROM {target.sql} WHERE symbol = '{symbol}' "
        f"AND ts > {_timestamp(start)} AND ts <= {_timestamp(end)};",
    ]
    if staging is not None:
        statements.append(f"INSERT INTO {target.sql} ({cols}) SELECT {cols} FROM {staging.sql};")
    statements.append("COMMIT TRANSACTION;")
    return "\n".join(statements)


def _stage(
    client: bigquery.Client,
    staging: TableRef,
    contract: Mapping[str, pl.DataType],
    path: Path,
    source_uri: str | None,
    rows: int,
    job_prefix: str,
) -> bigquery.LoadJob:
    schema = bq_schema(contract)
    table = bigquery.Table(staging.table_id, schema=schema)
    table.expires = datetime.now(UTC) + STAGING_TTL
    client.create_table(table)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        schema=schema,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    if source_uri is not None:
        job = client.load_table_from_uri(
            source_uri, staging.table_id, job_config=config, job_id_prefix=job_prefix
        )
    else:
        with path.open("rb") as fh:
            job = client.load_table_from_file(
                fh, staging.table_id, job_config=config, job_id_prefix=job_prefix
            )
    job.result()
    if job.output_rows is not None and job.output_rows != rows:
        raise BigQueryLoadError(
            f"staging {staging.table_id} received {job.output_rows} rows, the file has {rows}; "
            "the target was not touched"
        )
    return job


def _swap(client: bigquery.Client, script: str, job_prefix: str) -> bigquery.QueryJob:
    job = client.query(script, job_id_prefix=job_prefix)
    job.result()
    return job


def replace_day(
    client: bigquery.Client,
    target: TableRef,
    contract: Mapping[str, pl.DataType],
    symbol: str,
    day: date,
    path: Path,
    source_uri: str | None = None,
) -> DayLoad:
    """Replace the ``symbol``'s rows of ``day`` in ``target`` with the day file, atomically.

    ``source_uri`` (a ``gs://`` copy of ``path``) is loaded instead of the local file when
    given; the local file is still what is checked. Call ``ensure_table`` first.
    """
    rows = check_day_file(path, contract, symbol, day)
    prefix = f"btc_{target.table}_{day:%Y%m%d}_"
    staging: TableRef | None = None
    job_ids: list[str] = []
    try:
        if rows:
            staging = target.sibling(f"_stage_{target.table}_{day:%Y%m%d}_{secrets.token_hex(4)}")
            job_ids.append(_stage(client, staging, contract, path, source_uri, rows, prefix).job_id)
        script = transaction_script(target, staging, list(contract), symbol, day)
        swap = _swap(client, script, prefix)
        job_ids.append(swap.job_id)
    finally:
        if staging is not None:
            # Best effort: the staging table expires by itself (STAGING_TTL) if this fails.
            with suppress(gexc.GoogleAPIError):
                client.delete_table(staging.table_id, not_found_ok=True)
    return DayLoad(
        day=day,
        rows=rows,
        job_ids=tuple(job_ids),
        bytes_loaded=path.stat().st_size if rows else 0,
        bytes_processed=int(swap.total_bytes_processed or 0),
        source_uri=source_uri or str(path),
        destination=target.table_id,
    )


# ---------------------------------------------------------------------- parity


def day_figures(
    client: bigquery.Client,
    target: TableRef,
    symbol: str,
    days: Sequence[date],
    volume_column: str,
    key: Sequence[str] = ("symbol", "ts"),
) -> dict[date, tuple[int, float | None, int]]:
    """Rows, the sum of ``volume_column`` and the number of distinct ``key`` values per
    partition day, in one query for the range.

    ``key`` is the table's (``Table.key``): ``[symbol, ts]`` for bars, more for a published
    table, where one vintage publishes many observations at the same ``ts``. Rows equal to
    distinct keys means no row is there twice. Days with no row are absent from BigQuery's
    answer and come back as ``(0, None, 0)``.
    """
    if not days:
        return {}
    bad = [c for c in (volume_column, *key) if not _NAME.match(c)]
    if bad:
        raise BigQueryLoadError(f"{bad} are not column names")
    start, end = day_bounds(min(days))[0], day_bounds(max(days))[1]
    by_key = ", ".join(f"`{c}`" for c in key)
    # Per key first, then per day: standard SQL both emulators run (no COUNT(DISTINCT) over
    # a tuple, which BigQuery only has through TO_JSON_STRING).
    sql = (
        "SELECT day, SUM(n) AS n, COUNT(*) AS n_keys, SUM(volume) AS volume FROM ("
        "SELECT DATE(TIMESTAMP_SUB(ts, INTERVAL 1 MILLISECOND)) AS day, COUNT(*) AS n, "
        f"SUM(`{volume_column}`) AS volume FROM {target.sql} "
        "WHERE symbol = @symbol AND ts > @start AND ts <= @end "
        f"GROUP BY day, {by_key}) GROUP BY day"
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("symbol", "STRING", symbol),
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
        ]
    )
    found = {
        row["day"]: (int(row["n"]), row["volume"], int(row["n_keys"]))
        for row in client.query(sql, job_config=config).result()
    }
    return {day: found.get(day, (0, None, 0)) for day in days}
