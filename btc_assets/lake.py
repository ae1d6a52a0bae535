"""The partitioned Parquet lake: the only module that knows the on-disk layout.

    <root>/<table>/<symbol>/y=YYYY/m=MM/d=DD/part-YYYYMMDD-<sha256[:16]>.parquet
                                             MANIFEST.tsv   (file, rows, bytes, sha256,
                                                             provenance)
                                             _SUCCESS       (empty marker)

One committed file per UTC partition day D, holding rows with ``ts`` in
``(D 00:00, D+1 00:00]``. The MANIFEST is the commit: a day is whatever file its manifest
names, and the manifest is replaced by one atomic rename. Data files are immutable and named
after their content, so a new version never overwrites the file a reader may be reading, and
no reader can pair a file with a manifest of another write: a crash at any point leaves the
previous day or the new one. A superseded file stays for ``SUPERSEDED_GRACE`` (a DuckDB view
or a long read may still hold its path), then the next write of that day removes it, with
any temp file of an interrupted write; ``uncommitted_files`` lists both for ``verify``.

Writes are deterministic: the same frame always yields the same bytes (and so the same
name), so re-runs are byte-identical. The only read is ``read_days``, which verifies every
day against its manifest first: a day that does not verify is reported, never returned.
Each manifest also carries the day's provenance (a JSON object the writer supplies: env,
vendor host, endpoint, fetch time, closed or partial...), committed with the data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pyarrow.parquet as pq

from btc_assets.core.schema import TS, day_bounds

MANIFEST = "MANIFEST.tsv"
SUCCESS = "_SUCCESS"
MANIFEST_HEADER = ("file", "rows", "bytes", "sha256", "provenance")
# Days written before provenance was recorded have the first four columns only.
LEGACY_MANIFEST_HEADER = MANIFEST_HEADER[:4]
SUPERSEDED_GRACE = timedelta(hours=6)
# Folders of the lake root that hold versioned artifacts (``artifacts.py``), not day tables.
ARTIFACT_DIRS = ("datasets", "models")
_HASH_CHUNK = 1 << 20
_NAME_HASH = 16


def _write_parquet(df: pl.DataFrame, sink: BinaryIO) -> None:
    """Fixed writer options, so equal frames give equal bytes.

    pyarrow rather than Polars' writer because it exposes every knob the contract names
    (dictionary, statistics, level); neither writes timestamps. The footer records the pyarrow
    version (``created_by``), so upgrading pyarrow changes the bytes, not the data, of days
    written afterwards.
    """
    pq.write_table(
        df.to_arrow(),
        sink,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
        row_group_size=1 << 20,
    )


def parquet_bytes(df: pl.DataFrame) -> bytes:
    """``df`` as Parquet with the lake's fixed writer options (equal frames, equal bytes)."""
    sink = io.BytesIO()
    _write_parquet(df, sink)
    return sink.getvalue()


class LakeError(RuntimeError):
    """A write or read of the lake was refused."""


class LakeCorruptionError(LakeError):
    """A stored day does not match its manifest, or part of it is missing or unreadable."""


@dataclass(frozen=True)
class DayWrite:
    """A committed day: its file, as its manifest describes it, and its provenance."""

    path: Path
    rows: int
    bytes: int
    sha256: str
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class DayRead:
    """What ``read_days`` found: a scan of the verified days only, and why the rest are out.

    ``errors`` holds days that exist but do not verify; ``missing`` days never committed.
    """

    frame: pl.LazyFrame
    committed: dict[date, DayWrite]
    errors: dict[date, str]
    missing: list[date]


