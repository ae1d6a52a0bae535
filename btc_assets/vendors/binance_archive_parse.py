"""data.binance.vision files → typed Polars columns: checksum, unzip, CSV (no HTTP here).

Every failure raises :class:`ArchiveIntegrityError` naming the file's URL and what was wrong
(expected and actual sha256, the zip error, the CSV line Polars choked on), so a caller
writes nothing from a file that does not verify.

CSV quirks handled per file, never assumed per dataset: a header row or not (the first
field of the first line is not a number), times in ms or µs (a value above 1e14 is µs, per
value), funding calc times a few ms past the settlement, metrics ``create_time`` as text
(``YYYY-MM-DD HH:MM:SS``) or as epoch ms.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib

import polars as pl

from btc_assets.vendors.errors import VendorResponseError

VENDOR = "binance-archive"
_MICROS = 100_000_000_000_000  # above this a time is µs (ms stays below until year 5138)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
KLINE_COLUMNS: dict[str, pl.DataType] = {
    "open_ms": pl.Int64(), "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(),
    "close": pl.Float64(), "volume": pl.Float64(), "close_ms": pl.Int64(),
    "quote_volume": pl.Float64(), "trades": pl.Int64(), "taker_buy_volume": pl.Float64(),
    "taker_buy_quote_volume": pl.Float64(), "ignore": pl.String(),
}  # fmt: skip
FUNDING_COLUMNS: dict[str, pl.DataType] = {
    "time_ms": pl.Int64(), "interval_hours": pl.Int64(), "funding_rate": pl.Float64(),
}  # fmt: skip
METRIC_VALUES = (
    "sum_open_interest", "sum_open_interest_value", "count_toptrader_long_short_ratio",
    "sum_toptrader_long_short_ratio", "count_long_short_ratio", "sum_taker_long_short_vol_ratio",
)  # fmt: skip
METRICS_COLUMNS: dict[str, pl.DataType] = {
    "create_time": pl.String(), "file_symbol": pl.String(),
    **{name: pl.Float64() for name in METRIC_VALUES},
}  # fmt: skip


class ArchiveIntegrityError(VendorResponseError):
    """An archive file that does not verify: its sha256 is not the one its ``.CHECKSUM``
    names, it is not a readable zip, or its CSV does not parse. Nothing from it is usable."""


def integrity_error(url: str, message: str) -> ArchiveIntegrityError:
    return ArchiveIntegrityError(VENDOR, url, None, status=200, message=message)


def parse_checksum(text: bytes, url: str, name: str) -> str:
    """The lower-case sha256 a ``.CHECKSUM`` file names for the zip ``name``
    (``<64 hex>  <name>``, the ``sha256sum`` format)."""
    tokens = text.decode("utf-8", "replace").split()
    if len(tokens) != 2 or not _SHA256.fullmatch(tokens[0]):
        raise integrity_error(url, f"not a sha256sum line: {text[:120]!r}")
    if tokens[1].lstrip("*") != name:
        raise integrity_error(url, f"the checksum is for {tokens[1]!r}, not {name!r}")
    return tokens[0].lower()


def verify_sha256(content: bytes, expected: str, url: str) -> str:
    """The zip's sha256, if it is the one expected; else an error naming both."""
    got = hashlib.sha256(content).hexdigest()
    if got != expected:
        raise integrity_error(
            url,
            f"sha256 mismatch: its .CHECKSUM says {expected}, the {len(content)}-byte zip "
            f"hashes to {got} (corrupt download, or the file was replaced in between)",
        )
    return got


