"""CoinAPI rows → typed Polars frames (no HTTP here).

CoinAPI writes times as ISO-8601 with seven fractional digits (100 ns ticks) and ``Z``:
``2024-01-02T01:00:00.0000000Z``. They are parsed with integer arithmetic, never through a
float (a float of epoch seconds holds ~15 digits: 100 ns ticks would round), and a bar is
labelled by ``time_period_end``, its close (the project's right-closed convention).
Numbers are JSON numbers; a numeric string is accepted too (the reference's general rule).
A row that lost a field or carries a wrong value raises :class:`VendorResponseError` naming
the endpoint, the row and the key.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import polars as pl

from btc_assets.core.schema import TS
from btc_assets.vendors.errors import VendorResponseError

VENDOR = "coinapi"
TICKS_PER_SECOND = 10_000_000  # one tick = 100 ns, CoinAPI's seventh fractional digit
TICKS_PER_MS = 10_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:?00)")
OHLCV_FIELDS = {
    "price_open": "open", "price_high": "high", "price_low": "low", "price_close": "close",
    "volume_traded": "volume",
}  # fmt: skip
METRIC_FIELDS = {"first": "first", "last": "last", "min": "min", "max": "max", "sum": "sum"}


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def iso_ticks(text: str) -> int:
    """Epoch time in 100 ns ticks of a UTC ISO-8601 time, exactly; ValueError if it is not
    one (a zone other than UTC, no zone, a date that does not exist).

    More than seven fractional digits are accepted only when the extra ones are zeros: a
    finer time would have to be rounded, and a label that moves is worse than a refusal.
    """
    found = _ISO.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"not a UTC ISO-8601 time: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in found.groups()[:6])
    fraction = (found.group(7) or "").ljust(9, "0")  # nanoseconds, as digits
    if fraction[7:] != "00":
        raise ValueError(f"finer than 100 ns: {text!r}")
    if h > 23 or mi > 59 or s > 59:  # no leap seconds in CoinAPI's clock
        raise ValueError(f"not a time of day: {text!r}")
    days = date(y, mo, d).toordinal() - _EPOCH_ORDINAL  # ValueError for 2024-02-30
    seconds = days * 86_400 + h * 3600 + mi * 60 + s
    return seconds * TICKS_PER_SECOND + int(fraction[:7])


def iso_from_ms(ms: int) -> str:
    """A UTC ISO time with CoinAPI's seven fractional digits, from epoch ms (no float)."""
    seconds, millis = divmod(ms, 1000)
    days, rest = divmod(seconds, 86_400)
    day = date.fromordinal(_EPOCH_ORDINAL + days)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{day.isoformat()}T{h:02d}:{m:02d}:{s:02d}.{millis:03d}0000Z"


def _number(value: Any, endpoint: str, key: str, row: int) -> float | None:
    """A JSON number or numeric string; ``null`` → null; anything else is refused."""
    if value is None:
        return None
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise _bad(endpoint, f"row {row} field {key!r} is not a number: {value!r}")
    return number


def _count(value: Any, endpoint: str, key: str, row: int) -> int:
    number = _number(value, endpoint, key, row)
    if number is None or number != int(number) or number < 0:
        raise _bad(endpoint, f"row {row} field {key!r} is not a count: {value!r}")
    return int(number)


def _period_end_ms(row: Mapping[str, Any], endpoint: str, i: int, step_ticks: int) -> int:
    """``time_period_end`` in ms, checked against ``time_period_start``: one period long
    and on the millisecond (the contract's precision), so the label cannot drift."""
    try:
        start = iso_ticks(row["time_period_start"])
        end = iso_ticks(row["time_period_end"])
    except ValueError as exc:
        raise _bad(endpoint, f"row {i}: {exc}") from None
    if end - start != step_ticks or end % TICKS_PER_MS:
        raise _bad(
            endpoint,
            f"row {i} period {row['time_period_start']} .. {row['time_period_end']} is not one "
            f"{step_ticks // TICKS_PER_SECOND} s period ending on a whole millisecond",
        )
    return end // TICKS_PER_MS


def parse_rows(
    rows: Any, endpoint: str, step_seconds: int, fields: Mapping[str, str], count_key: str
) -> pl.DataFrame:
    """Rows → ``ts`` (period end), the ``fields`` columns (JSON key → column, Float64) and
    ``count_key`` as an Int64 column of the same name's value (see the callers).

    Extra keys are ignored (drift that adds fields); ``time_open``/``time_close`` are not
    needed by the contract and not read.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"expected a JSON list of periods, got a {type(rows).__name__}")
    step_ticks = step_seconds * TICKS_PER_SECOND
    times: list[int] = []
    counts: list[int] = []
    columns: dict[str, list[float | None]] = {col: [] for col in fields.values()}
    required = ("time_period_start", "time_period_end", count_key, *fields)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _bad(endpoint, f"row {i} is not an object: {str(row)[:100]}")
        missing = [k for k in required if k not in row]
        if missing:
            raise _bad(endpoint, f"row {i} lacks required key(s) {missing}; has {sorted(row)}")
        times.append(_period_end_ms(row, endpoint, i, step_ticks))
        counts.append(_count(row[count_key], endpoint, count_key, i))
        for key, col in fields.items():
            columns[col].append(_number(row[key], endpoint, key, i))
    schema = {"ts_ms": pl.Int64, **{c: pl.Float64 for c in columns}, "count": pl.Int64}
    frame = pl.DataFrame({"ts_ms": times, **columns, "count": counts}, schema=schema)
    return frame.with_columns(pl.col("ts_ms").cast(TS).alias("ts")).drop("ts_ms")
