"""Which source the feature table takes each input from, per partition day, and the Binance
substitutes of the CoinGlass inputs in the CoinGlass inputs' per-bar shape.

The choice is per (partition day, input), for the whole day: CoinGlass when its frame has at
least one row of the input in the day (ts in ``(D 00:00, D+1 00:00]``), else the Binance
substitute when that has at least one row in the day, else ``unavailable``. A CoinGlass day
with missing bars keeps CoinGlass (its gaps and imputation as before); a substitute never
fills single bars. The definitions of the substitutes are in ``core/features.py``.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from btc_assets.core.funding import settlements_on_bars
from btc_assets.core.schema import (
    BINANCE_SETTLEMENT_SOURCE,
    COINGLASS_SOURCE,
    TS,
    UNAVAILABLE_SOURCE,
    partition_day_expr,
)

_MS = timedelta(milliseconds=1)


def number(name: str) -> pl.Expr:
    """A float input read with NaN as missing."""
    return pl.col(name).cast(pl.Float64).fill_nan(None)


def days_with_rows(frame: pl.LazyFrame) -> pl.LazyFrame:
    """``day``: each partition day holding at least one row of ``frame`` (a row counts
    whatever its values: a CoinGlass row of nulls is a CoinGlass gap, not a missing day)."""
    day = partition_day_expr(pl.col("ts").cast(TS))
    return frame.select(day=day).drop_nulls().unique()


def day_sources(
    grid: pl.LazyFrame,
    primary: pl.LazyFrame,
    substitute: pl.LazyFrame | None,
    substitute_name: str,
    name: str,
) -> pl.LazyFrame:
    """``ts``, ``name`` for every bar of ``grid``: the source of the bar's day (module rule).

    ``substitute`` None means the input has no substitute (or it was not given).
    """
    bars = _flag_days(grid.select(pl.col("ts").cast(TS)), primary, "_primary")
    source: pl.Expr = pl.lit(UNAVAILABLE_SOURCE)
    if substitute is not None:
        bars = _flag_days(bars, substitute, "_substitute")
        source = pl.when("_substitute").then(pl.lit(substitute_name)).otherwise(source)
    source = pl.when("_primary").then(pl.lit(COINGLASS_SOURCE)).otherwise(source)
    return bars.select("ts", source.alias(name))


def _flag_days(bars: pl.LazyFrame, frame: pl.LazyFrame, flag: str) -> pl.LazyFrame:
    """``bars`` with ``flag``: True where ``frame`` has a row in the bar's partition day."""
    present = days_with_rows(frame).with_columns(pl.lit(True).alias(flag))
    return (
        bars.with_columns(_day=partition_day_expr())
        .join(present, left_on="_day", right_on="day", how="left", validate="m:1")
        .with_columns(pl.col(flag).fill_null(False))
        .drop("_day")
    )


def by_day(primary: pl.LazyFrame, substitute: pl.LazyFrame | None) -> pl.LazyFrame:
    """Every row of ``primary``, and the rows of ``substitute`` in the days ``primary`` has
    no row in. Both hold the same columns, in the same order and dtypes."""
    if substitute is None:
        return primary
    taken = days_with_rows(primary)
    rest = (
        substitute.with_columns(_day=partition_day_expr(pl.col("ts").cast(TS)))
        .join(taken, left_on="_day", right_on="day", how="anti")
        .drop("_day")
    )
    return pl.concat([primary, rest], how="vertical")


# --- the per-bar rows of each input, CoinGlass and substitute in the same shape

PRICE_COLUMNS = ("open", "high", "low", "close", "volume_usd")


