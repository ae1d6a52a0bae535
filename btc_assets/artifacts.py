"""Versioned artifacts in the lake (training datasets, models): the only module that knows
their layout, as ``lake/day_lake.py`` knows the day tables'. On any backend (``lake/storage.py``):

    <lake root>/<kind>/<name>/<version>/<file>...      (kind: "datasets" or "models")
                                        MANIFEST.tsv    (file, bytes, sha256)
                                        _SUCCESS
    <lake root>/<kind>/<name>/CURRENT                   (the version readers use)

``<lake root>`` is a local folder or ``gs://bucket/prefix``: a model trained in one pod is
served from another. A version is named after its content (the sha256 of its manifest), so
committing the same files twice is a no-op and a version never changes once written.

How a version appears whole: locally it is built in a hidden temp directory, fsynced and
renamed into place. On GCS there is no rename of a prefix: the files go first (each uploaded
with its sha256, see ``gcs.py``), the marker next, the manifest last; the manifest is the
commit, and a version without one is not listed nor verifiable. Every writer of a version
writes the very same bytes, so concurrent commits of one content agree.

``promote`` replaces ``CURRENT`` by the lake's compare-and-swap commit (flock + rename
locally, a generation precondition on GCS) against the pointer it read: a reader sees the
old version or the new one, and a promote that lost a race to another re-reads and tries
again (or, given ``if_current``, is refused: the pointer it decided on moved). Every read
verifies sizes and sha256 against the manifest first: a version that does not verify is
refused with the file that broke, never returned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import shutil
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from btc_assets.lake import (
    ARTIFACT_DIRS,
    COMMIT_ATTEMPTS,
    LakeCommitConflict,
    LakeCorruptionError,
    LakeError,
    fsync_dir,
    open_storage,
)
from btc_assets.lake.storage import Location, Storage

MANIFEST = "MANIFEST.tsv"
SUCCESS = "_SUCCESS"
CURRENT = "CURRENT"
HEADER = ("file", "bytes", "sha256")
Kind = Literal["datasets", "models"]
# Lake folders that are not day tables (``Lake.tables`` leaves them out).
ARTIFACT_KINDS: tuple[str, ...] = ARTIFACT_DIRS
VERSION_LENGTH = 16
# ``promote``'s default: whatever CURRENT names when the pointer is written.
ANY = object()
log = logging.getLogger("btc_assets.artifacts")


class ArtifactError(LakeError):
    """An artifact write or read was refused."""


class ArtifactCorruptionError(ArtifactError, LakeCorruptionError):
    """A stored version does not match its manifest, or part of it is missing."""


class ArtifactPromoteConflict(ArtifactError, LakeCommitConflict):
    """``CURRENT`` moved under a promote that required it not to (or kept moving)."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Artifact:
    """A committed, verified version: its directory and files as the manifest lists them.

    ``sha256`` is the manifest's digest: one value that pins every byte of the version.
    ``directory`` is a ``Path`` in a local lake and a ``gs://`` URL string on GCS.
    """

    kind: str
    name: str
    version: str
    directory: Location
    files: tuple[StoredFile, ...]
    sha256: str
    storage: Storage = field(compare=False, repr=False, kw_only=True)

    def path(self, file: str) -> Location:
        if file not in {f.name for f in self.files}:
            raise ArtifactError(f"{self.directory}: no file {file!r} in its manifest")
        return self.storage.join(self.directory, file)

    def read_bytes(self, file: str) -> bytes:
        """The bytes of ``file``, checked against the manifest again (read once, hashed once:
        what is returned is what was verified)."""
        entry = next((f for f in self.files if f.name == file), None)
        if entry is None:
            raise ArtifactError(f"{self.directory}: no file {file!r} in its manifest")
        location = self.storage.join(self.directory, file)
        try:
            data = self.storage.read_bytes(location)
        except OSError as exc:
            raise ArtifactCorruptionError(f"{location}: unreadable: {exc}") from exc
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ArtifactCorruptionError(
                f"{location}: does not match {self.storage.join(self.directory, MANIFEST)} "
                f"(expected {entry.bytes} bytes, sha256 {entry.sha256[:12]}...)"
            )
        return data


