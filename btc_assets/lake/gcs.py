"""The lake on Google Cloud Storage: ``gs://bucket/prefix``, through fsspec's ``gcsfs``.

Why fsspec (gcsfs) rather than pyarrow's ``GcsFileSystem``: DuckDB reads through an fsspec
file system registered on a connection (the views over a GCS lake), Polars reads fsspec file
objects, and gcsfs speaks GCS's JSON API, which the offline emulator (gcp-storage-emulator)
serves, honouring ``STORAGE_EMULATOR_HOST`` as Google's own clients do. Neither abstraction
offers a conditional write beyond "create if absent"; the commit therefore sends GCS's
``ifGenerationMatch`` on the same gcsfs session's upload call (:meth:`GcsStorage.commit`).

What each promise of the local lake becomes here:
- **Atomic day commit.** A single-object upload is atomic in GCS: readers see the old
  manifest or the new one. The upload carries ``ifGenerationMatch=<generation read before the
  write>`` (``0``: must not exist), so of two writers of one day exactly one commits; the
  other gets HTTP 412 → :class:`LakeCommitConflict`, and ``Lake.write_day`` re-reads and tries
  again. No mixed day: a manifest names its data file, and data files never change.
- **Verified reads without downloading twice.** A data object is uploaded with its sha256 and
  md5 in its custom metadata; GCS computes the object's own ``md5Hash`` from the bytes it
  stores. :meth:`verify_content` compares size, the recorded sha256 (against the manifest) and
  GCS's md5 (against the recorded one): one metadata request per day, and a replaced or
  damaged object fails. ``Lake.read_days`` still hashes the bytes it downloads (sha256).
- **Grace for superseded files.** A commit stamps the file it replaces with
  ``superseded_at`` (custom metadata; content and md5 unchanged): the sweep counts the grace
  from it, as the local lake counts it from the file's mtime.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Any

from btc_assets.lake.storage import (
    LakeCommitConflict,
    LakeError,
    Location,
    StoredFile,
    Version,
)

SCHEME = "gs://"
_PRECONDITION_FAILED = 412


def _gcsfs() -> Any:
    # The plain class, not fsspec's "gs" registration: gcsfs's extended subclass first probes
    # the bucket type over gRPC, which an emulator (and a firewall) answers with a 60 s timeout.
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem


def parse_url(url: str) -> tuple[str, str]:
    """``gs://bucket/prefix`` → (bucket, prefix without slashes at its ends)."""
    if not url.startswith(SCHEME):
        raise ValueError(f"{url!r} is not a gs:// URL")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, prefix.strip("/")