class Lake:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ layout

    def day_dir(self, table: str, symbol: str, day: date) -> Path:
        return (
            self.root
            / table
            / symbol
            / f"y={day.year:04d}"
            / f"m={day.month:02d}"
            / f"d={day.day:02d}"
        )

    def day_file(self, table: str, symbol: str, day: date) -> Path:
        """The file the day's manifest names (not verified); the legacy fixed name when the
        manifest is missing or unreadable, so messages can still point somewhere."""
        directory = self.day_dir(table, symbol, day)
        try:
            return _read_manifest(directory / MANIFEST, directory).path
        except LakeCorruptionError:
            return directory / f"part-{day:%Y%m%d}.parquet"

    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _visible(p) and p.name not in ARTIFACT_DIRS
        )

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
        for day_dir in (self.root / table / symbol).glob("y=*/m=*/d=*"):
            day = _parse_day_dir(day_dir)
            if day is not None and (day_dir / MANIFEST).is_file():
                found.append(day)
        return sorted(found)

    def missing_days(self, table: str, symbol: str, days: Iterable[date]) -> list[date]:
        return sorted(
            d for d in set(days) if not (self.day_dir(table, symbol, d) / MANIFEST).is_file()
        )

    def uncommitted_files(self, table: str, symbol: str) -> dict[date, list[Path]]:
        """Per day, files its manifest does not name: temp files of an interrupted write,
        a data file written but never committed, or a superseded version within its grace."""
        found: dict[date, list[Path]] = {}
        for day_dir in sorted((self.root / table / symbol).glob("y=*/m=*/d=*")):
            day = _parse_day_dir(day_dir)
            if day is None:
                continue
            keep = self._committed_name(day_dir)
            extra = [
                p for p in sorted(day_dir.iterdir()) if p.name not in (MANIFEST, SUCCESS, keep)
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

        Order: the data goes to a temp file, is fsynced and renamed to its content-addressed
        name (a new name: nothing a reader holds changes), then the manifest naming it goes
        to a temp file, is fsynced and renamed over the old one (the commit), then the marker
        and a directory fsync. A crash before the manifest rename leaves the previous day
        committed and an unreferenced file that the next write removes; after it, the new day.
        """
        _validate(table, symbol, day, df)
        data = df.sort("symbol", "ts", maintain_order=True)
        directory = self.day_dir(table, symbol, day)
        directory.mkdir(parents=True, exist_ok=True)
        temps: list[Path] = []
        try:
            data_tmp, fd = _create_temp(directory, f"part-{day:%Y%m%d}.parquet")
            temps.append(data_tmp)
            with os.fdopen(fd, "wb") as fh:
                _write_parquet(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            size, digest = data_tmp.stat().st_size, sha256_file(data_tmp)
            target = directory / f"part-{day:%Y%m%d}-{digest[:_NAME_HASH]}.parquet"
            os.replace(data_tmp, target)  # same bytes if it existed: the name is the content
            written = DayWrite(target, data.height, size, digest, dict(provenance or {}))
            previous = self._committed_name(directory)
            manifest_tmp, fd = _create_temp(directory, MANIFEST)
            temps.append(manifest_tmp)
            _write_synced(fd, _manifest_text(written))
            if previous is not None and previous != target.name:
                # Its grace period counts from now, when it stops being the day.
                with suppress(FileNotFoundError):
                    os.utime(directory / previous)
            os.replace(manifest_tmp, directory / MANIFEST)
            (directory / SUCCESS).touch()
            fsync_dir(directory)
        finally:
            for tmp in temps:
                with suppress(FileNotFoundError):
                    tmp.unlink()
        _sweep(directory, keep=target.name)
        return written

    def _committed_name(self, directory: Path) -> str | None:
        try:
            return _read_manifest(directory / MANIFEST, directory).path.name
        except LakeCorruptionError:
            return None

    # ------------------------------------------------------------------ verify

    def verify_day(self, table: str, symbol: str, day: date) -> DayWrite:
        """Check the committed file against its manifest: size, sha256, marker, footer."""
        directory = self.day_dir(table, symbol, day)
        manifest = directory / MANIFEST
        expected = _read_manifest(manifest, directory)
        target = expected.path
        if not target.is_file():
            raise LakeCorruptionError(f"{target}: data file missing (listed in {manifest})")
        if not (directory / SUCCESS).is_file():
            raise LakeCorruptionError(f"{directory / SUCCESS}: marker missing for {target}")
        verify_content(target, expected.bytes, expected.sha256)
        try:
            rows = pq.read_metadata(target).num_rows
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise LakeCorruptionError(f"{target}: unreadable parquet: {exc}") from exc
        if rows != expected.rows:
            raise LakeCorruptionError(
                f"{target}: row count mismatch, manifest says {expected.rows}, file has {rows}"
            )
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
        commits meanwhile. Pass ``schema`` to pin dtypes (and to get typed columns when no
        day is readable).
        """
        committed: dict[date, DayWrite] = {}
        errors: dict[date, str] = {}
        missing: list[date] = []
        for day in sorted(set(days)):
            if not (self.day_dir(table, symbol, day) / MANIFEST).is_file():
                missing.append(day)
                continue
            try:
                committed[day] = self.verify_day(table, symbol, day)
            except LakeError as exc:
                errors[day] = str(exc)
        return DayRead(self.scan(committed.values(), schema), committed, errors, missing)

    @staticmethod
    def scan(
        written: Iterable[DayWrite], schema: Mapping[str, pl.DataType] | None = None
    ) -> pl.LazyFrame:
        """One lazy scan over days ``read_days`` verified (their files never change)."""
        paths = [str(w.path) for w in written]
        if not paths:
            return pl.LazyFrame(schema=dict(schema or {}))
        # Hive columns (y, m, d) would be inferred from the directory names otherwise.
        return pl.scan_parquet(
            paths, schema=dict(schema) if schema else None, hive_partitioning=False
        )


# ---------------------------------------------------------------------- helpers


def _validate(table: str, symbol: str, day: date, df: pl.DataFrame) -> None:
    missing = [c for c in ("symbol", "ts") if c not in df.columns]
    if missing:
        raise LakeError(f"{table} {day}: frame lacks key columns {missing}; has {df.columns}")
    if df.schema["ts"] != TS:
        raise LakeError(f"{table} {day}: ts must be {TS}, got {df.schema['ts']}")
    if df.is_empty():
        return
    start, end = day_bounds(day)
    ts = pl.col("ts")
    # min/max first: a filter builds datetime literals, which costs more than the write.
    stamps = df["ts"]
    if stamps.null_count() or stamps.min() <= start or stamps.max() > end:  # type: ignore[operator]
        outside = df.filter(ts.is_null() | (ts <= start) | (ts > end))
        sample = ", ".join(str(t) for t in outside["ts"].head(3).to_list())
        raise LakeError(
            f"{table} {day}: {outside.height} row(s) with ts outside ({start}, {end}], "
            f"e.g. ts {sample}"
        )
    names = df["symbol"]
    if names.null_count() or names.n_unique() != 1 or names[0] != symbol:
        wrong = df.filter(pl.col("symbol").is_null() | (pl.col("symbol") != symbol))
        first = wrong.row(0, named=True)
        raise LakeError(
            f"{table} {day}: {wrong.height} row(s) with symbol != {symbol!r}, "
            f"e.g. symbol={first['symbol']!r} at ts {first['ts']}"
        )


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


def fsync_dir(directory: Path) -> None:
    # Makes the renames durable; not every platform can open a directory, hence best effort.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _manifest_text(entry: DayWrite) -> str:
    provenance = json.dumps(dict(entry.provenance), sort_keys=True, separators=(",", ":"))
    row = (entry.path.name, str(entry.rows), str(entry.bytes), entry.sha256, provenance)
    return "\t".join(MANIFEST_HEADER) + "\n" + "\t".join(row) + "\n"


def _read_manifest(manifest: Path, directory: Path) -> DayWrite:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LakeCorruptionError(f"{manifest}: manifest missing in {directory}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LakeCorruptionError(f"{manifest}: unreadable manifest: {exc}") from exc
    header = tuple(lines[0].split("\t")) if lines else ()
    if header not in (MANIFEST_HEADER, LEGACY_MANIFEST_HEADER):
        raise LakeCorruptionError(f"{manifest}: bad header, expected {MANIFEST_HEADER}")
    if len(lines) != 2:
        raise LakeCorruptionError(f"{manifest}: expected one file entry, found {len(lines) - 1}")
    fields = lines[1].split("\t")
    if len(fields) != len(header) or not fields[0].endswith(".parquet") or "/" in fields[0]:
        raise LakeCorruptionError(f"{manifest}: bad row {lines[1]!r}")
    try:
        provenance = json.loads(fields[4]) if len(fields) > 4 else {}
        if not isinstance(provenance, dict):
            raise ValueError("provenance is not an object")
        return DayWrite(directory / fields[0], int(fields[1]), int(fields[2]), fields[3],
                        provenance)  # fmt: skip
    except ValueError as exc:
        raise LakeCorruptionError(f"{manifest}: bad row {lines[1]!r}: {exc}") from exc


def _sweep(directory: Path, keep: str) -> None:
    """Remove temp files of interrupted writes and superseded data files past their grace.

    Another writer's temp file of this very moment is younger than the grace: left alone.
    """
    cutoff = time.time() - SUPERSEDED_GRACE.total_seconds()
    for path in directory.iterdir():
        if path.name in (MANIFEST, SUCCESS, keep):
            continue
        with suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_day_dir(path: Path) -> date | None:
    try:
        year = int(path.parent.parent.name.removeprefix("y="))
        month = int(path.parent.name.removeprefix("m="))
        return date(year, month, int(path.name.removeprefix("d=")))
    except ValueError:
        return None


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))
