"""What every daily lake-table asset does after its own work: record, check, report.

Assets stay thin: they produce day frames; this module writes them through the lake, then
emits per-day metadata, per-day check evaluations and the step's outputs in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.core.quality import quality_by_day
from btc_assets.core.schema import day_bounds, floor_to_grid, partition_day_expr
from btc_assets.core.tables import Table
from btc_assets.defs import checks
from btc_assets.defs.checks import table_key
from btc_assets.defs.partitions import partition_days
from btc_assets.lake import Lake

# The day frames as stored and each day's manifest error -> the check evaluations.
Evaluate = Callable[[pl.DataFrame, Mapping[date, str | None]], Iterable[dg.AssetCheckEvaluation]]

# A run tagged with this re-fetches every day of its range, even complete ones.
FORCE_TAG = "btc_assets/force"
PREVIEW_ROWS = 3


# What every lake table's asset is, as the UI's kind tags show it.
LAKE_KINDS = frozenset({"polars", "parquet"})


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class RangeError(ValueError):
    """A partition range the project refuses before fetching or writing anything."""


def range_days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's days; a range that is reversed, reaches before the start date or past today
    is refused by name before anything is fetched or written.

    Reads the range tags when present, not ``partition_keys``: the latter fails on such
    ranges with an invariant error that says neither the range nor the setting involved.
    """
    start = context.assets_def.partitions_def.start.date()  # type: ignore[union-attr]
    tags = context.run.tags
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        keys = [tags[RANGE_START_TAG], tags[RANGE_END_TAG]]
    else:
        key_range = context.partition_key_range
        keys = [key_range.start, key_range.end]
    first, last = partition_days(keys, start)
    if keys != [first.isoformat(), last.isoformat()]:
        raise RangeError(
            f"partition range {keys[0]} .. {keys[1]} is reversed: its start is after its end "
            f"(did you mean {keys[1]} .. {keys[0]}?); nothing was fetched or written"
        )
    today = clock.today_utc()
    if last > today:
        raise RangeError(
            f"partition range {keys[0]} .. {keys[1]} reaches {(last - today).days} day(s) "
            f"past today ({today}, UTC): no bar of those days has closed yet, so there is "
            "nothing to fetch; nothing was fetched or written"
        )
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def derived_provenance(
    env: str, sources: Iterable[Table], day: date, as_of: datetime | None
) -> dict[str, Any]:
    """What a derived day records: where it came from, when, and whether the day was over."""
    return {
        "env": env,
        "source": "derived",
        "derived_from": sorted(t.name for t in sources),
        "built_at": clock.now_utc().isoformat(timespec="seconds"),
        "closed": as_of is None or as_of >= day_bounds(day)[1],
    }


def forced(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(FORCE_TAG, "").lower() in ("1", "true", "yes")


def partial_cutoff(days: list[date], inputs: pl.LazyFrame, step: timedelta) -> datetime | None:
    """How far today's partial partition reaches, if the range holds today.

    A derived table can only be built as far as its inputs reach: the newest input bar of
    today, floored to the table's bar. Past days are judged whole; how stale the newest
    bar is, is the freshness check's business, not this one's.
    """
    today = clock.today_utc()
    if today not in days:
        return None
    start = day_bounds(today)[0]
    newest = inputs.select(pl.col("ts").max()).collect().item()
    return start if newest is None or newest <= start else floor_to_grid(newest, step)


def _markdown(frame: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_cols=-1,
        tbl_width_chars=400,
    ):
        return str(frame)


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in table.schema.items()]
    )


BLOCKED_TAG_PREFIX = "btc_assets/blocked."


