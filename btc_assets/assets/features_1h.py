"""``features_1h``: one row per symbol per hour, computed by ``core.hourly`` (definitions
there and in the README).

Inputs through the day gate: the Binance perp and spot 1h bars, the 1m perp klines and
``bars_15m`` (a day before each output day, for the 24 h windows and lags), all required:
a blocked input day blocks the symbol's day. CoinAPI's bars and funding are a cross-check
and a fallback (not required). The published series (FRED, Alpha Vantage, CryptoQuant) are
read over ``published_lookback_days`` before each day, not required either: a value
nobody could know stays null with its reason, and each day's metadata counts the
publication days left out (a failed gate, a bad file) and those never built.

A day built alone equals the same day inside a range: every input is read over the same
look-back, and a published row older than the look-back is ignored (``horizon``).
"""

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
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
from btc_assets.core.forecast_schema import JoinedSeries
from btc_assets.core.gates import feature_quality_by_day
from btc_assets.core.hourly import build_features_1h
from btc_assets.core.hourly_figures import coinapi_by_day, point_in_time_by_day, sources_by_day
from btc_assets.core.schema import conform, day_bounds
from btc_assets.core.tables import (
    COINAPI_FUNDING,
    COINAPI_PERP_1H,
    COINAPI_SPOT_1H,
    FEATURES,
    PERP_1H,
    PERP_1M,
    PUBLISHED_TABLES,
    SPOT_1H,
    features_1h_table,
)
from btc_assets.defs import checks
from btc_assets.defs.day_gate import Input, PublishedRead, gated_deps, read_gated, read_published
from btc_assets.defs.forecast_checks import (
    COINAPI_RECONCILIATION,
    POINT_IN_TIME,
    SOURCES,
    coinapi_verdicts,
    forecast_check_specs,
    point_in_time_verdicts,
    sources_verdicts,
    with_lookahead,
)
from btc_assets.defs.forecast_resources import ForecastResource
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL, DAILY_START
from btc_assets.defs.resources import DatasetResource, QualityGatesResource

HOUR = timedelta(hours=1)
PERCENTILES = ("oi_pctile_30d", "funding_pctile_30d")
# Beyond the longest staleness bound: a stale value is still seen (as stale) and Alpha
# Vantage's previous session is in reach after a long weekend.
LOOKBACK_MARGIN_DAYS = 7

INPUTS: dict[str, Input] = {
    "perp_1h": Input(PERP_1H, lookback_days=1),
    "spot_1h": Input(SPOT_1H, lookback_days=1),
    "perp_1m": Input(PERP_1M, lookback_days=1),
    "bars_15m": Input(FEATURES, lookback_days=1),
    "coinapi_perp": Input(COINAPI_PERP_1H, lookback_days=1, required=False),
    "coinapi_spot": Input(COINAPI_SPOT_1H, lookback_days=1, required=False),
    "coinapi_funding": Input(COINAPI_FUNDING, lookback_days=1, required=False),
}


def published_lookback_days(series: Sequence[JoinedSeries]) -> int:
    longest = max((s.max_staleness_hours for s in series), default=0.0)
    return math.ceil(longest / 24) + LOOKBACK_MARGIN_DAYS


def published_rows(read: PublishedRead, s: JoinedSeries) -> pl.DataFrame:
    """The stored rows of one joined series (CryptoQuant: its metric, exchange, field)."""
    frame = read.frames.get((s.table, s.symbol))
    if frame is None:
        return pl.DataFrame()
    if s.field is not None:
        frame = frame.filter(
            (pl.col("metric") == s.metric)
            & (pl.col("exchange") == s.exchange)
            & (pl.col("field") == s.field)
        )
    return frame.collect()