def price_rows(price: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, OHLC, ``volume_usd`` of the CoinGlass price bars, as served."""
    return price.select(pl.col("ts").cast(TS), *[pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS])


def price_from_perp(perp_15m: pl.LazyFrame) -> pl.LazyFrame:
    """The price substitute: the Binance perp 15m bar's OHLC as is, ``volume_usd`` its
    ``quote_volume`` (USDT, read as USD)."""
    ohlc = [pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS[:4]]
    volume = pl.col("quote_volume").cast(pl.Float64).alias("volume_usd")
    return perp_15m.select(pl.col("ts").cast(TS), *ohlc, volume)


def oi_rows(oi: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, ``oi_now``: the CoinGlass aggregated OI close of each bar."""
    return oi.select(pl.col("ts").cast(TS), oi_now=pl.col("close").cast(pl.Float64))


def oi_from_metrics(metrics: pl.LazyFrame, step: timedelta) -> pl.LazyFrame:
    """The OI substitute: ``sum_open_interest_value`` (USDT) of the Binance metrics snapshot
    stamped exactly at a bar close; snapshots between closes are not used."""
    on_grid = pl.col("ts").dt.epoch("ms") % (step // _MS) == 0
    return metrics.select(
        pl.col("ts").cast(TS), oi_now=pl.col("sum_open_interest_value").cast(pl.Float64)
    ).filter(pl.col("ts").is_not_null() & on_grid)


def cvd_rows(pair_taker: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, ``cvd_perp_15m``: CoinGlass taker buy - sell (USD) of the perp pair."""
    delta = number("taker_buy_volume_usd") - number("taker_sell_volume_usd")
    return pair_taker.select(pl.col("ts").cast(TS), delta.alias("cvd_perp_15m"))


def cvd_from_perp(perp_15m: pl.LazyFrame) -> pl.LazyFrame:
    """The CVD substitute: ``taker_buy_quote_volume - (quote_volume - taker_buy_quote_volume)``
    of the Binance perp 15m bar (USDT)."""
    buy = number("taker_buy_quote_volume")
    sell = number("quote_volume") - buy
    return perp_15m.select(pl.col("ts").cast(TS), (buy - sell).alias("cvd_perp_15m"))


def _share_terms(futures: pl.Expr, spot: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``_futures``, ``_total`` of a bar; both null when either side is (the bar is skipped
    in both window sums, so they stay comparable)."""
    total = futures + spot
    return pl.when(total.is_not_null()).then(futures).alias("_futures"), total.alias("_total")


def share_rows(agg_taker: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, ``_futures``, ``_total``: CoinGlass aggregated futures and futures + spot taker
    buy + sell volume (USD) of each bar."""
    futures = number("futures_buy_volume_usd") + number("futures_sell_volume_usd")
    spot = number("spot_buy_volume_usd") + number("spot_sell_volume_usd")
    return agg_taker.select(pl.col("ts").cast(TS), *_share_terms(futures, spot))


def share_from_quote_volume(perp_15m: pl.LazyFrame, spot_15m: pl.LazyFrame) -> pl.LazyFrame:
    """The perp share substitute's terms: Binance perp ``quote_volume`` and perp + spot
    ``quote_volume`` (USDT) of each bar present in both."""
    spot = spot_15m.select(pl.col("ts").cast(TS), _spot=number("quote_volume"))
    return (
        perp_15m.select(pl.col("ts").cast(TS), _perp=number("quote_volume"))
        .join(spot, on="ts", how="inner", validate="1:1")
        .select("ts", *_share_terms(pl.col("_perp"), pl.col("_spot")))
    )


def funding_rows(funding: pl.LazyFrame) -> pl.LazyFrame:
    """``ts``, ``funding_rate``, ``funding_source`` of the funding input."""
    return funding.select(
        pl.col("ts").cast(TS),
        pl.col("funding_rate").cast(pl.Float64),
        pl.col("funding_source").cast(pl.String),
    )


def funding_from_settlements(settlements: pl.LazyFrame, grid: pl.LazyFrame) -> pl.LazyFrame:
    """The funding substitute: the Binance settlement in force at each bar close of ``grid``
    (``settlements_on_bars``), as per-bar ``binance_settlement`` rows, the rows the raw
    table's own Binance fallback stores."""
    return settlements_on_bars(settlements, grid).select(
        "ts", "funding_rate", funding_source=pl.lit(BINANCE_SETTLEMENT_SOURCE)
    )
