"""Dagster resources for the BigQuery warehouse and its GCS staging, built from settings.

``BigQueryWarehouseResource`` is ``dagster_gcp.BigQueryResource`` plus what the stock one
lacks: a dataset, and an optional ``api_endpoint`` for a local emulator, where the client
uses anonymous credentials. Production leaves the endpoint unset and gets Application
Default Credentials, exactly as the stock resource does. ``GCSResource`` is the stock one;
``google-cloud-storage`` itself follows ``STORAGE_EMULATOR_HOST`` (tests set it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_gcp import BigQueryResource, GCSResource
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage
from pydantic import Field

from btc_assets.settings import WarehouseSettings
from btc_assets.warehouse.bigquery import TableRef
from btc_assets.warehouse.gcs import staging_object, upload_day


class WarehouseConfigError(RuntimeError):
    """BigQuery is selected but cannot be reached as configured; says what to set."""


class BigQueryWarehouseResource(BigQueryResource):
    dataset: str = Field(default="btc_assets", description="Dataset the tables live in.")
    api_endpoint: str | None = Field(
        default=None,
        description="A BigQuery emulator, e.g. http://127.0.0.1:9050 (anonymous credentials). "
        "Unset in production: Application Default Credentials.",
    )

    def preflight(self) -> None:
        """Fail early, naming the variables to set, instead of deep inside a load."""
        if not self.project:
            raise WarehouseConfigError(
                "WAREHOUSE=bigquery needs a project: set BIGQUERY_PROJECT (or "
                "GOOGLE_CLOUD_PROJECT); optionally BIGQUERY_DATASET (default btc_assets), "
                "BIGQUERY_LOCATION (default US) and GCS_STAGING_BUCKET"
            )
        if self.api_endpoint or self.gcp_credentials:
            return
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            google.auth.default()
        except DefaultCredentialsError as exc:
            raise WarehouseConfigError(
                "WAREHOUSE=bigquery found no Google credentials: set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
                "`gcloud auth application-default login`; for a local emulator set "
                "BIGQUERY_API_ENDPOINT=http://127.0.0.1:<port> instead"
            ) from exc

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        self.preflight()
        if not self.api_endpoint:
            with super().get_client() as client:
                try:
                    yield client
                finally:
                    client.close()
            return
        client = bigquery.Client(
            project=self.project,
            location=self.location,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.api_endpoint),
        )
        try:
            yield client
        finally:
            client.close()

    def table(self, name: str) -> TableRef:
        assert self.project, "preflight() names the missing project first"
        return TableRef(self.project, self.dataset, name)


class GcsStagingResource(dg.ConfigurableResource):
    """Where day files are staged before BigQuery loads them; off without a bucket."""

    gcs: GCSResource
    bucket: str | None = None
    prefix: str = "raw"

    @property
    def enabled(self) -> bool:
        return bool(self.bucket)

    def client(self) -> storage.Client | None:
        """One client for a run's uploads; None when staging is off."""
        return self.gcs.get_client() if self.bucket else None

    def stage(
        self,
        client: storage.Client | None,
        path: Path,
        table: str,
        interval: str,
        day: date,
        symbol: str | None = None,
    ) -> str | None:
        """The day's ``gs://`` URI after uploading it, or None when staging is off."""
        if client is None or not self.bucket:
            return None
        name = staging_object(self.prefix, table, interval, day, symbol)
        return upload_day(client, self.bucket, name, path)


def warehouse_resources(settings: WarehouseSettings) -> dict[str, object]:
    """The resources the BigQuery assets need, always defined (the assets always are)."""
    gcs = GCSResource(project=settings.bigquery_project)
    return {
        "bigquery": BigQueryWarehouseResource(
            project=settings.bigquery_project,
            location=settings.bigquery_location,
            dataset=settings.bigquery_dataset,
            api_endpoint=settings.bigquery_api_endpoint,
        ),
        "gcs": gcs,
        "gcs_staging": GcsStagingResource(
            gcs=gcs, bucket=settings.gcs_bucket, prefix=settings.gcs_prefix
        ),
    }
