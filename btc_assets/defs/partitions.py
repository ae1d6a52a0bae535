"""Partitions: one UTC day per partition, starting at the configured start date."""

from __future__ import annotations

from datetime import date

import dagster as dg

from btc_assets.settings import load_settings

_SETTINGS = load_settings()
DAILY_START = _SETTINGS.start_date

# end_offset=1: today exists as a partial partition, kept current by the live sensor.
DAILY = dg.DailyPartitionsDefinition(
    start_date=DAILY_START.isoformat(),
    timezone="UTC",
    fmt="%Y-%m-%d",
    end_offset=1,
)


def backfill_policy(days_per_run: int | None) -> dg.BackfillPolicy:
    """How a range backfill of a daily asset is cut into runs (BTC_ASSETS_BACKFILL_DAYS_PER_RUN).

    None: one run for the whole range, since the work vectorises over days. N: runs of at
    most N days, which the run queue starts side by side up to its limits (dagster.yaml), for
    ranges long enough that one run's wall time matters. Each run reads its own window from
    ``context.partition_time_window``; look-back inputs (start_offset) are read per run.
    """
    if not days_per_run:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(days_per_run)


# Every daily asset takes this one policy, so a backfill over several cuts them all alike.
DAILY_BACKFILL = backfill_policy(_SETTINGS.backfill_days_per_run)


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
