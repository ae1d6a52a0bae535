"""GCS staging: day files land under the seed's layout, and BigQuery loads them from gs://."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
from google.cloud import bigquery, storage

from btc_assets.lake import Lake
from btc_assets.warehouse.gcs import staging_object
from btc_assets_tests.emulators import PROJECT, BigQueryEmulator
from btc_assets_tests.test_assets.helpers import failure_text
from btc_assets_tests.test_warehouse.conftest import (
    DAYS,
    SYMBOL,
    bq_resources,
    day,
    load,
    per_day,
    table_frame,
    warehouse,
)

LOADED = {"bars_15m": ("bars_15m", "15m"), "spot_klines": ("binance_spot_klines_1m", "1m")}


def _expected_objects() -> dict[str, tuple[str, str]]:
    """Object name -> (lake table, day) for every staged day."""
    return {
        f"raw/{name}/interval={iv}/symbol=BTCUSDT/yyyy={k[:4]}/mm={k[5:7]}/dd={k[8:]}/"
        f"part-{k.replace('-', '')}.parquet": (lake_table, k)
        for name, (lake_table, iv) in LOADED.items()
        for k in DAYS
    }


def test_object_names_follow_the_seed_layout() -> None:
    assert (
        staging_object("raw", "bars_15m", "15m", date(2024, 3, 1))
        == "raw/bars_15m/interval=15m/yyyy=2024/mm=03/dd=01/part-20240301.parquet"
    )
    assert (
        staging_object("/team/raw/", "spot_klines", "1m", date(2024, 12, 31))
        == "team/raw/spot_klines/interval=1m/yyyy=2024/mm=12/dd=31/part-20241231.parquet"
    )
    # With a basket, each symbol's day is its own object.
    assert (
        staging_object("raw", "bars_15m", "15m", date(2024, 3, 1), "ETHUSDT")
        == "raw/bars_15m/interval=15m/symbol=ETHUSDT/yyyy=2024/mm=03/dd=01/part-20240301.parquet"
    )


def test_staged_objects_are_the_lake_files(
    data_dir: Path, bq: BigQueryEmulator, bq_dataset: str, bucket: str, gcs_client: storage.Client
) -> None:
    """The upload alone, through the staging resource the assets use (any BigQuery emulator)."""
    res = bq_resources(data_dir, warehouse(bq, bq_dataset, gcs_bucket=bucket))
    staging = res["gcs_staging"]
    client = staging.client()  # type: ignore[attr-defined]
    lake = Lake(data_dir / "lake")
    for name, (lake_table, iv) in LOADED.items():
        for key in DAYS:
            path = lake.day_file(lake_table, SYMBOL, day(key))
            uri = staging.stage(client, path, name, iv, day(key), SYMBOL)  # type: ignore[attr-defined]
            assert uri == f"gs://{bucket}/{staging_object('raw', name, iv, day(key), SYMBOL)}"
    names = {blob.name for blob in gcs_client.list_blobs(bucket, prefix="raw/")}
    assert names == set(_expected_objects())
    for name, (lake_table, key) in _expected_objects().items():
        blob = gcs_client.bucket(bucket).blob(name)
        assert blob.download_as_bytes() == lake.day_file(lake_table, SYMBOL, day(key)).read_bytes()


def test_load_from_gs_uri(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
    bucket: str,
    gcs_client: storage.Client,
) -> None:
    bq.require("gs_hive_path")
    res = bq_resources(data_dir, warehouse(bq, bq_dataset, gcs_bucket=bucket))
    result = load(instance, res, DAYS[0], DAYS[-1], ["bq_bars_15m", "bq_spot_klines"])
    assert result.success, failure_text(result)

    names = {blob.name for blob in gcs_client.list_blobs(bucket, prefix="raw/")}
    assert names == set(_expected_objects())
    for name, rows in (("bars_15m", 96), ("spot_klines", 1440)):
        stored = table_frame(bq_client, f"{PROJECT}.{bq_dataset}.{name}")
        assert per_day(stored) == dict.fromkeys(DAYS, rows)
        for key in DAYS:
            record = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(f"bq_{name}"), asset_partitions=[key]),
                limit=1,
            ).records[0]
            meta = record.asset_materialization.metadata  # type: ignore[union-attr]
            uri = (
                f"gs://{bucket}/{staging_object('raw', name, LOADED[name][1], day(key), 'BTCUSDT')}"
            )
            assert meta["source_uri"].value == uri
            load_job_id = meta["bigquery_job_ids"].value.split(", ")[0]
            job = bq_client.get_job(load_job_id)
            assert job.job_type == "load"
            assert job.source_uris == [uri]  # BigQuery read the staged object, not the file
