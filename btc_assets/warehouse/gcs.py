"""GCS staging of lake day files, in the seed's layout. No Dagster here.

    gs://<bucket>/<prefix>/<table>/interval=<iv>/yyyy=YYYY/mm=MM/dd=DD/part-YYYYMMDD.parquet

with ``prefix`` ``raw`` by default. The objects are the warehouse's landing zone: BigQuery
loads each day from its ``gs://`` URI, and re-staging a day overwrites its object.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import storage


class StagingError(RuntimeError):
    """A day file could not be staged on GCS."""


def staging_object(
    prefix: str, table: str, interval: str, day: date, symbol: str | None = None
) -> str:
    """The object name of one day (of one symbol): the only place that knows the GCS layout."""
    parts = [
        prefix.strip("/"),
        table,
        f"interval={interval}",
        f"symbol={symbol}" if symbol else "",
        f"yyyy={day:%Y}",
        f"mm={day:%m}",
        f"dd={day:%d}",
        f"part-{day:%Y%m%d}.parquet",
    ]
    return "/".join(part for part in parts if part)


def upload_day(client: storage.Client, bucket: str, name: str, path: Path) -> str:
    """Upload ``path`` to ``gs://bucket/name`` and return that URI.

    The client verifies the upload's checksum; a missing bucket is named, not created (a
    staging bucket is infrastructure, with its own location and lifecycle rules).
    """
    blob = client.bucket(bucket).blob(name)
    try:
        blob.upload_from_filename(str(path), content_type="application/vnd.apache.parquet")
    except gexc.NotFound as exc:
        raise StagingError(
            f"GCS bucket {bucket!r} not found: create it or change GCS_STAGING_BUCKET "
            f"(unset it to load from the local lake file); {path} was not staged"
        ) from exc
    except gexc.Forbidden as exc:
        raise StagingError(
            f"no permission to write gs://{bucket}/{name}: the account needs "
            f"roles/storage.objectAdmin on the bucket (GCS_STAGING_BUCKET); nothing was loaded"
        ) from exc
    return f"gs://{bucket}/{name}"
