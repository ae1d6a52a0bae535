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


def range_days(context: dg.AssetExecutionContext) -> list[date]:
    """The run's days, refusing a range that reaches before the start date by name.

    Reads the key range, not ``partition_keys``: the latter fails on such a range with an
    invariant error that does not say which setting is involved.
    """
    start = context.assets_def.partitions_def.start.date()  # type: ignore[union-attr]
    key_range = context.partition_key_range
    first, last = partition_days([key_range.start, key_range.end], start)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


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


def record_range(
    context: dg.AssetExecutionContext,
    table: Table,
    lake: Lake,
    symbol: str,
    days: list[date],
    day_metadata: Mapping[date, Mapping[str, Any]],
    range_metadata: Mapping[str, Any] | None = None,
    materialize_all: bool = True,
    evaluate: Evaluate | None = None,
    as_of: datetime | None = None,
) -> Iterator[Any]:
    """Emit the materialization(s), the per-day checks and the check outputs for ``days``.

    The data is re-read from the lake in one scan: what is checked is what was stored.
    With ``materialize_all`` the step's output covers the whole range (per-day metadata is
    attached through ``add_asset_metadata``); without it, each day gets its own
    ``AssetMaterialization`` because the range is only partly written (the caller fails the
    step afterwards, so no output is owed).
    """
    frame = lake.scan_days(table.name, symbol, days, schema=dict(table.schema)).collect()
    parts = frame.with_columns(_day=partition_day_expr()).partition_by(
        "_day", as_dict=True, include_key=False
    )
    per_day: dict[date, dict[str, Any]] = {}
    for day in days:
        part = parts.get((day,))
        per_day[day] = {
            **day_metadata.get(day, {}),
            "dagster/row_count": 0 if part is None else part.height,
            "lake_path": dg.MetadataValue.path(str(lake.day_file(table.name, symbol, day))),
            "preview": dg.MetadataValue.md(
                "(no rows)" if part is None else _markdown(part.head(PREVIEW_ROWS))
            ),
        }
    yield from materialize_days(
        context,
        table_key(table),
        per_day,
        common={"dagster/column_schema": column_schema(table)},
        range_only={**(range_metadata or {}), "days": len(days), "rows": frame.height},
        materialize_all=materialize_all,
    )
    errors = lake.verify_days(table.name, symbol, days)
    if evaluate is None:
        by_day = quality_by_day(table, frame.lazy(), days, as_of)
        yield from checks.day_evaluations(table_key(table), by_day, errors)
    else:
        yield from evaluate(frame, errors)
    if materialize_all:
        yield from checks.check_outputs(context)


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


def record_or_fail(
    context: dg.AssetExecutionContext,
    table: Table,
    lake: Lake,
    symbol: str,
    good: list[date],
    blocked: Mapping[date, list[str]],
    day_metadata: Mapping[date, Mapping[str, Any]],
    evaluate: Evaluate | None = None,
    as_of: datetime | None = None,
) -> Iterator[Any]:
    """Record the days written; then, if any were blocked, fail the step naming them.

    The good days are materialized and checked first, so a red run still shows them.
    """
    yield from record_range(
        context,
        table,
        lake,
        symbol,
        good,
        day_metadata,
        materialize_all=not blocked,
        evaluate=evaluate,
        as_of=as_of,
    )
    if blocked:
        reasons = "; ".join(f"{day}: {', '.join(why)}" for day, why in sorted(blocked.items()))
        raise dg.Failure(
            description=f"{table.name}: {len(blocked)} day(s) not built because a blocking "
            f"upstream check failed ({reasons}). {len(good)} other day(s) were written.",
            metadata={"blocked_days": sorted(d.isoformat() for d in blocked)},
        )