class ArtifactStore:
    """The versions of one kind of artifact under a lake root (a path or ``gs://…``)."""

    def __init__(self, lake_root: Path | str, kind: Kind, storage: Storage | None = None) -> None:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact kind {kind!r} is not one of {ARTIFACT_KINDS}")
        self.kind = kind
        self.storage = storage or open_storage(lake_root)
        self.root = self.storage.join(self.storage.root, kind)

    def directory(self, name: str, version: str) -> Location:
        return self.storage.join(self._named(name), version)

    def location(self, name: str, version: str, file: str) -> Location:
        """Where ``file`` of a version is (or would be), for messages; not verified."""
        return self.storage.join(self.directory(name, version), file)

    def _named(self, name: str) -> Location:
        if not name or "/" in name or name.startswith((".", "_")):
            raise ArtifactError(f"bad {self.kind} name {name!r}")
        return self.storage.join(self.root, name)

    # ------------------------------------------------------------------ write

    def commit(self, name: str, files: Mapping[str, bytes]) -> Artifact:
        """Store ``files`` as a version of ``name`` (named by content) and return it verified.

        Does not change ``CURRENT``: ``promote`` does, once the caller accepts the version.
        """
        bad = [f for f in files if not f or "/" in f or f in (MANIFEST, SUCCESS, CURRENT)]
        if bad or not files:
            raise ArtifactError(f"{self.kind}/{name}: bad file names {bad or '(none)'}")
        entries = tuple(
            StoredFile(f, len(data), hashlib.sha256(data).hexdigest())
            for f, data in sorted(files.items())
        )
        manifest = _manifest_text(entries)
        version = hashlib.sha256(manifest.encode()).hexdigest()[:VERSION_LENGTH]
        target = self.directory(name, version)
        with suppress(ArtifactCorruptionError):
            return self.verify(name, version)
        # Absent, or a damaged copy of the same content: (re)written whole below.
        if self.storage.remote:
            self._upload(target, entries, files, manifest)
        else:
            _build_and_rename(Path(target), entries, files, manifest)
        return self.verify(name, version)

    def _upload(
        self,
        target: Location,
        entries: tuple[StoredFile, ...],
        files: Mapping[str, bytes],
        manifest: str,
    ) -> None:
        """Files, marker, then the manifest: nothing lists or verifies the version before
        its last object is stored (object storage has no rename of a folder)."""
        for entry in entries:
            self.storage.put_data(target, entry.name, files[entry.name], entry.sha256)
        empty = hashlib.sha256(b"").hexdigest()
        self.storage.put_data(target, SUCCESS, b"", empty)
        text = manifest.encode()
        self.storage.put_data(target, MANIFEST, text, hashlib.sha256(text).hexdigest())

    def promote(self, name: str, version: str, *, if_current: object = ANY) -> str | None:
        """Make ``version`` the one readers use (atomic: the old pointer or the new); the
        version it replaced (None: none was promoted).

        The pointer is committed against the one read just before, so a promote never
        silently overwrites one it did not see: by default a lost race is re-read and tried
        again (the last promote wins, whole); with ``if_current`` (a version, or None for
        "nothing promoted yet") it is refused with ``ArtifactPromoteConflict`` unless
        ``CURRENT`` still names that version.
        """
        self.verify(name, version)
        pointer = self.storage.join(self._named(name), CURRENT)
        for attempt in range(COMMIT_ATTEMPTS):
            previous, generation = self._pointer(pointer)
            if if_current is not ANY and previous != if_current:
                raise ArtifactPromoteConflict(
                    f"{pointer}: names {previous or 'nothing'}, not {if_current or 'nothing'} "
                    f"as this promote of {version} required; another promote moved it"
                )
            try:
                self.storage.commit(pointer, f"{version}\n", generation)
                return previous
            except LakeCommitConflict:
                log.info("%s: promoted by another writer meanwhile; re-reading", pointer)
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # let the winner finish
        raise ArtifactPromoteConflict(
            f"{pointer}: lost the promote race {COMMIT_ATTEMPTS} times in a row; another "
            f"writer keeps moving it. {version} is not promoted."
        )

    def _pointer(self, pointer: Location) -> tuple[str | None, object]:
        """What ``CURRENT`` names and the version a commit compares (None, None: absent).
        An unreadable pointer still has a version: a promote replaces it."""
        try:
            text, generation = self.storage.read_manifest(pointer)
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactCorruptionError(f"{pointer}: {exc}") from exc
        try:
            return _pointed(text, pointer), generation
        except ArtifactCorruptionError:
            return None, generation

    # ------------------------------------------------------------------ read

    def current(self, name: str) -> str | None:
        """The version ``CURRENT`` names (not verified), None when nothing was promoted."""
        pointer = self.storage.join(self._named(name), CURRENT)
        try:
            text = self.storage.read_bytes(pointer).decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactCorruptionError(f"{pointer}: {exc}") from exc
        return _pointed(text, pointer)

    def versions(self, name: str) -> list[str]:
        """Committed versions (with a manifest), not verified; oldest commit first."""
        folder = self._named(name)
        found = []
        for version in self.storage.folders(folder):
            if version.startswith("."):  # a local commit's temp folder
                continue
            stored = {
                f.name: f.since for f in self.storage.files(self.storage.join(folder, version))
            }
            if MANIFEST in stored:
                found.append((stored[MANIFEST], version))
        return [version for _, version in sorted(found)]

    def verify(self, name: str, version: str) -> Artifact:
        """The version, after checking every file's size and sha256 against its manifest
        (on GCS against the sha256 and GCS's md5 recorded with each object, ``gcs.py``;
        ``Artifact.read_bytes`` hashes what it downloads)."""
        directory = self.directory(name, version)
        manifest = self.storage.join(directory, MANIFEST)
        try:
            text = self.storage.read_bytes(manifest).decode("utf-8")
        except FileNotFoundError:
            raise ArtifactCorruptionError(f"{manifest}: manifest missing") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactCorruptionError(f"{manifest}: unreadable: {exc}") from exc
        entries = _parse_manifest(text, manifest)
        marker = self.storage.join(directory, SUCCESS)
        if not self.storage.exists(marker):
            raise ArtifactCorruptionError(f"{marker}: marker missing")
        for entry in entries:
            location = self.storage.join(directory, entry.name)
            if not self.storage.exists(location):
                raise ArtifactCorruptionError(f"{location}: missing (listed in {manifest})")
            self.storage.verify_content(
                location, entry.bytes, entry.sha256, ArtifactCorruptionError
            )
        digest = hashlib.sha256(text.encode()).hexdigest()
        return Artifact(self.kind, name, version, directory, entries, digest, storage=self.storage)

    def read_current(self, name: str) -> Artifact | None:
        version = self.current(name)
        return None if version is None else self.verify(name, version)


