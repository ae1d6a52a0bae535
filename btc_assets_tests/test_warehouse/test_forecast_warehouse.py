"""The forecasting sources in both warehouses: DuckDB views and BigQuery loads.

The published tables (FRED, Alpha Vantage, CryptoQuant) store series, not basket members,
and their key is not ``[symbol, ts]`` (one vintage publishes several observations at one
``ts``: DTWEXBGS on 2024-03-06 here). Each warehouse serves them per series, through the
day gate: a day whose file does not verify, or whose ``quality`` failed with ERROR, is
neither in a view nor loaded, and says why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
from google.cloud import bigquery

from btc_assets.assets.bigquery_loads import WarehouseTable, bigquery_assets, table_parity_verdicts
from btc_assets.core.schema import partition_day_expr
from btc_assets.core.tables import (
    ALPHAVANTAGE_DAILY,
    COINAPI_PERP_1H,
    CRYPTOQUANT_FLOWS,
    FORECAST_SOURCE_TABLES,
    FRED_SERIES,
    Table,
    features_1h_table,
)
from btc_assets.defs.checks import QUALITY, ROW_PARITY
from btc_assets.defs.definitions import SETTINGS
from btc_assets.defs.resources import DatasetResource
from btc_assets.lake import Lake
from btc_assets.warehouse.bigquery import (
    BigQueryLoadError,
    SchemaDriftError,
    TableRef,
    bq_schema,
    transaction_script,
)
from btc_assets_tests.emulators import PROJECT, BigQueryEmulator
from btc_assets_tests.test_assets.helpers import (
    build_catalog,
    catalog_metadata,
    evaluations,
    failure_text,
    latest_metadata,
    resources,
    run_range,
)
from btc_assets_tests.test_warehouse.conftest import DAYS as WAREHOUSE_DAYS
from btc_assets_tests.test_warehouse.conftest import bq_resources, load, warehouse

# Mon..Wed: a session a day for Alpha Vantage, FRED vintages on two of them.
DAYS = ["2024-03-04", "2024-03-05", "2024-03-06"]
# Alpha Vantage serves its latest 100 sessions (compact, the free plan); the sandbox counts
# them back from its clock, so the clock is pinned a few days after DAYS.
PINNED = datetime(2024, 3, 9, 12, tzinfo=UTC)
SOURCES = [t.name for t in FORECAST_SOURCE_TABLES]
LOADED = (FRED_SERIES, ALPHAVANTAGE_DAILY, CRYPTOQUANT_FLOWS, COINAPI_PERP_1H)
# The lake's figures of the sandbox over DAYS, per (series, day): proof the fixture is what
# the tests below assume (two FRED rows at one ts on the last day).
FRED_ROWS = {("DGS10", DAYS[1]): 1, ("DGS10", DAYS[2]): 1,
             ("DTWEXBGS", DAYS[1]): 1, ("DTWEXBGS", DAYS[2]): 2}  # fmt: skip
LEGACY = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}  # what BigQuery answers
ROTTEN = ("DGS10", DAYS[1])  # its file is damaged after it passed
DUPLICATED = ("DTWEXBGS", DAYS[2])  # a row is there twice: its quality fails with ERROR


def _as_day(text: str) -> date:
    return date.fromisoformat(text)


def _build_sources(instance: dg.DagsterInstance, res: dict[str, object]) -> None:
    result = run_range(instance, res, DAYS[0], DAYS[-1], SOURCES)
    assert result.success
    quality = [e for e in evaluations(result) if e.check_name == QUALITY]
    assert len(quality) == len(SOURCES) * len(DAYS) and all(e.passed for e in quality)


def _dataset(res: dict[str, object]) -> DatasetResource:
    dataset = res["dataset"]
    assert isinstance(dataset, DatasetResource)
    return dataset


def _lake_frame(data_dir: Path, res: dict[str, object], table: Table) -> pl.DataFrame:
    """Every verified row of ``table`` over DAYS, each series or member, sorted by key."""
    lake = Lake(data_dir / "lake")
    frames = [
        lake.read_days(
            table.name, name, [_as_day(d) for d in DAYS], dict(table.schema)
        ).frame.collect()
        for name in _dataset(res).lake_symbols(table)
    ]
    return pl.concat(frames).sort(list(table.key))


def _counts(frame: pl.DataFrame) -> dict[tuple[str, str], int]:
    """Rows per (symbol, partition day)."""
    per = frame.group_by("symbol", partition_day_expr().cast(pl.String).alias("day")).len()
    return {(s, d): n for s, d, n in per.iter_rows()}


def _bq_frame(client: bigquery.Client, table_id: str, table: Table) -> pl.DataFrame:
    """The BigQuery table in the lake's dtypes (BigQuery answers µs), sorted by key."""
    job = client.query(f"SELECT * FROM `{table_id}`")
    frame = pl.from_arrow(job.result().to_arrow(create_bqstorage_client=False))
    assert isinstance(frame, pl.DataFrame)
    return frame.cast(dict(table.schema)).select(list(table.schema)).sort(list(table.key))  # type: ignore[arg-type]


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage(data_dir: Path, instance: dg.DagsterInstance, res: dict[str, object]) -> Path:
    """Rot one FRED day file after it passed; write another with a row twice and record
    its ``quality`` again (the raw asset reuses the stored day and re-checks it). Returns
    the rotten file."""
    lake = Lake(data_dir / "lake")
    rotten = lake.day_file(FRED_SERIES.name, ROTTEN[0], _as_day(ROTTEN[1]))
    _flip_a_byte(rotten)
    series, key = DUPLICATED
    written = lake.verify_day(FRED_SERIES.name, series, _as_day(key))
    frame = pl.read_parquet(written.path)
    lake.write_day(FRED_SERIES.name, series, _as_day(key), pl.concat([frame, frame.head(1)]),
                   dict(written.provenance))  # fmt: skip
    result = run_range(instance, res, key, key, [FRED_SERIES.name])
    assert result.success
    (quality,) = [e for e in evaluations(result) if e.check_name == QUALITY]
    assert not quality.passed and quality.severity == dg.AssetCheckSeverity.ERROR
    assert series in (quality.description or "") and "duplicate_keys=1" in (
        quality.description or ""
    )
    return rotten


