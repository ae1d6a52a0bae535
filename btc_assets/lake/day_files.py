"""What a lake day is made of, whatever stores it: the Parquet bytes (fixed writer options),
the manifest's text, and the checks on a frame before it may become a day."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, BinaryIO

import polars as pl
import pyarrow.parquet as pq

from btc_assets.core.schema import TS, day_bounds
from btc_assets.lake.storage import LakeCorruptionError, LakeError, Location, Storage

MANIFEST = "MANIFEST.tsv"
SUCCESS = "_SUCCESS"
MANIFEST_HEADER = ("file", "rows", "bytes", "sha256", "provenance")
# Days written before provenance was recorded have the first four columns only.
LEGACY_MANIFEST_HEADER = MANIFEST_HEADER[:4]


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


@dataclass(frozen=True)
class DayWrite:
    """A committed day: its file, as its manifest describes it, and its provenance.

    ``path`` is a ``Path`` in a local lake and a ``gs://`` URL string on GCS.
    """

    path: Location
    rows: int
    bytes: int
    sha256: str
    provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return str(self.path).rsplit("/", 1)[-1]


def check_rows(target: Location, expected: int, rows: int) -> None:
    if rows != expected:
        raise LakeCorruptionError(
            f"{target}: row count mismatch, manifest says {expected}, file has {rows}"
        )


def validate_frame(table: str, symbol: str, day: date, df: pl.DataFrame) -> None:
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


def manifest_text(entry: DayWrite) -> str:
    provenance = json.dumps(dict(entry.provenance), sort_keys=True, separators=(",", ":"))
    row = (entry.name, str(entry.rows), str(entry.bytes), entry.sha256, provenance)
    return "\t".join(MANIFEST_HEADER) + "\n" + "\t".join(row) + "\n"


def parse_manifest(
    text: str, manifest: Location, directory: Location, storage: Storage
) -> DayWrite:
    lines = text.splitlines()
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
        return DayWrite(storage.join(directory, fields[0]), int(fields[1]), int(fields[2]),
                        fields[3], provenance)  # fmt: skip
    except ValueError as exc:
        raise LakeCorruptionError(f"{manifest}: bad row {lines[1]!r}: {exc}") from exc


def parse_day_dir(path: str) -> date | None:
    try:
        year_part, month_part, day_part = path.rstrip("/").rsplit("/", 3)[1:]
        year = int(year_part.removeprefix("y="))
        month = int(month_part.removeprefix("m="))
        return date(year, month, int(day_part.removeprefix("d=")))
    except ValueError:
        return None
