"""The partitioned Parquet lake: the only code that knows its layout, on any backend.

    <root>/<table>/<symbol>/y=YYYY/m=MM/d=DD/part-YYYYMMDD-<sha256[:16]>.parquet
                                             MANIFEST.tsv   (file, rows, bytes, sha256,
                                                             provenance)
                                             _SUCCESS       (empty marker)

``<root>`` is a local folder or ``gs://bucket/prefix`` (``storage.py``, ``gcs.py``); what
follows holds on both. One committed file per UTC partition day D, holding rows with ``ts``
in ``(D 00:00, D+1 00:00]``. The MANIFEST is the commit: a day is whatever file its manifest
names, and the manifest is replaced in one atomic step that succeeds only if nobody else
committed the day since this writer read it (flock + rename locally, a generation
precondition on GCS): of two concurrent writers the loser re-reads and commits again, so the
day is always one writer's whole. Data files are immutable and named after their content, so
a new version never overwrites the file a reader may be reading, and no reader can pair a
file with a manifest of another write: a crash at any point leaves the previous day or the
new one. A superseded file stays for ``SUPERSEDED_GRACE`` (a DuckDB view or a long read may
still hold its path), then the next write of that day removes it, with any temp file of an
interrupted write; ``uncommitted_files`` lists both for ``verify``.

Writes are deterministic: the same frame always yields the same bytes (and so the same
name), so re-runs are byte-identical. The only read is ``read_days``, which verifies every
day against its manifest first: a day that does not verify is reported, never returned.
Each manifest also carries the day's provenance (a JSON object the writer supplies: env,
vendor host, endpoint, fetch time, closed or partial...), committed with the data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import tempfile
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from btc_assets.lake.day_files import (
    MANIFEST,
    SUCCESS,
    DayWrite,
    check_rows,
    manifest_text,
    parquet_bytes,
    parse_day_dir,
    parse_manifest,
    validate_frame,
)
from btc_assets.lake.storage import (
    LakeCommitConflict,
    LakeCorruptionError,
    LakeError,
    LocalStorage,
    Location,
    Storage,
    Version,
)

SUPERSEDED_GRACE = timedelta(hours=6)
# Folders of the lake root that hold versioned artifacts (``artifacts.py``), not day tables.
ARTIFACT_DIRS = ("datasets", "models")
_NAME_HASH = 16
# A lost commit race is re-tried this many times: writers of one day are a handful at most
# (a backfill run and the live job), so running out means something keeps rewriting it.
COMMIT_ATTEMPTS = 8
log = logging.getLogger("btc_assets.lake")
# Up to this many days, asking for each manifest beats listing a table's whole history.
_PROBES = 8


@dataclass(frozen=True)
class DayRead:
    """What ``read_days`` found: a scan of the verified days only, and why the rest are out.

    ``errors`` holds days that exist but do not verify; ``missing`` days never committed.
    """

    frame: pl.LazyFrame
    committed: dict[date, DayWrite]
    errors: dict[date, str]
    missing: list[date]


def open_storage(root: Path | str) -> Storage:
    """The backend of a lake root: ``gs://bucket/prefix`` or a local folder."""
    if isinstance(root, str) and root.startswith("gs://"):
        from btc_assets.lake.gcs import GcsStorage

        return GcsStorage(root)
    return LocalStorage(root)