# --- no emulator -----------------------------------------------------------------------------


def test_published_contracts_map_to_bigquery() -> None:
    fred = {f.name: f.field_type for f in bq_schema(FRED_SERIES.schema)}
    assert fred["vintage_date"] == "DATE" and fred["missing"] == "BOOL"
    assert fred["event_time"] == fred["available_at"] == fred["ts"] == "TIMESTAMP"
    assert {f.name: f.field_type for f in bq_schema(ALPHAVANTAGE_DAILY.schema)}[
        "session_date"
    ] == "DATE"
    assert {f.name: f.field_type for f in bq_schema(CRYPTOQUANT_FLOWS.schema)}["revised"] == "BOOL"
    hourly = features_1h_table(SETTINGS.forecast.joined_series())
    assert [f.name for f in bq_schema(hourly.schema)] == list(hourly.schema)
    with pytest.raises(SchemaDriftError, match=r"\['av_brk.b_close'\] are not BigQuery column"):
        bq_schema({"symbol": pl.String(), "av_brk.b_close": pl.Float64()})
    # Series names are symbols too: a ticker with a dot is one; a quote never is.
    target = TableRef("test-project", "btc", "alphavantage_daily")
    script = transaction_script(target, None, ["symbol"], "BRK.B", _as_day(DAYS[0]))
    assert "symbol = 'BRK.B'" in script
    with pytest.raises(BigQueryLoadError, match="alphanumeric"):
        transaction_script(target, None, ["symbol"], "BRK'B", _as_day(DAYS[0]))


