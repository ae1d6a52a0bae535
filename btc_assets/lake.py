"""The partitioned Parquet lake: the only module that knows the on-disk layout.

    <root>/<table>/<symbol>/y=YYYY/m=MM/d=DD/part-YYYYMMDD.parquet
                                             MANIFEST.tsv   (file, rows, bytes, sha256)
                                             _SUCCESS       (empty marker)

One file per UTC partition day D, holding rows with ``ts`` in ``(D 00:00, D+1 00:00]``.
Writes are atomic per file (temp name in the same directory, fsync, ``os.replace``) and
deterministic: the same frame always yields the same bytes, so re-runs are byte-identical and
the manifest's sha256 doubles as a content fingerprint. An empty frame is a legal day: the file
holds 0 rows and keeps the frame's schema, which distinguishes "fetched, nothing there" from
"never fetched" (no file).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

from btc_assets.core.schema import TS, day_bounds

MANIFEST = "MANIFEST.tsv"
SUCCESS = "_SUCCESS"
MANIFEST_HEADER = ("file", "rows", "bytes", "sha256")
_HASH_CHUNK = 1 << 20


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


class LakeError(RuntimeError):
    """A write or read of the lake was refused."""


class LakeCorruptionError(LakeError):
    """A stored day does not match its manifest, or part of it is missing or unreadable."""


@dataclass(frozen=True)
class DayWrite:
    path: Path
    rows: int
    bytes: int
    sha256: str


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
        return self.day_dir(table, symbol, day) / f"part-{day:%Y%m%d}.parquet"

    def tables(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _visible(p))

    def last_ts(self, table: str, symbol: str) -> datetime | None:
        """The newest ``ts`` of the newest day that verifies against its manifest (a corrupt
        day is not data); None when no day does."""
        for day in reversed(self.days_present(table, symbol)):
            if self.is_complete(table, symbol, day):
                return (
                    pl.scan_parquet(self.day_file(table, symbol, day))
                    .select(pl.col("ts").max())
                    .collect()
                    .item()
                )
        return None

    def days_present(self, table: str, symbol: str) -> list[date]:
        """Days whose data file and ``_SUCCESS`` marker exist (not verified: see is_complete)."""
        found = []
        for day_dir in (self.root / table / symbol).glob("y=*/m=*/d=*"):
            day = _parse_day_dir(day_dir)
            if day is not None and self._looks_present(table, symbol, day):
                found.append(day)
        return sorted(found)

    def missing_days(self, table: str, symbol: str, days: Iterable[date]) -> list[date]:
        return sorted(d for d in set(days) if not self._looks_present(table, symbol, d))

    def _looks_present(self, table: str, symbol: str, day: date) -> bool:
        return (
            self.day_file(table, symbol, day).is_file()
            and (self.day_dir(table, symbol, day) / SUCCESS).is_file()
        )

    # ------------------------------------------------------------------ write

    def write_day(self, table: str, symbol: str, day: date, df: pl.DataFrame) -> DayWrite:
        """Replace day ``day`` of ``table``/``symbol`` with ``df``, atomically per file.

        Order: data and manifest are both written to temp files and fsynced first, then data
        is renamed, then the manifest, then the marker is created. A failure before the data
        rename leaves the previous day untouched; a crash between the two renames leaves a
        manifest that no longer matches, which ``verify_day`` reports.
        """
        _validate(table, symbol, day, df)
        data = df.sort("symbol", "ts", maintain_order=True)
        directory = self.day_dir(table, symbol, day)
        directory.mkdir(parents=True, exist_ok=True)
        target = self.day_file(table, symbol, day)
        temps: list[Path] = []
        try:
            data_tmp = _temp_path(directory, target.name)
            temps.append(data_tmp)
            with data_tmp.open("wb") as fh:
                _write_parquet(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            size, digest = data_tmp.stat().st_size, _sha256(data_tmp)
            written = DayWrite(target, data.height, size, digest)
            manifest_tmp = _temp_path(directory, MANIFEST)
            temps.append(manifest_tmp)
            _write_synced(manifest_tmp, _manifest_text(written))
            os.replace(data_tmp, target)
            os.replace(manifest_tmp, directory / MANIFEST)
            (directory / SUCCESS).touch()
            _fsync_dir(directory)
        finally:
            for tmp in temps:
                with suppress(FileNotFoundError):
                    tmp.unlink()
        return written

    # ------------------------------------------------------------------ verify

    def verify_day(self, table: str, symbol: str, day: date) -> DayWrite:
        """Check the day's file against its manifest: size, sha256, marker, readable footer."""
        directory = self.day_dir(table, symbol, day)
        target = self.day_file(table, symbol, day)
        manifest = directory / MANIFEST
        expected = _read_manifest(manifest, target)
        if not target.is_file():
            raise LakeCorruptionError(f"{target}: data file missing (listed in {manifest})")
        if not (directory / SUCCESS).is_file():
            raise LakeCorruptionError(f"{directory / SUCCESS}: marker missing for {target}")
        size = target.stat().st_size
        if size != expected.bytes:
            raise LakeCorruptionError(
                f"{target}: size mismatch, manifest says {expected.bytes} bytes, file has {size}"
            )
        digest = _sha256(target)
        if digest != expected.sha256:
            raise LakeCorruptionError(
                f"{target}: sha256 mismatch, manifest says {expected.sha256}, file has {digest}"
            )
        try:
            rows = pq.read_metadata(target).num_rows
        except Exception as exc:  # pyarrow raises several types for a bad footer
            raise LakeCorruptionError(f"{target}: unreadable parquet: {exc}") from exc
        if rows != expected.rows:
            raise LakeCorruptionError(
                f"{target}: row count mismatch, manifest says {expected.rows}, file has {rows}"
            )
        return expected

    def verify_days(self, table: str, symbol: str, days: Iterable[date]) -> dict[date, str | None]:
        """Each day's verification against its MANIFEST: None, or what is wrong and where."""
        errors: dict[date, str | None] = {}
        for day in days:
            try:
                self.verify_day(table, symbol, day)
                errors[day] = None
            except LakeError as exc:
                errors[day] = str(exc)
        return errors

    def is_complete(self, table: str, symbol: str, day: date) -> bool:
        try:
            self.verify_day(table, symbol, day)
        except LakeCorruptionError:
            return False
        return True

    # ------------------------------------------------------------------ read

    def scan_days(
        self,
        table: str,
        symbol: str,
        days: Iterable[date],
        schema: dict[str, pl.DataType] | None = None,
    ) -> pl.LazyFrame:
        """One lazy scan over the present files of ``days``; missing days are simply absent.

        Pass ``schema`` to pin dtypes (and to get typed columns when no day is present).
        """
        wanted = sorted(set(days))
        files = [
            str(self.day_file(table, symbol, d))
            for d in wanted
            if self._looks_present(table, symbol, d)
        ]
        if not files:
            return pl.LazyFrame(schema=schema or {})
        # Hive columns (y, m, d) would be inferred from the directory names otherwise.
        return pl.scan_parquet(files, schema=schema, hive_partitioning=False)


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
    outside = df.filter(ts.is_null() | (ts <= start) | (ts > end))
    if not outside.is_empty():
        sample = ", ".join(str(t) for t in outside["ts"].head(3).to_list())
        raise LakeError(
            f"{table} {day}: {outside.height} row(s) with ts outside ({start}, {end}], "
            f"e.g. ts {sample}"
        )
    wrong = df.filter(pl.col("symbol").is_null() | (pl.col("symbol") != symbol))
    if not wrong.is_empty():
        first = wrong.row(0, named=True)
        raise LakeError(
            f"{table} {day}: {wrong.height} row(s) with symbol != {symbol!r}, "
            f"e.g. symbol={first['symbol']!r} at ts {first['ts']}"
        )


