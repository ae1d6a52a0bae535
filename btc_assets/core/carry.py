"""Observations carried onto the 15m grid: OI and funding (definitions: core/features.py).

A bar with its own observation takes it, unflagged; a bar without one carries the latest
observation for at most ``IMPUTE_LIMIT`` bars, flagged; then it is null with the flag False.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from btc_assets.core.bars import bar_duration
from btc_assets.core.feature_sources import day_sources, number, oi_from_metrics, oi_rows
from btc_assets.core.funding import settlements_on_bars
from btc_assets.core.schema import OI_SUBSTITUTE, SETTLEMENT_TIME_SOURCE, TS

IMPUTE_LIMIT = 3


def _carry(
    observations: pl.LazyFrame,
    grid: pl.LazyFrame,
    values: list[str],
    flag: str,
    limit: int,
    step: timedelta,
) -> pl.LazyFrame:
    """Put observations (``ts``, ``_until``, ``values``) on the grid.

    The latest observation at or before a bar is in force while ``ts < _until``; then it is
    carried, flagged, for bars with ``ts < _until + limit * step``; then null (flag False).
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    obs = observations.rename({"ts": "_obs_ts"}).sort("_obs_ts")
    until = pl.col("_until")
    in_force = pl.col("ts") < until
    imputed = (~in_force & (pl.col("ts") < until + limit * step)).fill_null(False)
    keep = in_force.fill_null(False) | imputed
    return (
        grid.select(pl.col("ts").cast(TS))
        .sort("ts")
        .join_asof(obs, left_on="ts", right_on="_obs_ts", strategy="backward")
        .select(
            "ts",
            *[pl.when(keep).then(pl.col(v)).alias(v) for v in values],
            imputed.alias(flag),
        )
    )


def reindex_ffill(
    series: pl.LazyFrame,
    value: str,
    grid: pl.LazyFrame,
    limit: int = IMPUTE_LIMIT,
    *,
    every: str = "15m",
) -> pl.LazyFrame:
    """``ts``, ``value``, ``<value>_imputed`` on every bar of ``grid``, sorted by ts.

    A bar with an observation (a row whose ``value`` is not null/NaN) takes it, unflagged. A
    bar without one takes the latest observation for at most ``limit`` bars after it
    (``t_obs < ts <= t_obs + limit * every``), flagged True; beyond that it is null and the
    flag is False: the flag marks exactly the filled values. Observations before the grid's
    first bar count (pass the history).
    """
    step = bar_duration(every)
    obs = (
        series.select(pl.col("ts").cast(TS), number(value).alias(value))
        .filter(pl.col("ts").is_not_null() & pl.col(value).is_not_null())
        .with_columns(_until=pl.col("ts") + step)
    )
    return _carry(obs, grid, [value], f"{value}_imputed", limit, step)


def funding_on_grid(
    funding: pl.LazyFrame, grid: pl.LazyFrame, limit: int = IMPUTE_LIMIT, *, every: str = "15m"
) -> pl.LazyFrame:
    """``ts``, ``funding_now``, ``funding_now_imputed``, ``funding_source`` on ``grid``.

    ``funding`` is in ``COINGLASS_FUNDING_SCHEMA``. Per-bar rows (CoinGlass, the Binance
    fallback's ``binance_settlement``) are the value of their bar; settlement-stamped rows
    are placed on the bars first (``settlements_on_bars``, over those rows only). Then a bar
    without a value carries the latest one for at most ``limit`` bars, flagged (module
    docstring).
    """
    step = bar_duration(every)
    obs = funding.select(
        pl.col("ts").cast(TS),
        number("funding_rate").alias("funding_now"),
        pl.col("funding_source").cast(pl.String),
    ).filter(pl.col("ts").is_not_null() & pl.col("funding_now").is_not_null())
    stamped = (pl.col("funding_source") == SETTLEMENT_TIME_SOURCE).fill_null(False)
    per_bar = obs.filter(~stamped)
    settlements = obs.filter(stamped).select("ts", funding_rate="funding_now")
    placed = (
        settlements_on_bars(settlements, grid)
        .select("ts", funding_now="funding_rate", funding_source=pl.lit(SETTLEMENT_TIME_SOURCE))
        .join(per_bar, on="ts", how="anti")
    )
    values = ["funding_now", "funding_source"]
    observed = pl.concat([per_bar, placed]).with_columns(_until=pl.col("ts") + step)
    return _carry(observed, grid, values, "funding_now_imputed", limit, step).select(
        "ts", "funding_now", "funding_now_imputed", "funding_source"
    )


def oi_on_grid(
    oi: pl.LazyFrame, metrics: pl.LazyFrame | None, history: pl.LazyFrame, step: timedelta
) -> pl.LazyFrame:
    """``ts``, ``oi_now``, ``oi_now_imputed``, ``oi_source`` on ``history``.

    Each source is carried over its own observations only (their levels differ); a bar takes
    the series of its day's source, and an ``unavailable`` day the CoinGlass one (so only a
    carry from the day before can reach it, as without substitutes).
    """
    coinglass = oi_rows(oi)
    substitute = oi_from_metrics(metrics, step) if metrics is not None else None
    out = reindex_ffill(coinglass, "oi_now", history).join(
        day_sources(history, coinglass, substitute, OI_SUBSTITUTE, "oi_source"),
        on="ts",
        how="left",
        validate="1:1",
    )
    if substitute is None:
        return out.sort("ts")
    carried = reindex_ffill(substitute, "oi_now", history).select(
        "ts", _oi="oi_now", _imputed="oi_now_imputed"
    )
    use = pl.col("oi_source") == OI_SUBSTITUTE
    return (
        out.join(carried, on="ts", how="left", validate="1:1")
        .select(
            "ts",
            pl.when(use).then("_oi").otherwise("oi_now").alias("oi_now"),
            pl.when(use).then("_imputed").otherwise("oi_now_imputed").alias("oi_now_imputed"),
            "oi_source",
        )
        .sort("ts")
    )