def test_parity_sums_each_tables_value_column_and_counts_its_key() -> None:
    loads = {a.key.to_user_string(): a for a in bigquery_assets(SETTINGS.bar_intervals)}
    assert {f"bq_{t.name}" for t in FORECAST_SOURCE_TABLES} | {"bq_features_1h"} <= set(loads)
    columns = {
        t.name: WarehouseTable(t, t.name).parity_column
        for t in (*FORECAST_SOURCE_TABLES, features_1h_table())
    }
    assert columns == {
        "coinapi_perp_ohlcv_1h": "close",
        "coinapi_spot_ohlcv_1h": "close",
        "coinapi_funding_1h": "funding_rate",
        "fred_series": "value",
        "alphavantage_daily": "close",
        "cryptoquant_flows": "value",
        "features_1h": "close",
    }
    fred = WarehouseTable(FRED_SERIES, "fred_series")
    assert fred.row_key == ("symbol", "event_time", "available_at")
    # Same rows and sum, one observation there twice and another missing (a null value
    # sums as nothing): only the distinct keys tell.
    day = _as_day(DAYS[2])
    (verdict,) = table_parity_verdicts(fred, {day: (2, 5.0, 2)}, {day: (2, 5.0, 1)}).values()
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
    assert verdict.description == (
        "distinct (symbol, event_time, available_at): BigQuery 1, lake 2"
    )
    (verdict,) = table_parity_verdicts(fred, {day: (2, 5.0, 2)}, {day: (3, 6.0, 2)}).values()
    assert not verdict.passed and verdict.description.startswith("rows: BigQuery 3, lake 2")
    assert "distinct" not in verdict.description  # the keys agree
    (verdict,) = table_parity_verdicts(
        fred, {day: (0, None, 0)}, {}
    ).values()  # a day with no vintage
    assert verdict.passed and verdict.metadata["bigquery_keys"] == 0


def test_duckdb_views_serve_the_sources_and_leave_out_bad_series_days(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Any
) -> None:
    pinned_clock(PINNED)
    res = resources(tmp_path)
    _build_sources(instance, res)
    assert _counts(_lake_frame(tmp_path, res, FRED_SERIES)) == FRED_ROWS

    assert build_catalog(instance, res).success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        for table in FORECAST_SOURCE_TABLES:
            lake = _lake_frame(tmp_path, res, table)
            (rows,) = con.execute(f'SELECT count(*) FROM "{table.name}"').fetchone()  # type: ignore[misc]
            assert rows == lake.height > 0, table.name
            columns = {c for (c, *_) in con.execute(f'DESCRIBE "{table.name}"').fetchall()}
            assert columns == set(table.schema), table.name
        types = {c: t for (c, t, *_) in con.execute("DESCRIBE fred_series").fetchall()}
        assert types["vintage_date"] == "DATE" and types["available_at"].startswith("TIMESTAMP")
        (perp,) = con.execute("SELECT count(*) FROM coinapi_perp_ohlcv_1h").fetchone()  # type: ignore[misc]
        assert perp == 24 * len(DAYS)
    meta = catalog_metadata(instance)
    assert meta["excluded_days"] == {}
    assert all(meta["views"][t.name] > 0 for t in FORECAST_SOURCE_TABLES)

    rotten = _damage(tmp_path, instance, res)
    assert build_catalog(instance, res).success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        served = con.execute(
            "SELECT symbol, CAST(CAST(ts - INTERVAL 1 MILLISECOND AS DATE) AS VARCHAR), "
            "count(*) FROM fred_series GROUP BY ALL"
        ).fetchall()
    expected = {k: n for k, n in FRED_ROWS.items() if k not in (ROTTEN, DUPLICATED)}
    assert {(s, d): n for s, d, n in served} == expected
    excluded = catalog_metadata(instance)["excluded_days"]
    assert set(excluded) == {FRED_SERIES.name}  # the other tables are whole
    why = excluded[FRED_SERIES.name]
    assert set(why) == {" ".join(ROTTEN), " ".join(DUPLICATED)}
    assert (
        why[" ".join(ROTTEN)].startswith("does not verify") and str(rotten) in why[" ".join(ROTTEN)]
    )
    assert "fred_series.quality failed" in why[" ".join(DUPLICATED)]
    assert "duplicate_keys=1" in why[" ".join(DUPLICATED)]


