"""A GCS lake for tests: the precondition-enforcing emulator (``gcs_preconditions.py``), one
bucket, and a fresh ``gs://`` prefix per test; plus the raw object operations a test uses to
damage a lake the way the real world would (Google's own client, not the lake's code)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.cloud import storage

from btc_assets_tests.emulators import PROJECT, GcsEmulator, gcs_emulator

BUCKET = "btc-assets-lake"


@contextmanager
def gcs_lake_emulator(data: Path, extra: Sequence[str] = ()) -> Iterator[GcsEmulator]:
    """The emulator with ``STORAGE_EMULATOR_HOST`` pointing at it and the lake bucket made.
    Nothing may look for GCE's metadata server meanwhile."""
    from google.auth.compute_engine import _metadata

    saved = _metadata._NO_GCE_CHECK
    _metadata._NO_GCE_CHECK = True
    with gcs_emulator(data, extra) as emulator:
        patch = pytest.MonkeyPatch()
        patch.setenv("STORAGE_EMULATOR_HOST", emulator.url)  # every Google client follows it
        try:
            storage.Client(project=PROJECT).create_bucket(BUCKET)
            yield emulator
        finally:
            patch.undo()
            _metadata._NO_GCE_CHECK = saved


def fresh_url() -> str:
    return f"gs://{BUCKET}/{uuid.uuid4().hex[:12]}"


def blob(url: str) -> storage.Blob:
    """The object at ``gs://bucket/key``, through Google's client."""
    bucket, _, key = url.removeprefix("gs://").partition("/")
    return storage.Client(project=PROJECT).bucket(bucket).blob(key)


# Raw access to a stored file on either backend, around the lake's code: a test reads what is
# there, or damages it as a bug or a stray copy would (no lake metadata).


def raw_read(location: Path | str) -> bytes:
    if str(location).startswith("gs://"):
        return blob(str(location)).download_as_bytes()
    return Path(location).read_bytes()


def raw_write(location: Path | str, data: bytes) -> None:
    """Replace or create the file's bytes."""
    if str(location).startswith("gs://"):
        blob(str(location)).upload_from_string(data)
        return
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    Path(location).write_bytes(data)


def raw_remove(location: Path | str) -> None:
    if str(location).startswith("gs://"):
        blob(str(location)).delete()
    else:
        Path(location).unlink()
