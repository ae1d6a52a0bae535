"""Binance kline and funding-rate JSON → typed Polars columns (no HTTP here).

Decimals arrive as JSON strings (sometimes numbers, sometimes mixed); times in ms or µs.
A row that lost fields raises :class:`VendorResponseError` naming the endpoint and the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from btc_assets.core.schema import KLINE_SCHEMA, conform
from btc_assets.vendors.errors import VendorResponseError

VENDOR = "binance"
# Row fields 0..10 are the ones we use; field 11 ("ignore") may be absent without harm.
_KLINE_FIELDS = 11
_DECIMALS = {1: "open", 2: "high", 3: "low", 4: "close", 5: "volume", 7: "quote_volume",
             9: "taker_buy_volume", 10: "taker_buy_quote_volume"}  # fmt: skip
_MICROS = 100_000_000_000_000  # anything above is µs (ms stays below until year 5138)


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def _raw(values: Sequence[Any], name: str, endpoint: str) -> pl.Series:
    """JSON values as they came: all strings (the norm), all numbers, or mixed → text.

    Numbers in a mixed column go back to their shortest exact text (``repr`` round-trips),
    so every decimal reaches Polars' correctly rounded parser without a lossy step.
    """
    for dtype in (pl.String, pl.Int64, pl.Float64):
        try:
            return pl.Series(name, values, dtype=dtype, strict=True)
        except TypeError:
            continue
    texts: list[str | None] = []
    for v in values:
        if v is None or isinstance(v, str):
            texts.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            texts.append(repr(v))
        else:
            raise _bad(endpoint, f"field {name!r} holds {v!r}, not a number")
    return pl.Series(name, texts, dtype=pl.String)


def _typed(frame: pl.DataFrame, ints: Sequence[str], times: Sequence[str]) -> pl.DataFrame:
    """One pass casting every column: text → number, µs → ms, ``""``/``"0 "`` handled."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            col = col.str.strip_chars().replace("", None).cast(pl.Float64, strict=True)
        if name in ints or name in times:
            col = col.cast(pl.Int64, strict=True)
        else:
            col = col.cast(pl.Float64, strict=True)
        if name in times:
            col = pl.when(col > _MICROS).then(col // 1000).otherwise(col)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def _parse(
    columns: dict[str, Sequence[Any]],
    endpoint: str,
    *,
    ints: Sequence[str] = (),
    times: Sequence[str] = (),
    required: Sequence[str] = (),
) -> pl.DataFrame:
    raw = pl.DataFrame([_raw(v, name, endpoint) for name, v in columns.items()])
    try:
        frame = _typed(raw, ints, times)
    except pl.exceptions.PolarsError as exc:
        raise _bad(endpoint, f"a field is not numeric: {str(exc).splitlines()[0]}") from None
    nulls = {c: n for c, n in frame.select(required).null_count().row(0, named=True).items() if n}
    if nulls:
        raise _bad(endpoint, f"required fields are empty (column: rows): {nulls}")
    return frame


def parse_kline_rows(rows: Any, endpoint: str) -> pl.DataFrame:
    """Binance kline arrays → ``open_ms``, ``close_ms`` and the contract's value columns.

    Accepts ms or µs times, numbers as JSON strings or numbers, and extra trailing fields;
    a row too short to hold the 11 fields we use raises :class:`VendorResponseError`.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"expected a list of klines, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < _KLINE_FIELDS:
            raise _bad(endpoint, f"kline row {i} has the wrong shape (need 11+ fields): {row!r}")
    if not rows:
        return pl.DataFrame(schema={"open_ms": pl.Int64, "close_ms": pl.Int64})
    cols = list(zip(*(row[:_KLINE_FIELDS] for row in rows), strict=True))
    named = {"open_ms": cols[0], "close_ms": cols[6], "trades": cols[8]}
    named.update({name: cols[i] for i, name in _DECIMALS.items()})
    return _parse(
        named, endpoint, ints=["trades"], times=["open_ms", "close_ms"], required=list(named)
    )


def kline_frame(parsed: pl.DataFrame, symbol: str, step_ms: int) -> pl.DataFrame:
    """Parsed klines (``parse_kline_rows``) → ``KLINE_SCHEMA``, labelled by close time, one
    row per open time (the first seen), sorted. REST pages and the websocket's closed
    candles both go through here, so a minute is the same row whichever way it came."""
    out = (
        parsed.unique(subset="open_ms", keep="first", maintain_order=True)
        .with_columns(
            (pl.col("open_ms") + step_ms).cast(pl.Datetime("ms", "UTC")).alias("ts"),
            pl.lit(symbol).alias("symbol"),
        )
        .sort("ts")
    )
    return conform(out, KLINE_SCHEMA)


def parse_funding_rows(rows: Any, endpoint: str) -> pl.DataFrame:
    """fundingRate objects → ``time_ms``, ``symbol``, ``funding_rate``, ``mark_price``.

    ``markPrice`` may be ``""`` (old rows) or absent: null. Extra keys are ignored;
    a missing ``fundingTime``/``fundingRate`` raises :class:`VendorResponseError`.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"expected a list of funding rates, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        missing = [
            k for k in ("fundingTime", "fundingRate") if not isinstance(row, dict) or k not in row
        ]
        if missing:
            raise _bad(endpoint, f"funding row {i} lacks {missing}: {row!r}")
    if not rows:
        return pl.DataFrame(schema={"time_ms": pl.Int64, "symbol": pl.String})
    named = {
        "time_ms": [r["fundingTime"] for r in rows],
        "funding_rate": [r["fundingRate"] for r in rows],
        "mark_price": [r.get("markPrice") for r in rows],
    }
    frame = _parse(named, endpoint, times=["time_ms"], required=["time_ms", "funding_rate"])
    symbols = pl.Series("symbol", [str(r.get("symbol", "")) for r in rows], dtype=pl.String)
    return frame.with_columns(symbols)


def parse_open_interest_rows(rows: Any, endpoint: str) -> pl.DataFrame:
    """openInterestHist objects → ``time_ms``, ``sum_open_interest`` (coins),
    ``sum_open_interest_value`` (USDT). ``timestamp`` may be a number or a string (the docs
    show a string, the live API a number); extra keys (``CMCCirculatingSupply``) are ignored.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"expected a list of open interest rows, got {type(rows).__name__}")
    keys = ("timestamp", "sumOpenInterest", "sumOpenInterestValue")
    for i, row in enumerate(rows):
        missing = [k for k in keys if not isinstance(row, dict) or k not in row]
        if missing:
            raise _bad(endpoint, f"open interest row {i} lacks {missing}: {row!r}")
    if not rows:
        return pl.DataFrame(schema={"time_ms": pl.Int64})
    named = {
        "time_ms": [r["timestamp"] for r in rows],
        "sum_open_interest": [r["sumOpenInterest"] for r in rows],
        "sum_open_interest_value": [r["sumOpenInterestValue"] for r in rows],
    }
    return _parse(named, endpoint, times=["time_ms"], required=list(named))
