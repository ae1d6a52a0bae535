"""BigQuery and GCS emulators for the session, a sandbox lake to load, and a dataset per test.

The emulators start once per session on free loopback ports (about 1 s) and stop at its end.
Tests talk to them through the real ``google-cloud-bigquery`` and ``google-cloud-storage``
clients, as the assets do.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from btc_assets.assets.bigquery_loads import bigquery_assets
from btc_assets.defs.definitions import SETTINGS
from btc_assets.lake import Lake
from btc_assets.settings import WarehouseSettings
from btc_assets_tests.emulators import (
    PROJECT,
    BigQueryEmulator,
    GcsEmulator,
    bigquery_emulator,
    installed_backend,
)
from btc_assets_tests.test_assets.helpers import resources, run_range

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
SYMBOL = "BTCUSDT"


def pytest_report_header() -> str:
    try:
        kind, binary = installed_backend()
    except RuntimeError as exc:
        return f"bigquery emulator: MISSING ({exc})"
    return f"bigquery emulator: {kind} ({binary}); gcs emulator: gcp-storage-emulator"


@pytest.fixture(scope="session", autouse=True)
def _no_metadata_server() -> Iterator[None]:
    """Nothing here may look for GCE's metadata server (a non-loopback address)."""
    from google.auth.compute_engine import _metadata

    saved = _metadata._NO_GCE_CHECK
    _metadata._NO_GCE_CHECK = True
    yield
    _metadata._NO_GCE_CHECK = saved


@pytest.fixture(scope="session")
def gcs(gcs_server: GcsEmulator) -> GcsEmulator:
    return gcs_server  # the session's one emulator (btc_assets_tests/conftest.py)


@pytest.fixture(scope="session")
def bq(tmp_path_factory: pytest.TempPathFactory, gcs: GcsEmulator) -> Iterator[BigQueryEmulator]:
    with bigquery_emulator(tmp_path_factory.mktemp("bq"), gcs.disk_root) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def bq_client(bq: BigQueryEmulator) -> Iterator[bigquery.Client]:
    client = bigquery.Client(
        project=bq.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bq.url),
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def gcs_client(gcs: GcsEmulator) -> storage.Client:
    return storage.Client(project=PROJECT)


@pytest.fixture
def bq_dataset(bq_client: bigquery.Client) -> Iterator[str]:
    """A fresh dataset name per test (the asset creates it), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    bq_client.delete_dataset(f"{PROJECT}.{name}", delete_contents=True, not_found_ok=True)


@pytest.fixture
def bucket(gcs_client: storage.Client) -> str:
    name = f"stage-{uuid.uuid4().hex[:12]}"
    gcs_client.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox lake over DAYS, built once: every daily lake table, checks included."""
    root = tmp_path_factory.mktemp("lake_template")
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("lake_home"))) as instance:
        assert run_range(instance, resources(root), DAYS[0], DAYS[-1]).success
    return root


@pytest.fixture
def data_dir(tmp_path: Path, lake_template: Path) -> Path:
    """A private copy of the template lake, for tests that change it."""
    shutil.copytree(lake_template / "lake", tmp_path / "lake")
    return tmp_path


def warehouse(bq: BigQueryEmulator, dataset: str, **overrides: Any) -> WarehouseSettings:
    base = WarehouseSettings(
        kind="bigquery",
        bigquery_project=bq.project,
        bigquery_dataset=dataset,
        bigquery_api_endpoint=bq.url,
    )
    return replace(base, **overrides)


def same_provenance(lake: Lake, key: str, table: str = "bars_15m") -> dict[str, Any]:
    """The provenance of the stored day: a test that rewrites a day keeps it this env's."""
    return dict(lake.verify_day(table, SYMBOL, date.fromisoformat(key)).provenance)


def bq_resources(data_dir: Path, settings: WarehouseSettings) -> dict[str, object]:
    return resources(data_dir, warehouse=settings)


def load(
    instance: dg.DagsterInstance,
    res: dict[str, object],
    start: str,
    end: str | None = None,
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the BigQuery load assets over ``start .. end`` as one run."""
    return dg.materialize(
        bigquery_assets(SETTINGS.bar_intervals, SETTINGS.forecast.joined_series()),
        instance=instance,
        resources=res,
        selection=selection,
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end or start,
        },
        raise_on_error=False,
    )


def table_frame(client: bigquery.Client, table_id: str) -> pl.DataFrame:
    """The whole table, sorted, as Polars in the lake's dtypes (BigQuery answers µs)."""
    job = client.query(f"SELECT * FROM `{table_id}` ORDER BY symbol, ts")
    # No Storage Read API: it would go to Google, not to the emulator.
    frame = pl.from_arrow(job.result().to_arrow(create_bqstorage_client=False))
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))


def per_day(frame: pl.DataFrame) -> dict[str, int]:
    days = frame.select((pl.col("ts").dt.offset_by("-1ms").dt.date()).alias("day"))
    return {str(d): n for d, n in days.group_by("day").len().iter_rows()}


def day(key: str) -> date:
    return date.fromisoformat(key)


class _Denied(BaseHTTPRequestHandler):
    """Answers every call as BigQuery does for a project the caller has no role on."""

    def _deny(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        project = self.path.split("/projects/")[-1].split("/")[0].split("?")[0]
        message = (
            f"Access Denied: Project {project}: User does not have bigquery.datasets.get "
            f"permission for dataset {project}:btc_assets."
        )
        body = json.dumps(
            {
                "error": {
                    "code": 403,
                    "message": message,
                    "errors": [{"message": message, "domain": "global", "reason": "accessDenied"}],
                    "status": "PERMISSION_DENIED",
                }
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _deny

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_bigquery() -> Iterator[str]:
    """A BigQuery endpoint on loopback that refuses everything with a real 403 body."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Denied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
