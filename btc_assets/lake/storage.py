"""Where the lake's bytes live: the few operations a day commit needs, on a local disk.

``Lake`` (``day_lake.py``) speaks only :class:`Storage`; this module is its local backend and
``gcs.py`` its object-storage one. The interface is the lake's, not a file system's: a day is
content-named data files that never change, a ``_SUCCESS`` marker, and a manifest replaced by a
compare-and-swap commit, so the same protocol holds on a POSIX directory (rename, flock) and on
a bucket (generation preconditions).

A *location* is what the backend addresses: a ``Path`` here, a ``gs://`` URL string on GCS.
A manifest's *version* is what a commit compares against: here the manifest file's identity
(inode, ctime, size), there the object's generation; ``None`` when there is no manifest yet.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Location = Path | str
Version = Hashable | None
_HASH_CHUNK = 1 << 20


class LakeError(RuntimeError):
    """A write or read of the lake was refused."""


class LakeCorruptionError(LakeError):
    """A stored day does not match its manifest, or part of it is missing or unreadable."""


class LakeCommitConflict(LakeError):
    """Another writer committed the day between this writer's read and its commit."""


@dataclass(frozen=True)
class StoredFile:
    """A file of a day folder, and since when it has been what it is (epoch seconds): its
    last write, or when a commit superseded it, whichever is later."""

    name: str
    since: float


class Storage(Protocol):
    """The lake's operations on one backend (see the module docstring)."""

    root: Location
    url: str
    remote: bool

    def join(self, base: Location, *names: str) -> Location: ...
    def name(self, location: Location) -> str: ...
    def exists(self, location: Location) -> bool: ...
    def read_bytes(self, location: Location) -> bytes: ...
    def read_manifest(self, location: Location) -> tuple[str, Version]: ...
    def put_data(self, directory: Location, name: str, data: bytes, sha256: str) -> Location: ...
    def ensure_marker(self, location: Location) -> None: ...
    def commit(self, location: Location, text: str, expected: Version) -> None: ...
    def mark_superseded(self, location: Location) -> None: ...
    def files(self, directory: Location) -> list[StoredFile]: ...
    def delete(self, location: Location) -> None: ...
    def tables(self) -> list[str]: ...
    def folders(self, directory: Location) -> list[str]: ...
    def day_dirs(self, table: str, symbol: str) -> Iterator[tuple[Location, bool]]: ...
    def verify_content(
        self, location: Location, size: int, sha256: str, error: type[LakeError]
    ) -> None: ...
    def fingerprint(self, location: Location) -> Hashable | None: ...


class LocalStorage:
    """A directory tree: temp file + fsync + rename for every write, flock for the commit."""

    remote = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def join(self, base: Location, *names: str) -> Path:
        return Path(base).joinpath(*names)

    def name(self, location: Location) -> str:
        return Path(location).name

    def exists(self, location: Location) -> bool:
        return Path(location).is_file()

    def read_bytes(self, location: Location) -> bytes:
        return Path(location).read_bytes()

    def read_manifest(self, location: Location) -> tuple[str, Version]:
        path = Path(location)
        with path.open("rb") as fh:
            # The identity of the file read (rename makes a new inode): the commit's version.
            stat = os.fstat(fh.fileno())
            return fh.read().decode("utf-8"), (stat.st_ino, stat.st_ctime_ns, stat.st_size)

    def put_data(self, directory: Location, name: str, data: bytes, sha256: str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        temp, fd = _create_temp(directory, name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            target = directory / name
            os.replace(temp, target)  # same bytes if it existed: the name is the content
        finally:
            with suppress(FileNotFoundError):
                temp.unlink()
        return target

    def ensure_marker(self, location: Location) -> None:
        path = Path(location)
        if not path.exists():
            path.touch()

    def commit(self, location: Location, text: str, expected: Version) -> None:
        path = Path(location)
        with _locked(path.parent):
            if _file_version(path) != expected:
                raise LakeCommitConflict(f"{path}: committed by another writer meanwhile")
            temp, fd = _create_temp(path.parent, path.name)
            try:
                _write_synced(fd, text)
                os.replace(temp, path)
            finally:
                with suppress(FileNotFoundError):
                    temp.unlink()
        fsync_dir(path.parent)

    def mark_superseded(self, location: Location) -> None:
        # Its grace period counts from now, when it stops being the day.
        with suppress(FileNotFoundError):
            os.utime(location)

    def files(self, directory: Location) -> list[StoredFile]:
        found = []
        for path in sorted(Path(directory).iterdir()):
            with suppress(FileNotFoundError):
                found.append(StoredFile(path.name, path.stat().st_mtime))
        return found

    def delete(self, location: Location) -> None:
        with suppress(FileNotFoundError):
            Path(location).unlink()

    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def folders(self, directory: Location) -> list[str]:
        """The names of the folders directly under ``directory`` (none if it is absent)."""
        path = Path(directory)
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if p.is_dir())

    def day_dirs(self, table: str, symbol: str) -> Iterator[tuple[Path, bool]]:
        for day_dir in sorted((self.root / table / symbol).glob("y=*/m=*/d=*")):
            yield day_dir, (day_dir / "MANIFEST.tsv").is_file()

    def verify_content(
        self, location: Location, size: int, sha256: str, error: type[LakeError]
    ) -> None:
        verify_content(Path(location), size, sha256, error)

    def fingerprint(self, location: Location) -> Hashable | None:
        try:
            st = os.stat(location)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def verify_content(
    path: Path, size: int, sha256: str, error: type[LakeError] = LakeCorruptionError
) -> None:
    """Raise ``error`` naming ``path`` unless it has the manifest's size and sha256."""
    found = path.stat().st_size
    if found != size:
        raise error(f"{path}: size mismatch, manifest says {size} bytes, file has {found}")
    digest = sha256_file(path)
    if digest != sha256:
        raise error(f"{path}: sha256 mismatch, manifest says {sha256}, file has {digest}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    # Makes the renames durable; not every platform can open a directory, hence best effort.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _file_version(path: Path) -> Version:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_ctime_ns, stat.st_size)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the day's directory itself: no lock file to leave behind, and
    released by the kernel if the writer dies."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _create_temp(directory: Path, name: str) -> tuple[Path, int]:
    """A new temp file in ``directory``, and its descriptor open for writing (one open:
    creating a file is the costly part of writing a small day)."""
    # A dot prefix and .tmp suffix keep half-written files out of every glob and scan. Not
    # tempfile.mkstemp: its 0600 mode would survive the rename and lock out other readers.
    path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _write_synced(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
