"""Partitions: one UTC day per partition, starting at the configured start date."""

from __future__ import annotations

from datetime import date

import dagster as dg

from btc_assets.settings import load_settings

DAILY_START = load_settings().start_date

# end_offset=1: today exists as a partial partition, kept current by the live sensor.
DAILY = dg.DailyPartitionsDefinition(
    start_date=DAILY_START.isoformat(),
    timezone="UTC",
    fmt="%Y-%m-%d",
    end_offset=1,
)

# A range backfill of a daily asset is one run: the work vectorises over days.
SINGLE_RUN = dg.BackfillPolicy.single_run()


class PartitionError(ValueError):
    """A partition key the project cannot serve (malformed or before the start date)."""


def partition_days(keys: list[str] | tuple[str, ...], start_date: date) -> list[date]:
    """Parse partition keys into days, refusing any before ``start_date`` by name."""
    days: list[date] = []
    for key in keys:
        try:
            day = date.fromisoformat(key)
        except ValueError as exc:
            raise PartitionError(f"partition {key!r} is not a YYYY-MM-DD day") from exc
        if day < start_date:
            raise PartitionError(
                f"partition {key} is before the start date {start_date} "
                "(BTC_ASSETS_START_DATE); nothing was fetched or written"
            )
        days.append(day)
    return sorted(days)
