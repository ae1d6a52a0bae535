"""The data contract: column names and dtypes of every table.

Time is UTC with millisecond precision. Bars are right-closed and labelled by their close
time: a 1m bar that opens at 00:00 has ``ts = 00:01``. Partition day ``D`` holds the rows with
``ts`` in ``(D 00:00, D+1 00:00]``. ``[symbol, ts]`` is unique in every table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

TS = pl.Datetime("ms", "UTC")
KEY = ("symbol", "ts")

KLINE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "quote_volume": pl.Float64(),
    "taker_buy_volume": pl.Float64(),
    "taker_buy_quote_volume": pl.Float64(),
    "trades": pl.Int64(),
}

# Resampled bars carry how many source bars they aggregate, so a short bar is visible.
BAR_SCHEMA: dict[str, pl.DataType] = {**KLINE_SCHEMA, "source_count": pl.Int64()}

# ts is the funding settlement time rounded to the minute (Binance stamps it a few ms late).
FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS,
    "funding_rate": pl.Float64(),
    "mark_price": pl.Float64(),
}

OHLC_COLUMNS = ("open", "high", "low", "close")
VOLUME_COLUMNS = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")


def empty_frame(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select exactly the contract's columns in order, cast to the contract's dtypes.

    Raises ``SchemaError`` naming the missing columns, so drift is never silent.
    """
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise SchemaError(f"missing columns {missing}; got {df.columns}")
    return df.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])


class SchemaError(ValueError):
    """A frame does not match its table's data contract."""


def partition_day_expr(ts: str | pl.Expr = "ts") -> pl.Expr:
    """The UTC day a row belongs to: ts in (D 00:00, D+1 00:00] -> D."""
    col = pl.col(ts) if isinstance(ts, str) else ts
    return col.dt.offset_by("-1ms").dt.date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """(start, end] of partition day D as UTC datetimes: (D 00:00, D+1 00:00]."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
