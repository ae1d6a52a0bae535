"""Resampled bar tables: 1m klines -> right-closed bars of each configured interval (15m,
1h, ...), labelled by close time."""

from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.assets.common import (
    LAKE_KINDS,
    SymbolDays,
    derived_provenance,
    partial_cutoff,
    range_days,
    record_days,
    run_symbols,
    table_key,
)
from btc_assets.concurrency import map_members
from btc_assets.core.bars import bar_duration, resample
from btc_assets.core.schema import BAR_SCHEMA, conform, partition_day_expr
from btc_assets.core.tables import Table, resampled_tables
from btc_assets.defs import checks
from btc_assets.defs.day_gate import Input, gated_deps, read_gated
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL, DAILY_START
from btc_assets.defs.resources import DatasetResource


def _resampled_asset(table: Table, source: Table) -> dg.AssetsDefinition:
    every = table.every
    assert every is not None

    @dg.asset(
        name=table.name,
        description=table.description,
        partitions_def=DAILY,
        backfill_policy=DAILY_BACKFILL,
        group_name="bars",
        kinds=LAKE_KINDS,
        **gated_deps([Input(source)]),
        check_specs=[checks.quality_check_spec(table_key(table))],
    )
    def _asset(context: dg.AssetExecutionContext, dataset: DatasetResource) -> Iterator[Any]:
        lake, days = dataset.lake(), range_days(context)
        members = run_symbols(context, dataset.symbols)
        inputs = {"klines": Input(source)}
        gated = read_gated(
            context, lake, members, dataset.env, inputs, days, DAILY_START, dataset.symbol_workers
        )
        # Two perps sharing a spot pair: one table of it, built once.
        owners = {}
        for member in members:
            stored_as = member.lake_symbol(table)
            if stored_as is not None:
                owners.setdefault(stored_as, member)

        def one(stored_as: str) -> SymbolDays:
            read = gated[owners[stored_as].perp]
            klines = read.frames["klines"]
            bars = resample(klines, every).with_columns(_day=partition_day_expr()).collect()
            # Closed bars only: today's last bar may still be forming in the 1m input.
            as_of = partial_cutoff(read.days, klines, bar_duration(every))
            if as_of is not None:
                bars = bars.filter(pl.col("ts") <= as_of)
            parts = bars.partition_by("_day", as_dict=True, include_key=False)
            empty = conform(bars.clear().drop("_day"), BAR_SCHEMA)
            for day in read.days:
                frame = conform(parts.get((day,), empty), BAR_SCHEMA)
                provenance = derived_provenance(dataset.env, [source], day, as_of)
                lake.write_day(table.name, stored_as, day, frame, provenance)
            metadata = {day: {"source": f"resampled from {source.name}"} for day in read.days}
            return SymbolDays(stored_as, metadata, blocked=read.blocked, as_of=as_of)

        done = map_members(one, list(owners), dataset.symbol_workers)
        yield from record_days(
            context,
            table,
            lake,
            days,
            done,
            configured=dataset.lake_symbols(table),
            workers=dataset.symbol_workers,
        )

    return _asset


def bar_assets(intervals: Iterable[str]) -> list[dg.AssetsDefinition]:
    """One asset per table of ``resampled_tables(intervals)`` (``Settings.bar_intervals``;
    15m always), each reading its 1m source through the day gate."""
    assets = []
    for table in resampled_tables(intervals):
        assert table.source is not None  # every resampled table names its 1m source
        assets.append(_resampled_asset(table, table.source))
    return assets
