"""WAREHOUSE=duckdb|bigquery: settings, the errors that say what to set, and the demo step."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.assets.bigquery_loads import bigquery_assets, bigquery_job
from btc_assets.defs.definitions import SETTINGS, all_assets
from btc_assets.ops import demo
from btc_assets.settings import SettingsError, WarehouseSettings, load_settings
from btc_assets.warehouse import demo_step
from btc_assets.warehouse.resources import BigQueryWarehouseResource, WarehouseConfigError
from btc_assets_tests.emulators import BigQueryEmulator
from btc_assets_tests.test_warehouse.conftest import DAYS, bq_resources, day, warehouse

WAREHOUSE_VARS = (
    "WAREHOUSE",
    "BIGQUERY_PROJECT",
    "GOOGLE_CLOUD_PROJECT",
    "BIGQUERY_DATASET",
    "BIGQUERY_LOCATION",
    "BIGQUERY_API_ENDPOINT",
    "GCS_STAGING_BUCKET",
    "GCS_STAGING_PREFIX",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in WAREHOUSE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_duckdb(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().warehouse == WarehouseSettings()
    assert load_settings().warehouse.kind == "duckdb"


def test_bigquery_settings_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WAREHOUSE", "BigQuery")
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", "fallback-project")
    clean_env.setenv("BIGQUERY_DATASET", "raw_market")
    clean_env.setenv("BIGQUERY_LOCATION", "EU")
    clean_env.setenv("GCS_STAGING_BUCKET", "gs://my-landing/")
    assert load_settings().warehouse == WarehouseSettings(
        kind="bigquery",
        bigquery_project="fallback-project",
        bigquery_dataset="raw_market",
        bigquery_location="EU",
        gcs_bucket="my-landing",
    )
    clean_env.setenv("BIGQUERY_PROJECT", "my-project")  # wins over GOOGLE_CLOUD_PROJECT
    assert load_settings().warehouse.bigquery_project == "my-project"


@pytest.mark.parametrize(
    ("name", "value"), [("WAREHOUSE", "oracle"), ("BIGQUERY_API_ENDPOINT", "127.0.0.1:9050")]
)
def test_bad_warehouse_values_are_named(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_no_project_says_what_to_set() -> None:
    with pytest.raises(WarehouseConfigError) as caught:
        BigQueryWarehouseResource(project=None).preflight()
    assert "set BIGQUERY_PROJECT (or GOOGLE_CLOUD_PROJECT)" in str(caught.value)


def test_no_credentials_says_what_to_set(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    clean_env.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login to find either
    with pytest.raises(WarehouseConfigError) as caught:
        BigQueryWarehouseResource(project="my-project").preflight()
    text = str(caught.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in text
    assert "gcloud auth application-default login" in text
    assert "BIGQUERY_API_ENDPOINT" in text


def test_demo_stops_early_when_bigquery_is_not_configured(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("WAREHOUSE", "bigquery")
    clean_env.setattr(
        demo, "defs", dg.Definitions(resources={"bigquery": BigQueryWarehouseResource()})
    )
    assert demo.main(["--days", "1"]) == 2  # before any run starts
    assert "set BIGQUERY_PROJECT (or GOOGLE_CLOUD_PROJECT)" in capsys.readouterr().err


def test_demo_skips_bigquery_by_default(instance: dg.DagsterInstance) -> None:
    settings = replace(load_settings(), warehouse=WarehouseSettings())
    run = demo_step.load(dg.Definitions(), instance, settings, day(DAYS[0]), day(DAYS[0]), {})
    assert run.success and "bigquery: skipped" in run.summary
    assert instance.get_runs() == []


def test_demo_loads_bigquery_when_selected(
    data_dir: Path, instance: dg.DagsterInstance, bq: BigQueryEmulator, bq_dataset: str
) -> None:
    settings = replace(load_settings(), data_dir=data_dir, warehouse=warehouse(bq, bq_dataset))
    defs = dg.Definitions(
        assets=all_assets, resources=bq_resources(data_dir, settings.warehouse), jobs=[bigquery_job]
    )
    demo_step.check(defs, settings)
    run = demo_step.load(defs, instance, settings, day(DAYS[0]), day(DAYS[-1]), demo.QUIET)
    assert run.success, run.summary
    lines = {line.split()[0]: line.split() for line in run.summary.splitlines()}
    assert lines["bq_bars_15m"][1:6] == ["3", "288", "3", "passed,", "0"]
    assert lines["bq_spot_klines"][1:3] == ["3", "4320"]
    assert lines["bq_bars_15m"][-1] == f"{bq.project}.{bq_dataset}.bars_15m"
    assert lines["bq_spot_klines_1h"][1:3] == ["3", str(3 * 24)]  # BTC_ASSETS_INTERVALS' default
    loads = [line for line in lines if line.startswith("bq_")]
    assert len(loads) == len(bigquery_assets(SETTINGS.bar_intervals))  # 3 + 2 per interval
    assert f"bq_row_parity {len(loads) * len(DAYS)} passed, 0 failed" in run.summary