def record_days(
    context: dg.AssetExecutionContext,
    table: Table,
    lake: Lake,
    symbol: str,
    days: list[date],
    day_metadata: Mapping[date, Mapping[str, Any]],
    *,
    blocked: Mapping[date, list[str]] | None = None,
    excluded_lookback: Mapping[date, list[str]] | None = None,
    range_metadata: Mapping[str, Any] | None = None,
    evaluate: Evaluate | None = None,
    as_of: datetime | None = None,
) -> Iterator[Any]:
    """Emit the step's output, the per-day checks and the check outputs for ``days``.

    The days written are re-read from the lake through its verified read: what is checked is
    what was stored. A blocked day is not built, and the step does not fail for it: it is
    recorded with its cause and fails its ``quality`` check with ERROR, so every asset
    further down blocks it too while the rest of the range is built at every depth (a
    failed step would make Dagster skip every downstream day of the range). The run is
    tagged with what was blocked, so the run list tells the user.
    """
    blocked = dict(blocked or {})
    excluded = excluded_lookback or {}
    good = [day for day in days if day not in blocked]
    read = lake.read_days(table.name, symbol, good, schema=dict(table.schema))
    frame = read.frame.collect()
    errors: dict[date, str | None] = {day: read.errors.get(day) for day in good}
    errors.update({day: "not written" for day in read.missing})
    parts = frame.with_columns(_day=partition_day_expr()).partition_by(
        "_day", as_dict=True, include_key=False
    )
    per_day: dict[date, dict[str, Any]] = {}
    for day in good:
        part = parts.get((day,))
        written = read.committed.get(day)
        per_day[day] = {
            **day_metadata.get(day, {}),
            "dagster/row_count": 0 if part is None else part.height,
            "lake_path": dg.MetadataValue.path(
                str(written.path if written else lake.day_dir(table.name, symbol, day))
            ),
            "preview": dg.MetadataValue.md(
                "(no rows)" if part is None else _markdown(part.head(PREVIEW_ROWS))
            ),
        }
        if day in excluded:
            per_day[day]["excluded_lookback_days"] = len(excluded[day])
            per_day[day]["excluded_lookback"] = dg.MetadataValue.md(
                "\n".join(f"- {why}" for why in excluded[day])
            )
    for day, reasons in blocked.items():
        per_day[day] = blocked_metadata(reasons)
    yield from materialize_days(
        context,
        table_key(table),
        dict(sorted(per_day.items())),
        common={"dagster/column_schema": column_schema(table)},
        range_only={
            **(range_metadata or {}),
            "days": len(good),
            "blocked_days": len(blocked),
            "rows": frame.height,
        },
        materialize_all=True,
    )
    if evaluate is None:
        by_day = quality_by_day(table, frame.lazy(), good, as_of)
        yield from checks.day_evaluations(table_key(table), by_day, errors)
    else:
        yield from evaluate(frame, errors)
    yield from checks.blocked_evaluations(table_key(table), blocked)
    yield from checks.check_outputs(context)
    if blocked:
        tag_blocked(context, table_key(table), blocked)


def blocked_metadata(reasons: Iterable[str]) -> dict[str, Any]:
    """What a blocked day's materialization says: that it is blocked, and by what."""
    return {
        "blocked": True,
        "blocked_by": dg.MetadataValue.md("\n".join(f"- {why}" for why in reasons)),
    }


def tag_blocked(
    context: dg.AssetExecutionContext, key: dg.AssetKey, blocked: Mapping[date, Any]
) -> None:
    """Name the blocked days on the run, one tag per asset (steps may run in parallel)."""
    shown = sorted(d.isoformat() for d in blocked)
    text = f"{len(shown)} day(s): " + ", ".join(shown[:8]) + (" ..." if len(shown) > 8 else "")
    context.instance.add_run_tags(
        context.run_id, {BLOCKED_TAG_PREFIX + key.to_user_string().replace("/", "."): text}
    )
    context.log.error(
        f"{key.to_user_string()}: {len(shown)} day(s) blocked, not built: {', '.join(shown)}; "
        "the other days of the range were built"
    )


def materialize_days(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    per_day: Mapping[date, Mapping[str, Any]],
    common: Mapping[str, Any],
    range_only: Mapping[str, Any],
    materialize_all: bool,
) -> Iterator[Any]:
    """The step's output for the whole range, or one ``AssetMaterialization`` per day.

    ``materialize_all``: every day of the range was done, so the output covers it and each
    day's metadata is attached through ``add_asset_metadata``. Otherwise only ``per_day``'s
    days are recorded, one event each, and the caller fails the step afterwards (no output
    is owed then).
    """
    if materialize_all:
        for day, metadata in per_day.items():
            context.add_asset_metadata(dict(metadata), partition_key=day.isoformat())
        yield dg.MaterializeResult(metadata={**common, **range_only})
    else:
        for day, metadata in per_day.items():
            yield dg.AssetMaterialization(
                asset_key=key, partition=day.isoformat(), metadata={**common, **metadata}
            )
