"""The 15m feature table ``bars_15m``, computed by ``core.features`` from CoinGlass and Binance.

Look-back comes from the upstream partitions through ``TimeWindowPartitionMapping``: 31 days
before the range for the percentile inputs (OI, funding: the 30-day window plus the funding
schedule's own look-back, so a one-day run equals the same day inside a year-long run), one
day for the 24h / 60m windows and the first 1m return. A range backfill is still one run.
"""

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
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
from btc_assets.assets.raw import split_days
from btc_assets.concurrency import map_members
from btc_assets.core.features import build_features
from btc_assets.core.gates import (
    feature_quality_by_day,
    price_divergence_by_day,
    source_shares_by_day,
    source_shares_of_day,
)
from btc_assets.core.schema import DERIVED_FEATURES, FEATURE_SCHEMA, conform, day_bounds
from btc_assets.core.tables import (
    AGG_TAKER,
    FEATURES,
    FUNDING,
    FUNDING_CG,
    LIQUIDATIONS,
    METRICS,
    OPEN_INTEREST,
    PERP_1M,
    PERP_15M,
    PRICE,
    SPOT_15M,
    TAKER,
    Table,
)
from btc_assets.defs import checks
from btc_assets.defs.day_gate import GatedRead, Input, gated_deps, read_gated
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL, DAILY_START
from btc_assets.defs.resources import DatasetResource, QualityGatesResource
from btc_assets.lake import Lake

IMPUTED_FLAGS = ("oi_now_imputed", "funding_now_imputed")
BAR = timedelta(minutes=15)
PERCENTILES = ("oi_pctile_30d", "funding_pctile_30d")

# input name -> what it reads: 31 days back for OI and funding (the 30-day window plus the
# funding schedule's own look-back), one for the 24h / 60m windows and the first 1m return.
SOURCES: dict[str, Input] = {
    "price": Input(PRICE),
    "oi": Input(OPEN_INTEREST, lookback_days=31),
    "funding": Input(FUNDING_CG, lookback_days=31),
    "pair_taker": Input(TAKER, lookback_days=1),
    "agg_taker": Input(AGG_TAKER, lookback_days=1),
    "liquidations": Input(LIQUIDATIONS),
    "perp_1m": Input(PERP_1M, lookback_days=1),
    "perp_15m": Input(PERP_15M, lookback_days=1),
    "spot_15m": Input(SPOT_15M, lookback_days=1),
    # Binance substitutes for days CoinGlass has no rows of (outside its plan's history, or
    # refused): used only then, so an unusable day of theirs blocks nothing.
    "metrics": Input(METRICS, lookback_days=31, required=False),
    "funding_settlements": Input(FUNDING, lookback_days=31, required=False),
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


@dg.asset(
    name=FEATURES.name,
    description=FEATURES.description,
    partitions_def=DAILY,
    backfill_policy=DAILY_BACKFILL,
    group_name="features",
    kinds=LAKE_KINDS,
    **gated_deps(SOURCES.values()),
    check_specs=checks.feature_check_specs(table_key(FEATURES)),
)
def bars_15m(
    context: dg.AssetExecutionContext, dataset: DatasetResource, gates: QualityGatesResource
) -> Iterator[Any]:
    lake, days = dataset.lake(), range_days(context)
    members = run_symbols(context, dataset.symbols)
    gated = read_gated(
        context, lake, members, dataset.env, SOURCES, days, DAILY_START, dataset.symbol_workers
    )
    sources = [spec.table for spec in SOURCES.values()]
    perps = [member.perp for member in members]
    reaches = map_members(
        lambda perp: _build_symbol(lake, perp, gated[perp], dataset.env, sources),
        perps,
        dataset.symbol_workers,
    )
    built: dict[str, tuple[GatedRead, datetime | None]] = {
        perp: (gated[perp], as_of) for perp, as_of in zip(perps, reaches, strict=True)
    }
    done = [
        SymbolDays(
            perp,
            {day: {"source": "core.features.build_features"} for day in read.days},
            blocked=read.blocked,
            excluded_lookback=read.excluded_lookback,
            as_of=as_of,
        )
        for perp, (read, as_of) in built.items()
    ]

    def evaluate(
        symbol: str, frame: pl.DataFrame, manifest_errors: Mapping[date, str | None]
    ) -> dict[str, Mapping[date, checks.Verdict]]:
        read, as_of = built[symbol]
        by_day = gate_figures(frame, read.days, gates.warmup_days, as_of)
        divergence = price_divergence_by_day(
            frame.lazy(), read.frames["perp_15m"], read.days, gates.price_tolerance_bp
        )
        quality = checks.feature_verdicts(
            by_day,
            manifest_errors,
            max_gap_pct=gates.max_gap_pct,
            max_imputed_pct=gates.max_imputed_pct,
            imputed_flags=IMPUTED_FLAGS,
        )
        shares = source_shares_by_day(frame.lazy(), read.days)
        for day, verdict in quality.items():
            figures = {
                f"{column.removesuffix('_source')}_from_{source}_pct": round(100.0 * share, 4)
                for column, by_source in source_shares_of_day(shares, day).items()
                for source, share in by_source.items()
            }
            quality[day] = replace(verdict, metadata={**verdict.metadata, **figures})
        return {
            checks.QUALITY: quality,
            checks.RECONCILIATION: checks.reconciliation_verdicts(
                divergence, gates.price_tolerance_bp
            ),
        }

    yield from record_days(
        context,
        FEATURES,
        lake,
        days,
        done,
        configured=dataset.lake_symbols(FEATURES),
        workers=dataset.symbol_workers,
        evaluate=evaluate,
    )


def _build_symbol(
    lake: Lake, symbol: str, read: GatedRead, env: str, sources: list[Table]
) -> datetime | None:
    """Build and write one symbol's feature days; how far today's partial day reaches."""
    good, inputs = read.days, read.frames
    if not good:
        return None
    # Today's partition reaches as far as CoinGlass price (the grid's clock) has closed.
    as_of = partial_cutoff(good, inputs["price"], BAR)
    start = day_bounds(good[0])[0]
    end = min(day_bounds(good[-1])[1], as_of or day_bounds(good[-1])[1])
    features = build_features(**inputs, start=start, end=end).collect()
    frames = split_days(features, good)
    for day in good:
        provenance = derived_provenance(env, sources, day, as_of)
        provenance["excluded_lookback_days"] = len(read.excluded_lookback.get(day, []))
        lake.write_day(FEATURES.name, symbol, day, conform(frames[day], FEATURE_SCHEMA), provenance)
    return as_of
