"""What every daily lake-table asset does after its own work: record, check, report.

Assets stay thin: they produce day frames; this module writes them through the lake, then
emits per-day metadata, per-day check evaluations and the step's outputs in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.day_metadata import (
    SYMBOLS_TAG,
    column_schema,
    markdown_table,
    materialize_days,
    merge_day_metadata,
    tag_blocked,
)
from btc_assets.concurrency import map_members
from btc_assets.core.quality import quality_by_day
from btc_assets.core.schema import day_bounds, floor_to_grid, partition_day_expr
from btc_assets.core.tables import Table
from btc_assets.defs import checks
from btc_assets.defs.checks import Verdict, table_key
from btc_assets.defs.dagster_internals import latest_evaluation
from btc_assets.defs.partitions import partition_days
from btc_assets.lake import DayWrite, Lake

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


def run_symbols(context: dg.AssetExecutionContext, configured: Sequence[Any]) -> list[Any]:
    """The basket members (``SymbolConfig``) this run covers: all, or those of ``SYMBOLS_TAG``.

    A tag naming a symbol outside the basket is refused by name before anything is fetched.
    """
    tag = context.run.tags.get(SYMBOLS_TAG, "").strip()
    if not tag:
        return list(configured)
    wanted = {s.strip().upper() for s in tag.split(",") if s.strip()}
    known = {s.perp for s in configured}
    unknown = sorted(wanted - known)
    if unknown:
        raise RangeError(
            f"run tag {SYMBOLS_TAG}={tag!r} names {', '.join(unknown)}, not in the basket "
            f"(BTC_ASSETS_SYMBOLS: {', '.join(sorted(known))}); nothing was fetched or written"
        )
    return [s for s in configured if s.perp in wanted]


@dataclass
class SymbolDays:
    """What an asset did for one basket member over the run's days."""

    symbol: str  # its name in this table
    metadata: Mapping[date, Mapping[str, Any]]
    blocked: Mapping[date, list[str]] = field(default_factory=dict)
    excluded_lookback: Mapping[date, list[str]] = field(default_factory=dict)
    # How far today's partial day reaches for this symbol (None: the run's ``as_of``).
    as_of: datetime | None = None


# (symbol, its day frames as stored, each day's manifest error) -> check name -> day -> verdict
Evaluate = Callable[
    [str, pl.DataFrame, Mapping[date, str | None]], Mapping[str, Mapping[date, Verdict]]
]