class Lake:
    def __init__(self, root: Path | str, storage: Storage | None = None) -> None:
        self.storage = storage or open_storage(root)
        self.root = self.storage.root

    @property
    def url(self) -> str:
        """The root as a user writes it (``BTC_ASSETS_LAKE_URL``): a path or ``gs://…``."""
        return self.storage.url

    # ------------------------------------------------------------------ layout

    def day_dir(self, table: str, symbol: str, day: date) -> Location:
        return self.storage.join(
            self.root, table, symbol, f"y={day.year:04d}", f"m={day.month:02d}", f"d={day.day:02d}"
        )

    def day_file(self, table: str, symbol: str, day: date) -> Location:
        """The file the day's manifest names (not verified); the legacy fixed name when the
        manifest is missing or unreadable, so messages can still point somewhere."""
        directory = self.day_dir(table, symbol, day)
        try:
            return self._manifest(directory)[0].path
        except LakeCorruptionError:
            return self.storage.join(directory, f"part-{day:%Y%m%d}.parquet")

    def tables(self) -> list[str]:
        return [t for t in self.storage.tables() if _visible(t) and t not in ARTIFACT_DIRS]

    def last_ts(self, table: str, symbol: str) -> datetime | None:
        """The newest ``ts`` of the newest day that verifies against its manifest (a corrupt
        day is not data); None when no day does."""
        for day in reversed(self.days_present(table, symbol)):
            read = self.read_days(table, symbol, [day])
            if day in read.committed:
                return read.frame.select(pl.col("ts").max()).collect().item()
        return None

    def days_present(self, table: str, symbol: str) -> list[date]:
        """Days with a manifest, committed or not (not verified: ``read_days`` does that)."""
        found = []
        for day_dir, has_manifest in self.storage.day_dirs(table, symbol):
            day = parse_day_dir(str(day_dir))
            if day is not None and has_manifest:
                found.append(day)
        return sorted(found)

    def missing_days(self, table: str, symbol: str, days: Iterable[date]) -> list[date]:
        wanted = set(days)
        if self.storage.remote and len(wanted) > _PROBES:  # one listing, not a request a day
            return sorted(wanted - set(self.days_present(table, symbol)))
        return sorted(d for d in wanted if not self._has_manifest(table, symbol, d))

    def _has_manifest(self, table: str, symbol: str, day: date) -> bool:
        return self.storage.exists(self.storage.join(self.day_dir(table, symbol, day), MANIFEST))

    def uncommitted_files(self, table: str, symbol: str) -> dict[date, list[Location]]:
        """Per day, files its manifest does not name: temp files of an interrupted write,
        a data file written but never committed, or a superseded version within its grace."""
        found: dict[date, list[Location]] = {}
        for day_dir, _ in self.storage.day_dirs(table, symbol):
            day = parse_day_dir(str(day_dir))
            if day is None:
                continue
            keep = self._committed_name(day_dir)
            extra = [
                self.storage.join(day_dir, f.name)
                for f in self.storage.files(day_dir)
                if f.name not in (MANIFEST, SUCCESS, keep)
            ]
            if extra:
                found[day] = extra
        return found

    # ------------------------------------------------------------------ write

    def write_day(
        self,
        table: str,
        symbol: str,
        day: date,
        df: pl.DataFrame,
        provenance: Mapping[str, Any] | None = None,
    ) -> DayWrite:
        """Replace day ``day`` of ``table``/``symbol`` with ``df``; the manifest is the commit.

        Order: the data goes to its content-addressed name (a new name: nothing a reader holds
        changes; locally through an fsynced temp file and a rename), the marker is made if the
        day has none, then the manifest naming the file is committed against the version read
        first (the commit), then superseded files past their grace are swept. A crash before
        the commit leaves the previous day committed and an unreferenced file that a later
        write removes; after it, the new day. A commit lost to another writer is re-tried on
        that writer's manifest (``COMMIT_ATTEMPTS``), so the day is one writer's whole.
        """
        validate_frame(table, symbol, day, df)
        data = df.sort("symbol", "ts", maintain_order=True)
        content = parquet_bytes(data)
        digest = hashlib.sha256(content).hexdigest()
        directory = self.day_dir(table, symbol, day)
        name = f"part-{day:%Y%m%d}-{digest[:_NAME_HASH]}.parquet"
        target = self.storage.put_data(directory, name, content, digest)
        written = DayWrite(target, data.height, len(content), digest, dict(provenance or {}))
        self.storage.ensure_marker(self.storage.join(directory, SUCCESS))
        previous = self._commit(table, symbol, day, directory, written)
        self._sweep(directory, keep={name, previous})
        return written

    def _commit(
        self, table: str, symbol: str, day: date, directory: Location, written: DayWrite
    ) -> str | None:
        """Commit ``written``'s manifest; the name of the file it replaced (None if none)."""
        manifest = self.storage.join(directory, MANIFEST)
        for attempt in range(COMMIT_ATTEMPTS):
            previous, version = self._current(directory)
            if previous is not None and previous != written.name:
                self.storage.mark_superseded(self.storage.join(directory, previous))
            try:
                self.storage.commit(manifest, manifest_text(written), version)
                return previous
            except LakeCommitConflict:
                log.info("%s %s %s: another writer committed first; retrying", table, symbol, day)
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # let the winner finish
        raise LakeCommitConflict(
            f"{table} {symbol} {day}: lost the commit race {COMMIT_ATTEMPTS} times in a row "
            f"({manifest}); another writer keeps rewriting this day. Nothing of this write is "
            "committed: the day is the other writer's, whole."
        )

    def _current(self, directory: Location) -> tuple[str | None, Version]:
        """The committed file's name and the manifest's version (None, None: no manifest).

        An unreadable manifest still has a version: a commit replaces it.
        """
        try:
            entry, version = self._manifest(directory)
            return self.storage.name(entry.path), version
        except LakeCorruptionError as exc:
            version = getattr(exc, "version", None)
            return None, version

    def _committed_name(self, directory: Location) -> str | None:
        try:
            return self.storage.name(self._manifest(directory)[0].path)
        except LakeCorruptionError:
            return None

    def _manifest(self, directory: Location) -> tuple[DayWrite, Version]:
        manifest = self.storage.join(directory, MANIFEST)
        try:
            text, version = self.storage.read_manifest(manifest)
        except FileNotFoundError:
            raise LakeCorruptionError(f"{manifest}: manifest missing in {directory}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LakeCorruptionError(f"{manifest}: unreadable manifest: {exc}") from exc
        try:
            return parse_manifest(text, manifest, directory, self.storage), version
        except LakeCorruptionError as exc:
            exc.version = version  # type: ignore[attr-defined]
            raise

    def _sweep(self, directory: Location, keep: set[str | None]) -> None:
        """Remove temp files of interrupted writes and superseded data files past their grace.

        Another writer's file of this very moment is younger than the grace: left alone.
        """
        cutoff = time.time() - SUPERSEDED_GRACE.total_seconds()
        for stored in self.storage.files(directory):
            if stored.name in (MANIFEST, SUCCESS) or stored.name in keep:
                continue
            if stored.since < cutoff:
                self.storage.delete(self.storage.join(directory, stored.name))

    # ------------------------------------------------------------------ verify

    def verify_day(self, table: str, symbol: str, day: date) -> DayWrite:
        """Check the committed file against its manifest: size, sha256, marker, footer.

        On GCS the content check is GCS's own md5 against the one recorded at upload, and
        the footer is not read (``gcs.py``): ``read_days`` hashes the bytes it downloads.
        """
        directory = self.day_dir(table, symbol, day)
        manifest = self.storage.join(directory, MANIFEST)
        expected, _ = self._manifest(directory)
        target = expected.path
        # On GCS verify_content's metadata read says it (one request fewer per day).
        if not self.storage.remote and not self.storage.exists(target):
            raise LakeCorruptionError(f"{target}: data file missing (listed in {manifest})")
        marker = self.storage.join(directory, SUCCESS)
        if not self.storage.exists(marker):
            raise LakeCorruptionError(f"{marker}: marker missing for {target}")
        self.storage.verify_content(target, expected.bytes, expected.sha256, LakeCorruptionError)
        if self.storage.remote:
            return expected
        try:
            rows = pq.read_metadata(target).num_rows
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise LakeCorruptionError(f"{target}: unreadable parquet: {exc}") from exc
        check_rows(target, expected.rows, rows)
        return expected

    # ------------------------------------------------------------------ read

    def read_days(
        self,
        table: str,
        symbol: str,
        days: Iterable[date],
        schema: Mapping[str, pl.DataType] | None = None,
    ) -> DayRead:
        """One lazy scan over the days of ``days`` that verify; the others, and why.

        Files are immutable, so the file verified is the file scanned, whatever a writer
        commits meanwhile. On GCS a day is verified by its metadata here and its bytes are
        downloaded and hashed when the scan is collected (``scan``). Pass ``schema`` to pin
        dtypes (and to get typed columns when no day is readable).
        """
        committed: dict[date, DayWrite] = {}
        errors: dict[date, str] = {}
        wanted = sorted(set(days))
        missing = self.missing_days(table, symbol, wanted)
        for day in (d for d in wanted if d not in set(missing)):
            try:
                committed[day] = self.verify_day(table, symbol, day)
            except LakeError as exc:
                errors[day] = str(exc)
        return DayRead(self.scan(committed.values(), schema), committed, errors, missing)

    def read_verified_bytes(self, written: DayWrite) -> bytes:
        """The bytes of a committed file, read once and checked against its manifest entry
        (size, sha256, footer row count): what is returned is what was hashed."""
        try:
            content = self.storage.read_bytes(written.path)
        except FileNotFoundError:
            raise LakeCorruptionError(f"{written.path}: data file missing") from None
        digest = hashlib.sha256(content).hexdigest()
        if len(content) != written.bytes or digest != written.sha256:
            raise LakeCorruptionError(
                f"{written.path}: sha256 mismatch, manifest says {written.sha256}, "
                f"the bytes read have {digest} ({len(content)} bytes)"
            )
        try:
            rows = pq.read_metadata(io.BytesIO(content)).num_rows
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise LakeCorruptionError(f"{written.path}: unreadable parquet: {exc}") from exc
        check_rows(written.path, written.rows, rows)
        return content

    @contextmanager
    def local_copy(self, written: DayWrite) -> Iterator[Path]:
        """A local file with the committed bytes of ``written``, for code that needs a path
        (the BigQuery load): the file itself locally; on GCS a verified download, removed
        afterwards."""
        if not self.storage.remote:
            yield Path(written.path)
            return
        with tempfile.TemporaryDirectory(prefix="btc-assets-lake-") as folder:
            copy = Path(folder) / written.name
            copy.write_bytes(self.read_verified_bytes(written))
            yield copy

    def scan(
        self, written: Iterable[DayWrite], schema: Mapping[str, pl.DataType] | None = None
    ) -> pl.LazyFrame:
        """One lazy scan over days ``read_days`` verified (their files never change).

        Locally Polars reads the files. On GCS the scan is deferred: collecting it downloads
        each day once and checks its sha256 against the manifest before Polars parses those
        very bytes; a mismatch then (an object replaced after its check) raises
        ``LakeCorruptionError`` naming it, never returns its rows. Without ``schema`` the
        GCS days are downloaded now, to learn it.
        """
        written = list(written)
        if not written:
            return pl.LazyFrame(schema=dict(schema or {}))
        pinned = dict(schema) if schema else None
        if not self.storage.remote:
            # Hive columns (y, m, d) would be inferred from the directory names otherwise.
            paths = [str(w.path) for w in written]
            return pl.scan_parquet(paths, schema=pinned, hive_partitioning=False)

        def download() -> pl.DataFrame:
            contents = [io.BytesIO(self.read_verified_bytes(w)) for w in written]
            return pl.scan_parquet(contents, schema=pinned).collect()

        if pinned is None:
            return download().lazy()
        return pl.defer(download, schema=pinned)

    def fingerprint(self, location: Location) -> Hashable | None:
        """What changes whenever the stored file at ``location`` does (None: absent), cheap
        enough to ask on every request: a stat locally, a metadata read on GCS."""
        return self.storage.fingerprint(location)

    def register_duckdb(self, connection: Any) -> None:
        """Let ``connection`` read this lake's files by the paths ``DayWrite`` names (a
        no-op locally; the gcsfs session for ``gs://``)."""
        register = getattr(self.storage, "register_duckdb", None)
        if register is not None:
            register(connection)


# ---------------------------------------------------------------------- helpers


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))