def _temp_path(directory: Path, name: str) -> Path:
    # A dot prefix and .tmp suffix keep half-written files out of every glob and scan. Not
    # tempfile.mkstemp: its 0600 mode would survive the rename and lock out other readers.
    path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return path


def _write_synced(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(directory: Path) -> None:
    # Makes the renames durable; not every platform can open a directory, hence best effort.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _manifest_text(entry: DayWrite) -> str:
    row = (entry.path.name, str(entry.rows), str(entry.bytes), entry.sha256)
    return "\t".join(MANIFEST_HEADER) + "\n" + "\t".join(row) + "\n"


def _read_manifest(manifest: Path, target: Path) -> DayWrite:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LakeCorruptionError(f"{manifest}: manifest missing for {target}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LakeCorruptionError(f"{manifest}: unreadable manifest: {exc}") from exc
    if not lines or tuple(lines[0].split("\t")) != MANIFEST_HEADER:
        raise LakeCorruptionError(f"{manifest}: bad header, expected {MANIFEST_HEADER}")
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == target.name:
            try:
                return DayWrite(target, int(fields[1]), int(fields[2]), fields[3])
            except ValueError as exc:
                raise LakeCorruptionError(f"{manifest}: bad row {line!r}") from exc
    raise LakeCorruptionError(f"{manifest}: no entry for {target.name} (file {target})")


def _sha256(path: Path) -> str:
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
