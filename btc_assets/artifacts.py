"""Versioned artifacts in the lake (training datasets, models): the only module that knows
their on-disk layout, as ``lake.py`` knows the day tables'.

    <lake root>/<kind>/<name>/<version>/<file>...      (kind: "datasets" or "models")
                                        MANIFEST.tsv    (file, bytes, sha256)
                                        _SUCCESS
    <lake root>/<kind>/<name>/CURRENT                   (the version readers use)

A version is named after its content (the sha256 of its manifest), so committing the same
files twice is a no-op and a version never changes once written. A commit builds the version
in a hidden temp directory, fsyncs it and renames it into place; then ``promote`` replaces
``CURRENT`` with one atomic rename. A reader therefore sees the previous version or the new
one, whole. Every read verifies sizes and sha256 against the manifest first: a version that
does not verify is refused with the file that broke, never returned.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from btc_assets.lake import (
    ARTIFACT_DIRS,
    LakeCorruptionError,
    LakeError,
    fsync_dir,
    verify_content,
)

MANIFEST = "MANIFEST.tsv"
SUCCESS = "_SUCCESS"
CURRENT = "CURRENT"
HEADER = ("file", "bytes", "sha256")
Kind = Literal["datasets", "models"]
# Lake folders that are not day tables (``Lake.tables`` leaves them out).
ARTIFACT_KINDS: tuple[str, ...] = ARTIFACT_DIRS
VERSION_LENGTH = 16


class ArtifactError(LakeError):
    """An artifact write or read was refused."""


class ArtifactCorruptionError(ArtifactError, LakeCorruptionError):
    """A stored version does not match its manifest, or part of it is missing."""


@dataclass(frozen=True)
class StoredFile:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Artifact:
    """A committed, verified version: its directory and files as the manifest lists them.

    ``sha256`` is the manifest's digest: one value that pins every byte of the version.
    """

    kind: str
    name: str
    version: str
    directory: Path
    files: tuple[StoredFile, ...]
    sha256: str

    def path(self, file: str) -> Path:
        if file not in {f.name for f in self.files}:
            raise ArtifactError(f"{self.directory}: no file {file!r} in its manifest")
        return self.directory / file

    def read_bytes(self, file: str) -> bytes:
        """The bytes of ``file``, checked against the manifest again (read once, hashed once:
        what is returned is what was verified)."""
        entry = next((f for f in self.files if f.name == file), None)
        if entry is None:
            raise ArtifactError(f"{self.directory}: no file {file!r} in its manifest")
        try:
            data = (self.directory / file).read_bytes()
        except OSError as exc:
            raise ArtifactCorruptionError(f"{self.directory / file}: unreadable: {exc}") from exc
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ArtifactCorruptionError(
                f"{self.directory / file}: does not match {self.directory / MANIFEST} "
                f"(expected {entry.bytes} bytes, sha256 {entry.sha256[:12]}...)"
            )
        return data


class ArtifactStore:
    """The versions of one kind of artifact under a lake root."""

    def __init__(self, lake_root: Path | str, kind: Kind) -> None:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact kind {kind!r} is not one of {ARTIFACT_KINDS}")
        self.kind = kind
        self.root = Path(lake_root) / kind

    def directory(self, name: str, version: str) -> Path:
        return self._named(name) / version

    def _named(self, name: str) -> Path:
        if not name or "/" in name or name.startswith((".", "_")):
            raise ArtifactError(f"bad {self.kind} name {name!r}")
        return self.root / name

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
        if target.is_dir():
            with suppress(ArtifactCorruptionError):
                return self.verify(name, version)
            # A damaged copy of the same content: replaced below by a good one.
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{version}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
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
        return self.verify(name, version)

    def promote(self, name: str, version: str) -> None:
        """Make ``version`` the one readers use (atomic: the old pointer or the new)."""
        self.verify(name, version)
        pointer = self._named(name) / CURRENT
        temp = pointer.parent / f".{CURRENT}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        _write_synced(temp, f"{version}\n".encode())
        os.replace(temp, pointer)
        fsync_dir(pointer.parent)

    # ------------------------------------------------------------------ read

    def current(self, name: str) -> str | None:
        """The version ``CURRENT`` names (not verified), None when nothing was promoted."""
        try:
            text = (self._named(name) / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactCorruptionError(f"{self._named(name) / CURRENT}: {exc}") from exc
        if not text or "/" in text or text.startswith("."):
            raise ArtifactCorruptionError(f"{self._named(name) / CURRENT}: bad version {text!r}")
        return text

    def versions(self, name: str) -> list[str]:
        """Committed versions (with a manifest), not verified; oldest commit first."""
        folder = self._named(name)
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
        return [p.name for p in sorted(found, key=lambda p: ((p / MANIFEST).stat().st_mtime, p))]

    def verify(self, name: str, version: str) -> Artifact:
        """The version, after checking every file's size and sha256 against its manifest."""
        directory = self.directory(name, version)
        manifest = directory / MANIFEST
        try:
            text = manifest.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactCorruptionError(f"{manifest}: manifest missing") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactCorruptionError(f"{manifest}: unreadable: {exc}") from exc
        entries = _parse_manifest(text, manifest)
        if not (directory / SUCCESS).is_file():
            raise ArtifactCorruptionError(f"{directory / SUCCESS}: marker missing")
        for entry in entries:
            path = directory / entry.name
            if not path.is_file():
                raise ArtifactCorruptionError(f"{path}: missing (listed in {manifest})")
            verify_content(path, entry.bytes, entry.sha256, ArtifactCorruptionError)
        return Artifact(
            self.kind, name, version, directory, entries, hashlib.sha256(text.encode()).hexdigest()
        )

    def read_current(self, name: str) -> Artifact | None:
        version = self.current(name)
        return None if version is None else self.verify(name, version)


def _manifest_text(entries: tuple[StoredFile, ...]) -> str:
    rows = ["\t".join(HEADER)] + [f"{e.name}\t{e.bytes}\t{e.sha256}" for e in entries]
    return "\n".join(rows) + "\n"


def _parse_manifest(text: str, manifest: Path) -> tuple[StoredFile, ...]:
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


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