def unzip_csv(content: bytes, url: str) -> bytes:
    """The one CSV member of an archive zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if len(members) != 1:
                raise integrity_error(
                    url, f"expected one CSV in the zip, found {archive.namelist()}"
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise integrity_error(url, f"not a readable zip ({type(exc).__name__}: {exc})") from None


def has_header(csv: bytes) -> bool:
    """Whether the first line is a header: its first field does not start with a digit."""
    first = csv.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    return bool(first) and not first.isdigit()


def _read(csv: bytes, url: str, columns: dict[str, pl.DataType]) -> pl.DataFrame:
    body = csv.removeprefix(b"\xef\xbb\xbf")
    if not body.strip():
        return pl.DataFrame(schema=columns)
    try:
        frame = pl.read_csv(
            body, has_header=False, skip_rows=1 if has_header(body) else 0, schema=columns,
            truncate_ragged_lines=False,
        )  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        detail = str(exc).strip().splitlines()[0][:300]
        raise integrity_error(url, f"unparseable CSV: {detail}") from None
    required = [c for c in columns if c != "ignore"]
    nulls = {c: n for c, n in frame.select(required).null_count().row(0, named=True).items() if n}
    if nulls:
        raise integrity_error(url, f"CSV fields missing or empty (column: rows): {nulls}")
    return frame


def _ms(name: str) -> pl.Expr:
    col = pl.col(name)
    return pl.when(col > _MICROS).then(col // 1000).otherwise(col).alias(name)


def parse_kline_csv(csv: bytes, url: str, step_ms: int) -> pl.DataFrame:
    """Kline rows → ``ts`` (close label: open + one interval, ms UTC) and the value columns
    of ``KLINE_SCHEMA`` (no symbol). A close time that is not open + interval - 1 ms (a
    unit mix-up, a wrong interval) raises."""
    frame = _read(csv, url, KLINE_COLUMNS).with_columns(_ms("open_ms"), _ms("close_ms"))
    off = frame.filter(pl.col("close_ms") != pl.col("open_ms") + step_ms - 1)
    if off.height:
        first = off.row(0, named=True)
        raise integrity_error(
            url,
            f"{off.height} rows whose close_time is not open_time + {step_ms} ms - 1 "
            f"(first: open {first['open_ms']}, close {first['close_ms']})",
        )
    ts = (pl.col("open_ms") + step_ms).cast(pl.Datetime("ms", "UTC")).alias("ts")
    return frame.select(ts, *[c for c in KLINE_COLUMNS if c not in ("open_ms", "close_ms",
                                                                   "ignore")])  # fmt: skip


def parse_funding_csv(csv: bytes, url: str) -> pl.DataFrame:
    """fundingRate rows → ``ts`` (calc time rounded to the minute, as the REST path does),
    ``funding_rate`` and ``interval_hours``."""
    minute = 60_000
    frame = _read(csv, url, FUNDING_COLUMNS).with_columns(_ms("time_ms"))
    ts = ((pl.col("time_ms") + minute // 2) // minute * minute).cast(pl.Datetime("ms", "UTC"))
    return frame.select(ts.alias("ts"), "funding_rate", "interval_hours")


def parse_metrics_csv(csv: bytes, url: str) -> pl.DataFrame:
    """metrics rows → ``ts`` (= create_time, ms UTC) and the six value columns."""
    frame = _read(csv, url, METRICS_COLUMNS)
    text = pl.col("create_time").str.strip_chars()
    as_text = text.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="ms", time_zone="UTC",
                                   strict=False)  # fmt: skip
    as_number = text.cast(pl.Int64, strict=False)
    as_number = pl.when(as_number > _MICROS).then(as_number // 1000).otherwise(as_number)
    ts = pl.when(text.str.contains(r"^\d+$")).then(as_number.cast(pl.Datetime("ms", "UTC")))
    frame = frame.with_columns(ts.otherwise(as_text).alias("ts"))
    bad = frame.filter(pl.col("ts").is_null())
    if bad.height:
        raise integrity_error(
            url, f"{bad.height} create_time values are neither a date-time nor epoch ms "
            f"(first: {bad['create_time'][0]!r})",
        )  # fmt: skip
    return frame.select("ts", *METRIC_VALUES)
