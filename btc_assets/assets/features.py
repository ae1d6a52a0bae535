"""The 15m feature table ``bars_15m``, computed by ``core.features`` from CoinGlass and Binance.

Look-back comes from the upstream partitions through ``TimeWindowPartitionMapping``: 31 days
before the range for the percentile inputs (OI, funding: the 30-day window plus the funding
schedule's own look-back, so a one-day run equals the same day inside a year-long run), one
day for the 24h / 60m windows and the first 1m return. A range backfill is still one run.
"""

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.assets.common import (
    LAKE_KINDS,
    partial_cutoff,
    range_days,
    record_or_fail,
    table_key,
)
from btc_assets.assets.raw import split_days
from btc_assets.core.features import build_features
from btc_assets.core.gates import feature_quality_by_day, price_divergence_by_day
from btc_assets.core.schema import DERIVED_FEATURES, FEATURE_SCHEMA, conform, day_bounds
from btc_assets.core.tables import (
    AGG_TAKER,
    FEATURES,
    FUNDING_CG,
    LIQUIDATIONS,
    OPEN_INTEREST,
    PERP_1M,
    PERP_15M,
    PRICE,
    SPOT_15M,
    TAKER,
    Table,
)
from btc_assets.defs import checks
from btc_assets.defs.day_gate import gate_days
from btc_assets.defs.partitions import DAILY, SINGLE_RUN
from btc_assets.defs.resources import DatasetResource, QualityGatesResource

IMPUTED_FLAGS = ("oi_now_imputed", "funding_now_imputed")
BAR = timedelta(minutes=15)
PERCENTILES = ("oi_pctile_30d", "funding_pctile_30d")

LOOKBACK_30D = dg.TimeWindowPartitionMapping(
    start_offset=-31, allow_nonexistent_upstream_partitions=True
)
ONE_DAY_BACK = dg.TimeWindowPartitionMapping(
    start_offset=-1, allow_nonexistent_upstream_partitions=True
)
# input name -> (table, partition mapping); None maps day to the same day
SOURCES: dict[str, tuple[Table, dg.PartitionMapping | None]] = {
    "price": (PRICE, None),
    "oi": (OPEN_INTEREST, LOOKBACK_30D),
    "funding": (FUNDING_CG, LOOKBACK_30D),
    "pair_taker": (TAKER, ONE_DAY_BACK),
    "agg_taker": (AGG_TAKER, ONE_DAY_BACK),
    "liquidations": (LIQUIDATIONS, None),
    "perp_1m": (PERP_1M, ONE_DAY_BACK),
    "perp_15m": (PERP_15M, None),
    "spot_15m": (SPOT_15M, None),
}


def gate_figures(
    frame: pl.DataFrame, days: list[date], warmup_days: int, as_of: datetime | None = None
) -> pl.DataFrame:
    """The per-day figures behind the gates, as the check and the QA report both read them."""
    return feature_quality_by_day(
        frame.lazy(),
        days,
        as_of=as_of,
        every="15m",
        warm_from=DAILY.start.astimezone(UTC) + timedelta(days=warmup_days),
        derived=DERIVED_FEATURES,
        imputed_flags=IMPUTED_FLAGS,
        percentiles=PERCENTILES,
    )


def _upstream_days(context: dg.AssetExecutionContext, table: Table) -> list[date]:
    keys = context.asset_partition_keys_for_input(table.name)
    return [date.fromisoformat(key) for key in keys]


@dg.asset(
    name=FEATURES.name,
    description=FEATURES.description,
    partitions_def=DAILY,
    backfill_policy=SINGLE_RUN,
    group_name="features",
    kinds=LAKE_KINDS,
    deps=[dg.AssetDep(table_key(table), partition_mapping=m) for table, m in SOURCES.values()],
    check_specs=checks.feature_check_specs(table_key(FEATURES)),
)
def bars_15m(
    context: dg.AssetExecutionContext, dataset: DatasetResource, gates: QualityGatesResource
) -> Iterator[Any]:
    lake, symbol = dataset.lake(), dataset.symbol
    tables = [table for table, _ in SOURCES.values()]
    good, blocked = gate_days(context, lake, symbol, tables, range_days(context))
    inputs: dict[str, pl.LazyFrame] = {}
    for name, (table, _) in SOURCES.items():
        upstream = _upstream_days(context, table) if good else []
        inputs[name] = lake.scan_days(table.name, symbol, upstream, schema=dict(table.schema))
    frames: Mapping[date, pl.DataFrame] = {}
    as_of = None
    if good:
        # Today's partition reaches as far as CoinGlass price (the grid's clock) has closed.
        as_of = partial_cutoff(good, inputs["price"], BAR)
        start = day_bounds(good[0])[0]
        end = min(day_bounds(good[-1])[1], as_of or day_bounds(good[-1])[1])
        features = build_features(**inputs, start=start, end=end).collect()
        frames = split_days(features, good)
    for day in good:
        lake.write_day(FEATURES.name, symbol, day, conform(frames[day], FEATURE_SCHEMA))

    def evaluate(
        frame: pl.DataFrame, manifest_errors: Mapping[date, str | None]
    ) -> Iterator[dg.AssetCheckEvaluation]:
        by_day = gate_figures(frame, good, gates.warmup_days, as_of)
        yield from checks.feature_evaluations(
            table_key(FEATURES),
            by_day,
            manifest_errors,
            max_gap_pct=gates.max_gap_pct,
            max_imputed_pct=gates.max_imputed_pct,
            imputed_flags=IMPUTED_FLAGS,
        )
        divergence = price_divergence_by_day(
            frame.lazy(), inputs["perp_15m"], good, gates.price_tolerance_bp
        )
        yield from checks.reconciliation_evaluations(
            table_key(FEATURES), divergence, gates.price_tolerance_bp
        )

    metadata = {day: {"source": "core.features.build_features"} for day in good}
    yield from record_or_fail(
        context, FEATURES, lake, symbol, good, blocked, metadata, evaluate=evaluate, as_of=as_of
    )
