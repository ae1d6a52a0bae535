"""Lake → BigQuery through the real client against the emulator: rows, schema, partitioning,
parity, re-runs, and a failure between the staging load and the transaction."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from google.cloud import bigquery

import btc_assets.warehouse.bigquery as bq_module
from btc_assets.core.schema import BAR_SCHEMA, FEATURE_SCHEMA, KLINE_SCHEMA
from btc_assets.defs.checks import ROW_PARITY
from btc_assets.lake import Lake
from btc_assets_tests.emulators import PROJECT, BigQueryEmulator
from btc_assets_tests.test_assets.helpers import (
    evaluations,
    failure_text,
    latest_metadata,
    run_range,
)
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

TABLES = {  # BigQuery table -> (lake table, contract, rows per day)
    "spot_klines": ("binance_spot_klines_1m", KLINE_SCHEMA, 1440),
    "perp_klines": ("binance_perp_klines_1m", KLINE_SCHEMA, 1440),
    "bars_15m": ("bars_15m", FEATURE_SCHEMA, 96),
    # the resampled bars of BTC_ASSETS_INTERVALS' default (15m,1h), under their lake names
    **{
        f"{market}_klines_{interval}": (f"{market}_klines_{interval}", BAR_SCHEMA, rows)
        for market in ("spot", "perp")
        for interval, rows in (("15m", 96), ("1h", 24))
    },
}
LEGACY = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}
_real_swap = bq_module._swap  # before any test patches it


def _lake_frame(data_dir: Path, table: str, schema: dict) -> pl.DataFrame:
    read = Lake(data_dir / "lake").read_days(table, SYMBOL, [day(d) for d in DAYS], schema=schema)
    return read.frame.collect().sort("symbol", "ts")


def _tables(client: bigquery.Client, dataset: str) -> set[str]:
    return {t.table_id for t in client.list_tables(f"{PROJECT}.{dataset}")}


def test_lake_to_bigquery_three_days(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    res = bq_resources(tmp_path, warehouse(bq, bq_dataset))
    assert run_range(instance, res, DAYS[0], DAYS[-1]).success  # the lake, with its checks
    # The forecasting sources' loads: test_forecast_warehouse.py
    result = load(instance, res, DAYS[0], DAYS[-1], [f"bq_{name}" for name in TABLES])
    assert result.success, failure_text(result)

    assert _tables(bq_client, bq_dataset) == set(TABLES)  # no staging table left behind
    for name, (lake_table, contract, rows) in TABLES.items():
        table_id = f"{PROJECT}.{bq_dataset}.{name}"
        table = bq_client.get_table(table_id)
        assert [(f.name, LEGACY.get(f.field_type, f.field_type)) for f in table.schema] == [
            (f.name, f.field_type) for f in bq_module.bq_schema(contract)
        ]
        assert table.time_partitioning.type_ == "DAY"
        assert table.time_partitioning.field == "ts"
        assert table.clustering_fields == ["symbol"]
        stored = table_frame(bq_client, table_id)
        assert per_day(stored) == dict.fromkeys(DAYS, rows), name
        lake = _lake_frame(tmp_path, lake_table, dict(contract))
        assert stored.equals(lake), name  # value for value, dtypes included
        for key in DAYS:
            meta = latest_metadata(instance, f"bq_{name}", key)
            assert meta["dagster/row_count"] == rows
            assert meta["destination_table"] == table_id
            assert meta["bigquery_jobs"] == 2  # one load, one script
            assert len(meta["bigquery_job_ids"].split(", ")) == 2
            assert meta["bytes_loaded"] > 0
            assert re.search(rf"/part-{key.replace('-', '')}-[0-9a-f]{{16}}\.parquet$",
                             meta["source_uri"])  # fmt: skip

    parity = [e for e in evaluations(result) if e.check_name == ROW_PARITY]
    assert sorted((e.asset_key.path[-1], e.partition) for e in parity) == sorted(
        (f"bq_{name}", key) for name in TABLES for key in DAYS
    )
    assert all(e.passed for e in parity), [e.description for e in parity if not e.passed]
    bars = next(e for e in parity if e.asset_key.path[-1] == "bq_bars_15m")
    assert bars.metadata["bigquery_rows"].value == 96
    assert "bigquery_sum_volume_usd" in bars.metadata  # bars_15m's volume is volume_usd

    # BigQuery files the last bar of a day (labelled D+1 00:00) under partition D+1; the day
    # contract is an interval, so the replace is too. The emulator reports the split.
    parts = bq_client.query(
        "SELECT partition_id, total_rows FROM "
        f"`{PROJECT}.{bq_dataset}.INFORMATION_SCHEMA.PARTITIONS` WHERE table_name = 'bars_15m'"
    ).result()
    assert {r["partition_id"]: r["total_rows"] for r in parts} == {
        "20240301": 95,
        "20240302": 96,
        "20240303": 96,
        "20240304": 1,
    }


def _rewrite_day(data_dir: Path, key: str) -> pl.DataFrame:
    """Change a lake day of bars_15m: one bar fewer, every volume doubled."""
    lake = Lake(data_dir / "lake")
    frame = pl.read_parquet(lake.day_file("bars_15m", SYMBOL, day(key)))
    changed = frame.slice(1).with_columns(pl.col("volume_usd") * 2)
    lake.write_day("bars_15m", SYMBOL, day(key), changed, same_provenance(lake, key))
    return changed


def test_rerun_replaces_only_that_day(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
) -> None:
    res = bq_resources(data_dir, warehouse(bq, bq_dataset))
    assert load(instance, res, DAYS[0], DAYS[-1], ["bq_bars_15m"]).success
    table_id = f"{PROJECT}.{bq_dataset}.bars_15m"
    before = table_frame(bq_client, table_id)

    assert load(instance, res, DAYS[1], selection=["bq_bars_15m"]).success  # same data again
    assert table_frame(bq_client, table_id).equals(before)  # no duplicate, nothing moved

    changed = _rewrite_day(data_dir, DAYS[1])
    result = load(instance, res, DAYS[1], selection=["bq_bars_15m"])
    assert result.success, failure_text(result)
    after = table_frame(bq_client, table_id)
    assert per_day(after) == {DAYS[0]: 96, DAYS[1]: 95, DAYS[2]: 96}
    in_day = pl.col("ts").dt.offset_by("-1ms").dt.date().cast(pl.String)
    assert after.filter(in_day == DAYS[1]).equals(changed.sort("symbol", "ts"))
    assert after.filter(in_day != DAYS[1]).equals(before.filter(in_day != DAYS[1]))
    (parity,) = [e for e in evaluations(result) if e.check_name == ROW_PARITY]
    assert parity.passed and parity.partition == DAYS[1]
    assert parity.metadata["lake_rows"].value == 95


def test_failure_between_staging_and_transaction_leaves_the_day(
    data_dir: Path,
    instance: dg.DagsterInstance,
    bq: BigQueryEmulator,
    bq_client: bigquery.Client,
    bq_dataset: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    res = bq_resources(data_dir, warehouse(bq, bq_dataset))
    assert load(instance, res, DAYS[0], DAYS[-1], ["bq_bars_15m"]).success
    table_id = f"{PROJECT}.{bq_dataset}.bars_15m"
    before = table_frame(bq_client, table_id)
    changed = _rewrite_day(data_dir, DAYS[1])

    staged: list[int] = []

    def crash_before_swap(client: bigquery.Client, script: str, job_prefix: str) -> None:
        # The day is in its staging table now; the process dies before the transaction.
        (stage,) = [t for t in _tables(bq_client, bq_dataset) if t.startswith("_stage_")]
        staged.append(bq_client.get_table(f"{PROJECT}.{bq_dataset}.{stage}").num_rows)
        raise RuntimeError("injected: crash after the staging load")

    monkeypatch.setattr(bq_module, "_swap", crash_before_swap)
    result = load(instance, res, DAYS[1], selection=["bq_bars_15m"])
    assert not result.success
    assert staged == [95]  # the load itself had happened
    assert "injected: crash after the staging load" in failure_text(result)
    assert "0 other symbol-day(s) were loaded" in failure_text(result)
    assert table_frame(bq_client, table_id).equals(before)
    assert _tables(bq_client, bq_dataset) == {"bars_15m"}  # staging dropped on the way out

    # A failure inside the transaction, after its DELETE ran: rolled back as a whole.
    script = bq_module.transaction_script
    monkeypatch.setattr(bq_module, "_swap", _real_swap)
    monkeypatch.setattr(
        bq_module,
        "transaction_script",
        lambda *a: script(*a).replace(
            "\nINSERT INTO", "\nSELECT ERROR('injected: fails after DELETE');\nINSERT INTO"
        ),
    )
    result = load(instance, res, DAYS[1], selection=["bq_bars_15m"])
    assert not result.success
    assert "injected: fails after DELETE" in failure_text(result)
    assert table_frame(bq_client, table_id).equals(before)
    assert _tables(bq_client, bq_dataset) == {"bars_15m"}

    monkeypatch.undo()
    result = load(instance, res, DAYS[1], selection=["bq_bars_15m"])  # the re-run recovers
    assert result.success, failure_text(result)
    after = table_frame(bq_client, table_id)
    assert per_day(after) == {DAYS[0]: 96, DAYS[1]: 95, DAYS[2]: 96}
    assert after.height == before.height - 1
    in_day = pl.col("ts").dt.offset_by("-1ms").dt.date().cast(pl.String)
    assert after.filter(in_day == DAYS[1]).equals(changed.sort("symbol", "ts"))
    assert all(e.passed for e in evaluations(result) if e.check_name == ROW_PARITY)