class GcsStorage:
    """One bucket prefix. Locations are ``gs://bucket/key`` strings."""

    remote = True

    def __init__(self, url: str, fs: Any | None = None) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.root = SCHEME + "/".join(p for p in (self.bucket, self.prefix) if p)
        self.url = self.root
        if fs is None:
            # Google's clients read STORAGE_EMULATOR_HOST themselves; against an emulator
            # there are no credentials to look for (looking costs a metadata-server timeout).
            emulated = bool(os.environ.get("STORAGE_EMULATOR_HOST"))
            fs = _gcsfs()(
                token="anon" if emulated else None,
                skip_instance_cache=True,
                use_listings_cache=False,  # another writer's commit must be seen at once
                version_aware=True,  # reads of one generation: "key#generation"
            )
        self.fs = fs

    # ---------------------------------------------------------------- addressing

    def join(self, base: Location, *names: str) -> str:
        return "/".join([str(base).rstrip("/"), *names])

    def name(self, location: Location) -> str:
        return str(location).rsplit("/", 1)[-1]

    @staticmethod
    def _key(location: Location) -> str:
        return str(location).removeprefix(SCHEME)

    # ---------------------------------------------------------------- reads

    def _object(self, location: Location) -> dict[str, Any]:
        """The object's metadata in one request (FileNotFoundError: none). Not ``fs.info``:
        gcsfs sends a listing beside every object GET there, doubling the requests."""
        bucket, _, name = self._key(location).partition("/")
        found = self.fs.call("GET", "b/{}/o/{}", bucket, name, json_out=True)
        return {**found, "size": int(found.get("size", -1))}

    def exists(self, location: Location) -> bool:
        try:
            self._object(location)
        except FileNotFoundError:
            return False
        return True

    def read_bytes(self, location: Location) -> bytes:
        return bytes(self.fs.cat_file(self._key(location)))

    def read_manifest(self, location: Location) -> tuple[str, Version]:
        # Read the bytes of one generation, so the version compared at commit is the one read.
        info = self._object(location)
        generation = int(info["generation"])
        data = self.fs.cat_file(f"{self._key(location)}#{generation}")
        return bytes(data).decode("utf-8"), generation

    def files(self, directory: Location) -> list[StoredFile]:
        found = []
        for info in self.fs.ls(self._key(directory), detail=True):
            if info.get("type") != "file":
                continue
            stamp = (info.get("metadata") or {}).get("superseded_at")
            since = float(stamp) if stamp else _epoch(info.get("timeCreated"))
            found.append(StoredFile(self.name(info["name"]), since))
        return sorted(found, key=lambda f: f.name)

    def tables(self) -> list[str]:
        try:
            entries = self.fs.ls(self._key(self.root), detail=True)
        except FileNotFoundError:
            return []
        return sorted(self.name(e["name"]) for e in entries if e.get("type") == "directory")

    def folders(self, directory: Location) -> list[str]:
        """The names of the prefixes directly under ``directory``: one listing."""
        try:
            entries = self.fs.ls(self._key(directory), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            self.name(e["name"].rstrip("/")) for e in entries if e.get("type") == "directory"
        )

    def day_dirs(self, table: str, symbol: str) -> Iterator[tuple[str, bool]]:
        """Every day folder under table/symbol and whether it has a manifest: one listing."""
        base = self._key(self.join(self.root, table, symbol))
        try:
            keys = self.fs.find(base)
        except FileNotFoundError:
            return
        folders: dict[str, bool] = {}
        for key in keys:
            folder, _, name = key.rpartition("/")
            rest = folder[len(base) + 1 :].split("/")
            if len(rest) == 3 and [r[:2] for r in rest] == ["y=", "m=", "d="]:
                folders[folder] = folders.get(folder, False) or name == "MANIFEST.tsv"
        for folder in sorted(folders):
            yield SCHEME + folder, folders[folder]

    def verify_content(
        self, location: Location, size: int, sha256: str, error: type[LakeError]
    ) -> None:
        try:
            info = self._object(location)
        except FileNotFoundError:
            raise error(f"{location}: data file missing (listed in its day's manifest)") from None
        found = int(info.get("size", -1))
        if found != size:
            raise error(f"{location}: size mismatch, manifest says {size} bytes, file has {found}")
        recorded = info.get("metadata") or {}
        if recorded.get("sha256") != sha256:
            raise error(
                f"{location}: sha256 mismatch, manifest says {sha256}, the object records "
                f"{recorded.get('sha256') or 'none'} (replaced by something else?)"
            )
        if not info.get("md5Hash") or info.get("md5Hash") != recorded.get("md5"):
            raise error(
                f"{location}: content mismatch, GCS computes md5 {info.get('md5Hash')}, "
                f"the writer recorded {recorded.get('md5')}"
            )

    def fingerprint(self, location: Location) -> Hashable | None:
        try:
            info = self._object(location)
        except FileNotFoundError:
            return None
        return int(info["generation"]), info.get("metageneration"), info.get("md5Hash")

    # ---------------------------------------------------------------- writes

    def put_data(self, directory: Location, name: str, data: bytes, sha256: str) -> str:
        target = self.join(directory, name)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # GCS's own integrity hash
        self.fs.pipe_file(self._key(target), data, metadata={"sha256": sha256, "md5": md5})
        return target

    def ensure_marker(self, location: Location) -> None:
        # Create-if-absent in one request: GCS answers 412 when it is there already.
        with contextlib.suppress(FileExistsError):
            self.fs.pipe_file(self._key(location), b"", mode="create")

    def commit(self, location: Location, text: str, expected: Version) -> None:
        bucket, _, key = self._key(location).partition("/")
        try:
            self.fs.call(
                "POST",
                f"{self.fs._location}/upload/storage/v1/b/{bucket}/o",
                uploadType="media",
                name=key,
                ifGenerationMatch=str(expected or 0),
                data=text.encode("utf-8"),
                headers={"Content-Type": "text/tab-separated-values"},
                json_out=True,
            )
        except Exception as exc:
            # gcsfs turns 412 into FileExistsError; older versions raise HttpError(412).
            if isinstance(exc, FileExistsError) or _status(exc) == _PRECONDITION_FAILED:
                raise LakeCommitConflict(
                    f"{location}: committed by another writer meanwhile (generation "
                    f"{expected or 0} expected)"
                ) from None
            raise

    def mark_superseded(self, location: Location) -> None:
        with contextlib.suppress(FileNotFoundError):
            key = self._key(location)
            # All keys, not just the new one: a PATCH merges them on GCS but the emulator
            # replaces the whole map, and the sha256/md5 record must survive either way.
            recorded = dict(self._object(location).get("metadata") or {})
            self.fs.setxattrs(key, **{**recorded, "superseded_at": f"{time.time():.3f}"})

    def delete(self, location: Location) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._key(location))

    # ---------------------------------------------------------------- readers outside

    def register_duckdb(self, connection: Any) -> None:
        """Let a DuckDB connection read ``gs://`` through this session (views over the lake)."""
        connection.register_filesystem(self.fs)


def _status(exc: BaseException) -> int | None:
    for attr in ("code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    text = str(exc)
    try:
        return int(json.loads(text).get("code"))  # some versions carry the JSON body
    except (ValueError, AttributeError, TypeError):
        return _PRECONDITION_FAILED if "412" in text or "conditionNotMet" in text else None


def _epoch(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str) and stamp:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return time.time()  # unknown age: treated as new, so never swept early
