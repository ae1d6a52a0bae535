"""Bad input gives a clear error or a documented behaviour, and nothing is half-loaded."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery, storage

from btc_assets.defs.checks import ROW_PARITY
from btc_assets.lake import Lake
from btc_assets_tests.emulators import PROJECT, BigQueryEmulator
from btc_assets_tests.test_assets.helpers import evaluations, failure_text, lake_digest
from btc_assets_tests.test_warehouse.conftest import (
    DAYS,
    SYMBOL,
    bq_resources,
    day,
    load,
    per_day,
    same_provenance,
    table_frame,
    warehouse,
)

BARS = ["bq_bars_15m"]


def _loaded_partitions(result: dg.ExecuteInProcessResult) -> set[str]:
    """Partitions materialized as loaded (a blocked day is recorded, not loaded)."""
    return {
        e.event_specific_data.materialization.partition  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        and "blocked" not in e.event_specific_data.materialization.metadata  # type: ignore[union-attr]
    }


def _tables(client: bigquery.Client, dataset: str) -> set[str]:
    return {t.table_id for t in client.list_tables(f"{PROJECT}.{dataset}")}


def test_bad_project_is_refused_before_anything_is_loaded(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
    bucket: str,
    gcs_client: storage.Client,
) -> None:
    bq.require("project_ids")
    before = lake_digest(data_dir / "lake")
    settings = warehouse(bq, bq_dataset, bigquery_project="Bad_Project", gcs_bucket=bucket)
    result = load(instance, bq_resources(data_dir, settings), DAYS[0], DAYS[-1], BARS)
    assert not result.success
    text = failure_text(result)
    assert "BigQuery refused to read the dataset Bad_Project." in text
    assert "Invalid project ID" in text  # the service's own words
    assert "BIGQUERY_PROJECT" in text and "Nothing was loaded" in text
    assert not _loaded_partitions(result)
    assert list(gcs_client.list_blobs(bucket)) == []  # not even staged
    with pytest.raises(gexc.NotFound):
        bq_client.get_dataset(f"{PROJECT}.{bq_dataset}")
    assert lake_digest(data_dir / "lake") == before


def test_missing_dataset_permission_names_what_to_grant(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_dataset: str,
    denying_bigquery: str,
    bucket: str,
    gcs_client: storage.Client,
) -> None:
    """The emulators grant everything; this endpoint answers as BigQuery does for a project
    the account has no role on (HTTP 403, reason accessDenied), through the real client."""
    settings = warehouse(
        bq,
        bq_dataset,
        bigquery_project="someone-elses-project",
        bigquery_api_endpoint=denying_bigquery,
        gcs_bucket=bucket,
    )
    result = load(instance, bq_resources(data_dir, settings), DAYS[0], DAYS[-1], BARS)
    assert not result.success
    text = failure_text(result)
    assert "BigQuery refused to read the dataset someone-elses-project." in text
    assert "403 Forbidden: Access Denied" in text
    assert "roles/bigquery.dataEditor" in text and "BIGQUERY_DATASET" in text
    assert not _loaded_partitions(result)
    assert list(gcs_client.list_blobs(bucket)) == []


def test_schema_drift_in_a_lake_day_refuses_that_day_only(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    res = bq_resources(data_dir, warehouse(bq, bq_dataset))
    assert load(instance, res, DAYS[0], DAYS[-1], BARS).success
    table_id = f"{PROJECT}.{bq_dataset}.bars_15m"
    before = table_frame(bq_client, table_id)
    lake = Lake(data_dir / "lake")
    frame = pl.read_parquet(lake.day_file("bars_15m", SYMBOL, day(DAYS[1])))
    drifted = frame.with_columns(extra_col=pl.lit(1.0))
    lake.write_day("bars_15m", SYMBOL, day(DAYS[1]), drifted, same_provenance(lake, DAYS[1]))

    result = load(instance, res, DAYS[0], DAYS[-1], BARS)
    assert not result.success
    text = failure_text(result)
    assert f"1 symbol-day(s) refused (BTCUSDT {DAYS[1]}:" in text
    assert "extra column(s) ['extra_col']" in text
    assert "2 other symbol-day(s) were loaded" in text
    assert _loaded_partitions(result) == {DAYS[0], DAYS[2]}
    parity = [e for e in evaluations(result) if e.check_name == ROW_PARITY]
    assert {e.partition for e in parity} == {DAYS[0], DAYS[2]} and all(e.passed for e in parity)
    assert table_frame(bq_client, table_id).equals(before)  # day 2 as it was
    assert _tables(bq_client, bq_dataset) == {"bars_15m"}


def test_drifted_bigquery_table_is_refused_before_loading(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    bq_client.create_dataset(f"{PROJECT}.{bq_dataset}")
    schema = [bigquery.SchemaField("symbol", "STRING"), bigquery.SchemaField("ts", "TIMESTAMP")]
    bq_client.create_table(bigquery.Table(f"{PROJECT}.{bq_dataset}.bars_15m", schema=schema))
    result = load(instance, bq_resources(data_dir, warehouse(bq, bq_dataset)), DAYS[0], None, BARS)
    assert not result.success
    text = failure_text(result)
    assert f"{PROJECT}.{bq_dataset}.bars_15m does not match the contract" in text
    assert "missing column(s) ['open'," in text
    assert table_frame(bq_client, f"{PROJECT}.{bq_dataset}.bars_15m").height == 0


def test_empty_lake_day_empties_the_warehouse_day(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    """Documented behaviour: BigQuery mirrors the lake, so an empty day (fetched, nothing
    there) deletes that day and loads nothing; one job (the script), no load job."""
    res = bq_resources(data_dir, warehouse(bq, bq_dataset))
    assert load(instance, res, DAYS[0], DAYS[-1], BARS).success
    lake = Lake(data_dir / "lake")
    frame = pl.read_parquet(lake.day_file("bars_15m", SYMBOL, day(DAYS[1])))
    lake.write_day("bars_15m", SYMBOL, day(DAYS[1]), frame.clear(), same_provenance(lake, DAYS[1]))

    result = load(instance, res, DAYS[1], None, BARS)
    assert result.success, failure_text(result)
    stored = table_frame(bq_client, f"{PROJECT}.{bq_dataset}.bars_15m")
    assert per_day(stored) == {DAYS[0]: 96, DAYS[2]: 96}
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("bq_bars_15m"), asset_partitions=[DAYS[1]]),
        limit=1,
    ).records[0]
    meta = record.asset_materialization.metadata  # type: ignore[union-attr]
    assert meta["dagster/row_count"].value == 0
    assert meta["bigquery_jobs"].value == 1
    (parity,) = [e for e in evaluations(result) if e.check_name == ROW_PARITY]
    assert parity.passed and parity.metadata["bigquery_rows"].value == 0


def test_day_that_fails_its_gate_is_not_loaded(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    """A lake day that no longer verifies against its MANIFEST is blocked by the gate: not
    loaded, recorded as blocked with the file named; the other days load."""
    path = Lake(data_dir / "lake").day_file("bars_15m", SYMBOL, day(DAYS[1]))
    path.write_bytes(path.read_bytes() + b"rot")
    result = load(
        instance, bq_resources(data_dir, warehouse(bq, bq_dataset)), DAYS[0], DAYS[-1], BARS
    )
    assert result.success
    parity = {e.partition: e for e in evaluations(result) if e.check_name == ROW_PARITY}
    blocked = parity[DAYS[1]]
    assert not blocked.passed and blocked.severity == dg.AssetCheckSeverity.ERROR
    assert str(path) in (blocked.description or "") and "size mismatch" in (
        blocked.description or ""
    )
    assert _loaded_partitions(result) == {DAYS[0], DAYS[2]}
    stored = table_frame(bq_client, f"{PROJECT}.{bq_dataset}.bars_15m")
    assert per_day(stored) == {DAYS[0]: 96, DAYS[2]: 96}