def features_1h_asset(series: Sequence[JoinedSeries]) -> dg.AssetsDefinition:
    """The asset for the configured joined ``series`` (``ForecastSettings.joined_series``)."""
    table = features_1h_table(series)
    lookback = published_lookback_days(series)
    published_inputs = [Input(t, lookback_days=lookback, required=False) for t in PUBLISHED_TABLES]

    @dg.asset(
        name=table.name,
        description=table.description,
        partitions_def=DAILY,
        backfill_policy=DAILY_BACKFILL,
        group_name="forecast",
        kinds=LAKE_KINDS,
        **gated_deps([*INPUTS.values(), *published_inputs]),
        check_specs=forecast_check_specs(table_key(table)),
    )
    def features_1h(
        context: dg.AssetExecutionContext,
        dataset: DatasetResource,
        gates: QualityGatesResource,
        forecast: ForecastResource,
    ) -> Iterator[Any]:
        lake, days = dataset.lake(), range_days(context)
        members = run_symbols(context, dataset.symbols)
        joined = forecast.joined_series()
        if [s.prefix for s in joined] != [s.prefix for s in series]:
            raise ValueError(
                "the configured series changed since the definitions were loaded: reload the "
                "code location (features_1h's columns follow BTC_ASSETS_FRED_SERIES, "
                "BTC_ASSETS_ALPHAVANTAGE_SYMBOLS, BTC_ASSETS_CRYPTOQUANT_FIELDS)"
            )
        gated = read_gated(
            context, lake, members, dataset.env, INPUTS, days, DAILY_START, dataset.symbol_workers
        )
        names = {t.name: dataset.lake_symbols(t) for t in PUBLISHED_TABLES}
        published = read_published(
            context, lake, dataset.env, published_inputs, names, days, DAILY_START
        )
        rows = {s.prefix: published_rows(published, s) for s in series}
        horizon = timedelta(days=lookback)

        def build(perp: str) -> datetime | None:
            read = gated[perp]
            if not read.days:
                return None
            # Today's partition reaches as far as the perp's 1h bars have closed.
            as_of = partial_cutoff(read.days, read.frames["perp_1h"], HOUR)
            start = day_bounds(read.days[0])[0]
            end = min(day_bounds(read.days[-1])[1], as_of or day_bounds(read.days[-1])[1])
            frame = build_features_1h(
                symbol=perp, **read.frames, published=rows, series=series,
                start=start, end=end, horizon=horizon,
            )  # fmt: skip
            frames = split_days(frame, read.days)
            for day in read.days:
                provenance = derived_provenance(
                    dataset.env, [s.table for s in [*INPUTS.values(), *published_inputs]], day,
                    as_of,
                )  # fmt: skip
                provenance["published_days_left_out"] = len(published.excluded.get(day, []))
                lake.write_day(table.name, perp, day, conform(frames[day], dict(table.schema)),
                               provenance)  # fmt: skip
            return as_of

        perps = [m.perp for m in members]
        reaches = dict(zip(perps, map_members(build, perps, dataset.symbol_workers), strict=True))
        done = [
            SymbolDays(
                perp,
                {day: _day_metadata(published, day) for day in gated[perp].days},
                blocked=gated[perp].blocked,
                excluded_lookback={
                    d: [*gated[perp].excluded_lookback.get(d, []), *published.excluded.get(d, [])]
                    for d in gated[perp].days
                },
                as_of=reaches[perp],
            )
            for perp in perps
        ]

        def evaluate(
            symbol: str, frame: pl.DataFrame, manifest_errors: Mapping[date, str | None]
        ) -> dict[str, Mapping[date, checks.Verdict]]:
            good = gated[symbol].days
            by_day = feature_quality_by_day(
                frame.lazy(), good, as_of=reaches[symbol], every="1h",
                warm_from=DAILY.start, derived=(), imputed_flags=(), percentiles=PERCENTILES,
            )  # fmt: skip
            quality = checks.feature_verdicts(
                by_day, manifest_errors, max_gap_pct=gates.max_gap_pct,
                max_imputed_pct=gates.max_imputed_pct, imputed_flags=(),
            )  # fmt: skip
            late = point_in_time_by_day(frame, series, good)
            return {
                checks.QUALITY: with_lookahead(quality, late),
                POINT_IN_TIME: point_in_time_verdicts(late),
                COINAPI_RECONCILIATION: coinapi_verdicts(
                    coinapi_by_day(frame, good, forecast.max_coinapi_divergence_bp),
                    forecast.max_coinapi_divergence_bp,
                    forecast.max_coinapi_divergent_pct,
                ),
                SOURCES: sources_verdicts(
                    sources_by_day(frame, series, good),
                    [s.prefix.rstrip("_") for s in series],
                    forecast.max_series_null_pct,
                ),
            }

        yield from record_days(
            context,
            table,
            lake,
            days,
            done,
            configured=dataset.lake_symbols(table),
            workers=dataset.symbol_workers,
            evaluate=evaluate,
            blocked_checks=(checks.QUALITY, POINT_IN_TIME),
        )

    return features_1h


def _day_metadata(published: PublishedRead, day: date) -> dict[str, Any]:
    return {
        "source": "core.hourly.build_features_1h",
        "published_days_left_out": len(published.excluded.get(day, [])),
        "published_days_never_built": published.missing.get(day, 0),
    }