def record_days(
    context: dg.AssetExecutionContext,
    table: Table,
    lake: Lake,
    days: list[date],
    done: Sequence[SymbolDays],
    *,
    configured: Sequence[str],
    range_metadata: Mapping[str, Any] | None = None,
    evaluate: Evaluate | None = None,
    blocked_checks: Sequence[str] = (checks.QUALITY,),
    as_of: datetime | None = None,
    workers: int = 1,
) -> Iterator[Any]:
    """Emit the step's output, the per-day checks and the check outputs for ``days``.

    The days written are re-read from the lake through its verified read: what is checked is
    what was stored. A blocked (symbol, day) is not built, and the step does not fail for it:
    it is recorded with its cause and fails its ``quality`` verdict with ERROR, so every
    asset further down blocks that symbol's day too while the rest is built at every depth
    (a failed step would make Dagster skip every downstream day of the range). The run is
    tagged with what was blocked, so the run list tells the user.

    Each day gets one materialization and one evaluation per check whatever the number of
    symbols, carrying each symbol's figures; ``configured`` symbols this run did not cover
    keep the verdicts of their latest evaluation. ``workers`` symbols are read back and
    evaluated at once (``map_members``); ``evaluate`` must be safe to call from threads.
    """
    key = table_key(table)

    def one(sd: SymbolDays) -> tuple[int, dict[date, pl.DataFrame | None], dict[date, Any], Any]:
        good = [day for day in days if day not in sd.blocked]
        read = lake.read_days(table.name, sd.symbol, good, schema=dict(table.schema))
        frame = read.frame.collect()
        errors: dict[date, str | None] = {day: read.errors.get(day) for day in good}
        errors.update({day: "not written" for day in read.missing})
        # Counts and the first rows of each day, not each day's copy: a year of 1m rows per
        # member in flight is what bounds the step's memory.
        by_day = frame.with_columns(_day=partition_day_expr()).group_by("_day", maintain_order=True)
        counts = dict(by_day.len().iter_rows())
        heads = by_day.head(PREVIEW_ROWS).partition_by("_day", as_dict=True, include_key=False)
        frames = {day: heads.get((day,)) for day in good}
        metadata = {
            day: _day_metadata(lake, table, sd, day, counts.get(day, 0), read.committed.get(day))
            for day in good
        }
        if evaluate is None:
            by_day = quality_by_day(table, frame.lazy(), good, sd.as_of or as_of)
            found = {checks.QUALITY: checks.day_verdicts(by_day, errors)}
        else:
            found = evaluate(sd.symbol, frame, errors)
        return frame.height, frames, metadata, found

    day_parts: dict[date, dict[str, dict[str, Any]]] = {day: {} for day in days}
    previews: dict[date, pl.DataFrame | None] = {}
    verdicts: dict[str, dict[date, dict[str, Verdict]]] = {}
    total_rows = 0
    for sd, (rows, frames, metadata, found) in zip(
        done, map_members(one, list(done), workers), strict=True
    ):
        total_rows += rows
        for day, day_metadata in metadata.items():
            day_parts[day][sd.symbol] = day_metadata
            previews.setdefault(day, frames[day])  # the day's first symbol shows its rows
        for check_name, per_day in found.items():
            for day, verdict in per_day.items():
                verdicts.setdefault(check_name, {}).setdefault(day, {})[sd.symbol] = verdict
        for day, reasons in sd.blocked.items():
            for check_name in blocked_checks:
                verdicts.setdefault(check_name, {}).setdefault(day, {})[sd.symbol] = (
                    checks.blocked_verdict(reasons)
                )
    for day, part in previews.items():
        first = next(iter(day_parts[day].values()))
        first["preview"] = dg.MetadataValue.md(
            "(no rows)" if part is None else markdown_table(part)  # already its first rows
        )
    blocked = {(sd.symbol, day): why for sd in done for day, why in sd.blocked.items()}
    per_day = {day: merge_day_metadata(day_parts[day], blocked, day, len(done)) for day in days}
    yield from materialize_days(
        context,
        key,
        dict(sorted(per_day.items())),
        common={"dagster/column_schema": column_schema(table)},
        range_only={
            **(range_metadata or {}),
            "symbols": len(done),
            "days": len(days),
            "blocked_days": len({day for _, day in blocked}),
            "blocked_symbol_days": len(blocked),
            "rows": total_rows,
        },
        materialize_all=True,
    )
    others = [s for s in configured if s not in {sd.symbol for sd in done}]
    for check_name, by_day in verdicts.items():
        for day, found in sorted(by_day.items()):
            if others:
                found = {**_carried(context, key, check_name, day, others), **found}
            yield checks.merge_verdicts(key, check_name, day, found)
    yield from checks.check_outputs(context)
    if blocked:
        tag_blocked(context, key, blocked)


def _day_metadata(
    lake: Lake,
    table: Table,
    sd: SymbolDays,
    day: date,
    rows: int,
    written: DayWrite | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        **sd.metadata.get(day, {}),
        "dagster/row_count": rows,
        "lake_path": dg.MetadataValue.path(
            str(written.path if written else lake.day_dir(table.name, sd.symbol, day))
        ),
    }
    excluded = sd.excluded_lookback.get(day)
    if excluded:
        metadata["excluded_lookback_days"] = len(excluded)
        metadata["excluded_lookback"] = dg.MetadataValue.md(
            "\n".join(f"- {why}" for why in excluded)
        )
    return metadata


def _carried(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    check_name: str,
    day: date,
    symbols: Sequence[str],
) -> dict[str, Verdict]:
    """The verdicts of ``symbols`` in the day's latest evaluation (a restricted run)."""
    latest = latest_evaluation(context.instance, dg.AssetCheckKey(key, check_name), day.isoformat())
    if latest is None:
        return {}
    found = checks.symbol_verdicts(latest)
    return {s: found[s] for s in symbols if s in found}
