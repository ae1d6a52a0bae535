"""Alpha Vantage daily series → ALPHAVANTAGE_DAILY_SCHEMA frames (no HTTP here).

The answer is an object: ``"Meta Data"`` (numbered keys, ``"5. Time Zone"`` or ``"6. Time
Zone"``) and one series object keyed by session date, newest first, whose rows hold numbered
string values (``"1. open"`` .. ``"4. close"``, ``"5. volume"`` on equities only). Numbers
are accepted as JSON strings or numbers; a row that lost a field, a date that is no date or a
value that is no number raises :class:`VendorResponseError` naming the series, the date and
the key, so drift is never silent.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from btc_assets.core.schema import ALPHAVANTAGE_DAILY_SCHEMA, conform
from btc_assets.vendors.errors import VendorResponseError

VENDOR = "alphavantage"
QUERY = "/query"
_PRICE_KEYS = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close"}
_VOLUME_KEY = "5. volume"
# When a session's bar is final, in UTC. US equities close at 16:00 US/Eastern, which is
# 20:00 or 21:00 UTC with daylight saving: 21:00 is never early. A UTC day (FX) ends at 24:00.
CLOSE_UTC_HOUR = {"US/Eastern": 21, "UTC": 24}


def _bad(params: Mapping[str, str], message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, QUERY, dict(params), status=200, message=message)


def _number(value: Any, where: str, params: Mapping[str, str]) -> float:
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):  # "abc" stays NaN: refused below
            number = float(value)
    if not math.isfinite(number):
        raise _bad(params, f"{where} is not a number: {value!r}")
    return number


def time_zone(body: Mapping[str, Any], default: str) -> str:
    """The ``Time Zone`` of the Meta Data (its number differs by function), else ``default``."""
    meta = body.get("Meta Data")
    if isinstance(meta, dict):
        for key, value in meta.items():
            if key.split(". ", 1)[-1] == "Time Zone" and isinstance(value, str) and value:
                return value
    return default


def meta_value(body: Mapping[str, Any], name: str) -> str | None:
    """A Meta Data value by its name without the number (``"Symbol"`` for ``"2. Symbol"``)."""
    meta = body.get("Meta Data")
    if not isinstance(meta, dict):
        return None
    found = next((v for k, v in meta.items() if k.split(". ", 1)[-1] == name), None)
    return str(found) if found is not None else None


def session_closed_ms(day: date, zone: str) -> int:
    """Epoch ms when ``day``'s bar is final (see ``CLOSE_UTC_HOUR``). Another zone is taken
    to end its day as late as any does: at UTC-12, 36 h after the day's 00:00 UTC."""
    hour = CLOSE_UTC_HOUR.get(zone, 36)
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour)
    return int(moment.timestamp() * 1000)


def parse_daily(
    body: Mapping[str, Any],
    series_key: str,
    symbol: str,
    zone: str,
    params: Mapping[str, str],
    *,
    volume: bool,
) -> pl.DataFrame:
    """The series under ``series_key`` as a frame, oldest first; ``params`` (already masked)
    name the request in errors. ``volume`` says whether rows must carry ``"5. volume"``."""
    series = body.get(series_key)
    if not isinstance(series, dict):
        raise _bad(params, f"{series_key!r} is a {type(series).__name__}, expected an object")
    days: list[date] = []
    columns: dict[str, list[float | None]] = {c: [] for c in (*_PRICE_KEYS.values(), "volume")}
    for key, row in series.items():
        try:
            day = date.fromisoformat(key)
        except (TypeError, ValueError):
            raise _bad(params, f"{series_key} has a key that is no date: {key!r}") from None
        if not isinstance(row, dict):
            raise _bad(params, f"{series_key} {key}: expected an object, got {str(row)[:80]}")
        wanted = [*_PRICE_KEYS, _VOLUME_KEY] if volume else list(_PRICE_KEYS)
        missing = [k for k in wanted if k not in row]
        if missing:
            raise _bad(params, f"{series_key} {key} lacks {missing}; has {sorted(row)}")
        days.append(day)
        for field, column in _PRICE_KEYS.items():
            columns[column].append(_number(row[field], f"{series_key} {key} {field!r}", params))
        where = f"{series_key} {key} {_VOLUME_KEY!r}"
        columns["volume"].append(_number(row[_VOLUME_KEY], where, params) if volume else None)
    frame = pl.DataFrame(
        {"date": days, **columns},
        schema={"date": pl.Date(), **{c: pl.Float64() for c in columns}},
    ).with_columns(symbol=pl.lit(symbol), time_zone=pl.lit(zone))
    # The vendor serves newest first; the contract is oldest first. JSON object keys are
    # unique, so a date repeats only if two spellings parse to one day: refuse that.
    frame = frame.sort("date")
    if not frame["date"].is_unique().all():
        raise _bad(params, f"{series_key} holds a session date twice")
    return conform(frame, ALPHAVANTAGE_DAILY_SCHEMA)