def _pointed(text: str, pointer: Location) -> str:
    version = text.strip()
    if not version or "/" in version or version.startswith("."):
        raise ArtifactCorruptionError(f"{pointer}: bad version {version!r}")
    return version


def _manifest_text(entries: tuple[StoredFile, ...]) -> str:
    rows = ["\t".join(HEADER)] + [f"{e.name}\t{e.bytes}\t{e.sha256}" for e in entries]
    return "\n".join(rows) + "\n"


def _parse_manifest(text: str, manifest: Location) -> tuple[StoredFile, ...]:
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER or len(lines) < 2:
        raise ArtifactCorruptionError(f"{manifest}: bad header or no file, expected {HEADER}")
    entries = []
    for line in lines[1:]:
        fields = line.split("\t")
        try:
            name, size, digest = fields
            entries.append(StoredFile(name, int(size), digest))
        except ValueError:
            raise ArtifactCorruptionError(f"{manifest}: bad row {line!r}") from None
        if "/" in name or len(digest) != 64:
            raise ArtifactCorruptionError(f"{manifest}: bad row {line!r}")
    return tuple(entries)


def _build_and_rename(
    target: Path, entries: tuple[StoredFile, ...], files: Mapping[str, bytes], manifest: str
) -> None:
    """The local commit: the whole version in a hidden temp folder, fsynced, then renamed
    into place (replacing a damaged copy), so the folder appears complete or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    temp.mkdir()
    try:
        for entry in entries:
            _write_synced(temp / entry.name, files[entry.name])
        _write_synced(temp / MANIFEST, manifest.encode())
        _write_synced(temp / SUCCESS, b"")
        fsync_dir(temp)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(temp, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