# --- BigQuery (emulator) ---------------------------------------------------------------------


def _load(
    instance: dg.DagsterInstance, res: dict[str, object], tables: tuple[Table, ...] = LOADED
) -> dg.ExecuteInProcessResult:
    """The load assets of ``tables`` over DAYS, as the definitions build them."""
    return dg.materialize(
        bigquery_assets(SETTINGS.bar_intervals, SETTINGS.forecast.joined_series()),
        instance=instance,
        resources=res,
        selection=[f"bq_{t.name}" for t in tables],
        tags={
            "dagster/asset_partition_range_start": DAYS[0],
            "dagster/asset_partition_range_end": DAYS[-1],
        },
        raise_on_error=False,
    )


def _parity_checks(
    result: dg.ExecuteInProcessResult,
) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {
        (e.asset_key.path[-1], e.partition): e  # type: ignore[misc]
        for e in evaluations(result)
        if e.check_name == ROW_PARITY
    }


def test_series_and_coinapi_days_load_with_parity_and_reload_idempotently(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Any,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    pinned_clock(PINNED)
    res = bq_resources(tmp_path, warehouse(bq, bq_dataset))
    _build_sources(instance, res)
    result = _load(instance, res)
    assert result.success, failure_text(result) if not result.success else ""

    tables = {t.table_id for t in bq_client.list_tables(f"{PROJECT}.{bq_dataset}")}
    assert tables == {t.name for t in LOADED}  # no staging table left behind
    stored: dict[str, pl.DataFrame] = {}
    for table in LOADED:
        table_id = f"{PROJECT}.{bq_dataset}.{table.name}"
        found = [(f.name, LEGACY.get(f.field_type, f.field_type))
                 for f in bq_client.get_table(table_id).schema]  # fmt: skip
        assert found == [(f.name, f.field_type) for f in bq_schema(table.schema)], table.name
        stored[table.name] = _bq_frame(bq_client, table_id, table)
        lake = _lake_frame(tmp_path, res, table)
        assert _counts(stored[table.name]) == _counts(lake), table.name  # per series and day
        assert stored[table.name].equals(lake), table.name  # value for value, dtypes included
    fred_types = {
        f.name: f.field_type
        for f in bq_client.get_table(f"{PROJECT}.{bq_dataset}.fred_series").schema
    }
    assert fred_types["vintage_date"] == "DATE" and fred_types["missing"] == "BOOLEAN"
    assert _counts(stored["fred_series"]) == FRED_ROWS
    assert _counts(stored["alphavantage_daily"]) == {
        (s, d): 1 for s in ("SPY", "UUP") for d in DAYS
    }

    parity = _parity_checks(result)
    assert set(parity) == {(f"bq_{t.name}", d) for t in LOADED for d in DAYS}
    assert all(e.passed for e in parity.values()), [
        e.description for e in parity.values() if not e.passed
    ]
    two_at_one_ts = parity[("bq_fred_series", DAYS[2])]
    assert two_at_one_ts.metadata["symbols"].value == 2  # one evaluation for both series
    by_symbol = two_at_one_ts.metadata["by_symbol"].value
    assert by_symbol["DTWEXBGS"]["metadata"]["bigquery_keys"] == 2  # type: ignore[index]
    assert by_symbol["DTWEXBGS"]["metadata"]["key"] == "symbol, event_time, available_at"  # type: ignore[index]
    assert "bigquery_sum_value" in two_at_one_ts.metadata
    assert "bigquery_sum_close" in parity[("bq_alphavantage_daily", DAYS[0])].metadata
    meta = latest_metadata(instance, "bq_fred_series", DAYS[2])
    assert meta["dagster/row_count"] == 3 and meta["symbols_built"] == 2
    empty_day = latest_metadata(instance, "bq_fred_series", DAYS[0])  # no vintage that day
    assert empty_day["dagster/row_count"] == 0

    again = _load(instance, res)  # the same days again: replaced, not appended
    assert again.success
    for table in LOADED:
        table_id = f"{PROJECT}.{bq_dataset}.{table.name}"
        assert _bq_frame(bq_client, table_id, table).equals(stored[table.name]), table.name
    assert all(e.passed for e in _parity_checks(again).values())
    tables = {t.table_id for t in bq_client.list_tables(f"{PROJECT}.{bq_dataset}")}
    assert tables == {t.name for t in LOADED}


def test_features_1h_loads_with_the_columns_of_its_joined_series(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    """The template lake (conftest: every lake table over its DAYS) holds features_1h with
    a column set that depends on the configured series; the load carries all of it."""
    table = features_1h_table(SETTINGS.forecast.joined_series())
    res = bq_resources(data_dir, warehouse(bq, bq_dataset))
    result = load(instance, res, WAREHOUSE_DAYS[0], WAREHOUSE_DAYS[-1], ["bq_features_1h"])
    assert result.success, failure_text(result) if not result.success else ""
    table_id = f"{PROJECT}.{bq_dataset}.{table.name}"
    assert [f.name for f in bq_client.get_table(table_id).schema] == list(table.schema)
    stored = _bq_frame(bq_client, table_id, table)
    lake = Lake(data_dir / "lake").read_days(
        table.name, "BTCUSDT", [_as_day(d) for d in WAREHOUSE_DAYS], dict(table.schema)
    )
    assert stored.equals(lake.frame.collect().sort(list(table.key)))
    assert _counts(stored) == {("BTCUSDT", d): 24 for d in WAREHOUSE_DAYS}
    parity = _parity_checks(result)
    assert set(parity) == {("bq_features_1h", d) for d in WAREHOUSE_DAYS}
    assert all(e.passed for e in parity.values())
    assert "bigquery_sum_close" in parity[("bq_features_1h", WAREHOUSE_DAYS[0])].metadata


def test_a_rotten_or_failed_series_day_is_not_loaded_and_fails_parity(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Any,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    pinned_clock(PINNED)
    res = bq_resources(tmp_path, warehouse(bq, bq_dataset))
    _build_sources(instance, res)
    rotten = _damage(tmp_path, instance, res)

    result = _load(instance, res, (FRED_SERIES,))
    assert result.success  # a blocked day is recorded with its cause, not a failed step
    table_id = f"{PROJECT}.{bq_dataset}.fred_series"
    stored = _counts(_bq_frame(bq_client, table_id, FRED_SERIES))
    assert stored == {k: n for k, n in FRED_ROWS.items() if k not in (ROTTEN, DUPLICATED)}

    parity = _parity_checks(result)
    assert parity[("bq_fred_series", DAYS[0])].passed
    for (series, key), cause in ((ROTTEN, "does not verify"),
                                 (DUPLICATED, "fred_series.quality failed")):  # fmt: skip
        check = parity[("bq_fred_series", key)]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["error_symbols"].value == series  # the other series passed
        text = check.description or ""
        assert f"fred_series {series} {key}" in text and cause in text, text
        meta = latest_metadata(instance, "bq_fred_series", key)
        assert meta["blocked_symbols"] == series and meta["symbols_built"] == 1
    assert str(rotten) in (parity[("bq_fred_series", ROTTEN[1])].description or "")
    assert "duplicate_keys=1" in (parity[("bq_fred_series", DUPLICATED[1])].description or "")
