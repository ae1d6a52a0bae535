"""CoinGlass history rows → typed Polars columns (no HTTP here).

CoinGlass serves numbers as JSON numbers or numeric strings, and ``time`` in ms (seconds
or µs on some endpoints). A row that lost a field raises :class:`VendorResponseError`
naming the endpoint, the row and the key.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import polars as pl

from btc_assets.vendors.errors import VendorResponseError

VENDOR = "coinglass"
_SECONDS, _MICROS = 100_000_000_000, 100_000_000_000_000  # ms lies between (1973..5138)


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def _number(value: Any, endpoint: str, key: str, row: int) -> float | None:
    """A JSON number or numeric string (CoinGlass serves both); ``null``/``""`` → null."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):  # "abc" stays NaN: refused below
            number = float(value)
    if not math.isfinite(number):
        raise _bad(endpoint, f"row {row} field {key!r} is not a number: {value!r}")
    return number


def _time_ms(value: Any, endpoint: str, row: int) -> int:
    """``time`` in ms; seconds or µs (both seen on other CoinGlass endpoints) are converted."""
    number = _number(value, endpoint, "time", row)
    if number is None or number != int(number):
        raise _bad(endpoint, f"row {row} field 'time' is not a whole timestamp: {value!r}")
    ms = int(number)
    return ms * 1000 if ms < _SECONDS else ms // 1000 if ms > _MICROS else ms


def parse_rows(rows: Any, endpoint: str, fields: Mapping[str, str]) -> pl.DataFrame:
    """CoinGlass history rows → ``time_ms`` (Int64) and ``fields`` (JSON key → column, Float64).

    Extra keys are ignored (schema drift that adds fields); a missing ``time`` or field
    raises :class:`VendorResponseError` naming the endpoint, the row and the key.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"'data' is a {type(rows).__name__}, expected a list of rows")
    times: list[int] = []
    columns: dict[str, list[float | None]] = {col: [] for col in fields.values()}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _bad(endpoint, f"row {i} is not an object: {str(row)[:100]}")
        missing = [k for k in ("time", *fields) if k not in row]
        if missing:
            raise _bad(endpoint, f"row {i} lacks required key(s) {missing}; has {sorted(row)}")
        times.append(_time_ms(row["time"], endpoint, i))
        for key, col in fields.items():
            columns[col].append(_number(row[key], endpoint, key, i))
    schema = {"time_ms": pl.Int64, **{col: pl.Float64 for col in columns}}
    return pl.DataFrame({"time_ms": times, **columns}, schema=schema)
