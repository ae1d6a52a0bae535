"""The Parquet lake: day commits, manifests, provenance and verified reads (``day_lake.py``)
on a local folder (``storage.py``) or Google Cloud Storage (``gcs.py``)."""

from btc_assets.lake.day_files import (
    LEGACY_MANIFEST_HEADER,
    MANIFEST,
    MANIFEST_HEADER,
    SUCCESS,
    DayWrite,
    parquet_bytes,
)
from btc_assets.lake.day_lake import (
    ARTIFACT_DIRS,
    COMMIT_ATTEMPTS,
    SUPERSEDED_GRACE,
    DayRead,
    Lake,
    open_storage,
)
from btc_assets.lake.storage import (
    LakeCommitConflict,
    LakeCorruptionError,
    LakeError,
    fsync_dir,
    sha256_file,
    verify_content,
)

__all__ = [
    "ARTIFACT_DIRS",
    "COMMIT_ATTEMPTS",
    "LEGACY_MANIFEST_HEADER",
    "MANIFEST",
    "MANIFEST_HEADER",
    "SUCCESS",
    "SUPERSEDED_GRACE",
    "DayRead",
    "DayWrite",
    "Lake",
    "LakeCommitConflict",
    "LakeCorruptionError",
    "LakeError",
    "fsync_dir",
    "open_storage",
    "parquet_bytes",
    "sha256_file",
    "verify_content",
]
