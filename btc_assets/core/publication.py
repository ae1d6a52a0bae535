"""When each published value became knowable: ``event_time`` and ``available_at``.

Vendor frames (``core/schema.py``'s FRED, Alpha Vantage and CryptoQuant contracts) become
published rows (``core/forecast_schema.py``) here, by one rule per vendor, each erring late:

- **FRED**: a value is known from its vintage date (ALFRED ``realtime_start``), a date on
  FRED's clock (US Central) with no time of day, so from the **end** of that date in
  ``America/Chicago``, plus the series' delay setting;
- **Alpha Vantage**: a session's bar is final at the close, 16:00 in the series' time zone
  (US/Eastern for equities), plus the delay (default 2 h); an FX day (time zone UTC) at the
  end of the UTC day, plus the delay;
- **CryptoQuant**: a UTC day's value at the end of that day, plus the delay (default 3 h).
  Exchange flows are re-clustered every Tuesday 00:00 UTC and CryptoQuant keeps no
  vintages: a value fetched after the first re-clustering that followed its publication is
  flagged ``revised`` (it may differ from what was first published).

``event_time`` is the start (00:00 UTC) of the date the value describes; ``ts`` equals
``available_at``, the lake's clock for these tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from btc_assets.core.forecast_schema import (
    ALPHAVANTAGE_SERIES_SCHEMA,
    CRYPTOQUANT_SERIES_SCHEMA,
    FRED_SERIES_SCHEMA,
)
from btc_assets.core.schema import TS, conform

FRED_ZONE = "America/Chicago"
SESSION_CLOSE = time(16, 0)
RECLUSTER_WEEKDAY = 1  # Tuesday (Monday is 0)


def _utc_midnight(day: pl.Expr) -> pl.Expr:
    return day.cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


def _local(day: pl.Expr, at: time, zone: str) -> pl.Expr:
    """``day`` at wall time ``at`` in ``zone``, as a UTC instant."""
    offset = timedelta(hours=at.hour, minutes=at.minute)
    wall = day.cast(pl.Datetime("ms")) + pl.lit(offset)
    return wall.dt.replace_time_zone(
        zone, ambiguous="latest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def fred_rows(frame: pl.DataFrame, delay: timedelta) -> pl.DataFrame:
    """FRED_OBSERVATION_SCHEMA rows -> FRED_SERIES_SCHEMA (known at the end of the vintage
    date, Central time, plus ``delay``)."""
    end_of_vintage = _local(pl.col("realtime_start") + pl.duration(days=1), time(0), FRED_ZONE)
    available = (end_of_vintage + pl.lit(delay)).cast(TS)
    out = frame.select(
        pl.col("series_id").alias("symbol"),
        available.alias("ts"),
        _utc_midnight(pl.col("date")).cast(TS).alias("event_time"),
        available.alias("available_at"),
        "value",
        "missing",
        pl.col("realtime_start").alias("vintage_date"),
    )
    return conform(out, FRED_SERIES_SCHEMA).sort("ts", "event_time")


def alphavantage_rows(frame: pl.DataFrame, delay: timedelta) -> pl.DataFrame:
    """ALPHAVANTAGE_DAILY_SCHEMA rows -> ALPHAVANTAGE_SERIES_SCHEMA: known at the session's
    close in its time zone (the end of the UTC day for FX) plus ``delay``."""
    if frame.is_empty():
        return pl.DataFrame(schema=ALPHAVANTAGE_SERIES_SCHEMA)
    zones = frame["time_zone"].unique().to_list()
    parts = []
    for zone in zones:
        rows = frame.filter(pl.col("time_zone") == zone)
        if zone == "UTC":
            close = _utc_midnight(pl.col("date") + pl.duration(days=1))
        else:
            close = _local(
                pl.col("date"), SESSION_CLOSE, zone.replace("US/Eastern", "America/New_York")
            )
        available = (close + pl.lit(delay)).cast(TS)
        parts.append(
            rows.select(
                "symbol",
                available.alias("ts"),
                _utc_midnight(pl.col("date")).cast(TS).alias("event_time"),
                available.alias("available_at"),
                pl.col("date").alias("session_date"),
                "open",
                "high",
                "low",
                "close",
                "volume",
            )
        )
    out = pl.concat(parts)
    return conform(out, ALPHAVANTAGE_SERIES_SCHEMA).sort("ts", "event_time")


def first_recluster_after(moment: datetime) -> datetime:
    """The first Tuesday 00:00 UTC strictly after ``moment``."""
    day = moment.astimezone(UTC).date()
    ahead = (RECLUSTER_WEEKDAY - day.weekday()) % 7 or 7
    return datetime.combine(day + timedelta(days=ahead), time(0), UTC)


def _first_recluster_after(moment: pl.Expr) -> pl.Expr:
    """``first_recluster_after`` as an expression (ISO weekdays: Tuesday is 2)."""
    day = moment.dt.date()
    ahead = (RECLUSTER_WEEKDAY + 1 - day.dt.weekday() + 7) % 7
    ahead = pl.when(ahead == 0).then(7).otherwise(ahead)
    return _utc_midnight(day + pl.duration(days=ahead)).cast(TS)


def cryptoquant_rows(
    frame: pl.DataFrame,
    delay: timedelta,
    fetched_at: datetime,
    asset: str = "BTC",
    revised_weekly: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """CRYPTOQUANT_DAILY_SCHEMA rows -> CRYPTOQUANT_SERIES_SCHEMA: known at the end of the
    UTC day plus ``delay``; ``revised`` where the metric is in ``revised_weekly`` and
    ``fetched_at`` is past the first re-clustering after the value was published."""
    available = (_utc_midnight(pl.col("date") + pl.duration(days=1)) + pl.lit(delay)).cast(TS)
    out = frame.with_columns(available=available).with_columns(
        revised=pl.col("metric").is_in(list(revised_weekly))
        & (pl.lit(fetched_at).cast(TS) >= _first_recluster_after(pl.col("available")))
    )
    out = out.select(
        pl.lit(asset).alias("symbol"),
        pl.col("available").alias("ts"),
        _utc_midnight(pl.col("date")).cast(TS).alias("event_time"),
        pl.col("available").alias("available_at"),
        "metric",
        "exchange",
        "field",
        "value",
        "revised",
    )
    return conform(out, CRYPTOQUANT_SERIES_SCHEMA).sort("ts", "metric", "exchange", "field")


def event_days_for(partitions: list[date], delay: timedelta, lead: timedelta) -> tuple[date, date]:
    """The described dates whose rows can land in ``partitions`` (by ``available_at``), when
    a value becomes known between ``lead`` and ``lead + delay`` after its date began."""
    reach = (lead + delay).days + 1
    return min(partitions) - timedelta(days=reach), max(partitions)
