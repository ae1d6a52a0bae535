"""The 15m feature table (``FEATURE_SCHEMA``): definitions and their Polars lazy code.

Bars are right-closed and labelled by close time: bar ``ts`` covers ``(ts - 15m, ts]``. No
feature at ``ts`` uses data stamped later than ``ts`` (a test perturbs every input after a
cut-off and checks that no earlier row changes). Inputs hold one symbol, in their contract
schemas, duplicate keys removed. NaN in an input of a derived feature is read as a missing
value (null), so derived features never carry NaN; pass-through columns keep theirs.

Grid. ``grid(start, end)`` is every 15m ``ts`` in ``(start, end]``. ``build_features``
returns one row per grid bar, present at the sources or not: a bar missing at CoinGlass
price keeps its ``ts`` with null OHLC, so the quality gate counts it instead of never
seeing it.

Sources. CoinGlass's 15m history reaches only 90-180 days back, so every CoinGlass input but
liquidations has a Binance substitute, chosen per (partition day, input) for the whole day:
the CoinGlass rows when the CoinGlass frame has at least one row of the input in the day
(``ts`` in ``(D 00:00, D+1 00:00]``, whatever its values), else the substitute's rows when it
has one there, else none (``unavailable``: the values are those of a missing CoinGlass day,
null). A CoinGlass day with missing bars keeps CoinGlass with its nulls and carries: a
substitute never fills single bars, so the day before and the day after a hand-over differ
only in the ``*_source`` columns and in the definitions below. ``price_source``,
``oi_source``, ``cvd_source``, ``share_source``, ``liq_source`` name the day's choice on every
row, value present or not: ``coinglass``, the substitute (``binance_perp_15m``,
``binance_metrics``, ``binance_perp_taker``, ``binance_quote_volume``) or ``unavailable``
(``core.schema.FEATURE_SOURCES``); ``funding_source`` names the source of each value. The
windows (``cvd_perp_24h``, ``perp_share_60m``, the percentiles) run over the mixed series,
across the level shifts stated below. Price, CVD and perp share are substituted from
``perp_15m`` / ``spot_15m`` (always inputs); OI and funding only when ``metrics`` /
``funding_settlements`` are given, so without them a missing day reads as before. The choice
reads whether a day has a row anywhere in it, a fact of the day's fetch, not a value: no
value at ``ts`` uses data stamped after ``ts``, but a day whose CoinGlass rows begin after
some bar (a plan window starting mid-day) is a CoinGlass day from its first bar, that bar
null.

Columns of ``build_features(..., start, end)``, for ``ts`` in ``(start, end]``:

- ``open, high, low, close, volume_usd``: the CoinGlass price bar at ``ts`` as served;
  null if that bar is missing. Substitute ``binance_perp_15m``: the Binance perp 15m bar at
  ``ts`` (``perp_klines_15m``), OHLC as is and ``volume_usd = quote_volume``, USDT read as
  USD (USDT trades within a few bp of USD). CoinGlass prices the same Binance pair, so the
  two should be close; the reconciliation gate then compares the perp close with itself.
- ``perp_volume``, ``spot_volume``: ``volume`` (base asset) of the Binance perp / spot 15m
  bar at ``ts``, as resampled (a partial bar keeps its partial sum); null if missing.
- ``oi_now``, ``oi_now_imputed``: the CoinGlass aggregated OI ``close`` at ``ts``. A bar
  without an observation (row missing, or close null/NaN) takes the latest observed value
  for at most 3 bars (``t_obs < ts <= t_obs + 45m``), flagged ``oi_now_imputed = True``;
  later bars are null with the flag False (the null shows itself). See ``reindex_ffill``.
  Substitute ``binance_metrics``: ``sum_open_interest_value`` of the Binance ``metrics``
  snapshot stamped exactly at ``ts`` (snapshots every 5 min; those between bar closes are
  not used), with the same carry rule. It is the OI of the Binance perp alone in USDT,
  where CoinGlass aggregates OI across exchanges in USD: a level shift (Binance holds a
  fraction of the aggregate) at every hand-over, which ``oi_pctile_30d`` sees. Each source
  is carried over its own observations only: a bar takes the carried series of its day's
  source, so a carry never crosses a hand-over; an ``unavailable`` day reads the CoinGlass
  series (only a carry from the day before reaches it, as without substitutes).
- ``funding_now``, ``funding_now_imputed``, ``funding_source``: the funding rate in force at
  ``ts``. The funding table holds one row per bar close: CoinGlass rows are closes of its 15m
  funding OHLC bars; on the Binance fallback (``binance_settlement``) each row is the latest
  Binance settlement at or before that close, placed point in time when the day was fetched
  (``core.funding.settlements_on_bars``: a settlement is in force from its time for an
  interval inferred from the spacing of Binance settlements only, min(8h, the two latest
  spacings within 16h), default 8h; a bar past it has no row). So every source reads alike: a
  bar's own row gives its value, unflagged; a bar without one carries the latest value for
  at most 3 bars (``t_obs < ts <= t_obs + 45m``), flagged; then null with the flag False
  (``reindex_ffill`` with limit 3). A look-back mixing CoinGlass days and fallback days
  needs no interval inferred across sources, and the first day of history has a value from
  its first bar (the settlement in force at 00:00 was fetched with the day).
  ``funding_source`` is the source of the value used (null with it). Rows with a null or NaN
  rate are not observations.
    * Rows stamped at their settlement time (``binance_funding_rate``, as days stored by
      earlier versions of the fallback hold them) are first placed on the bars by the same
      rule, over those rows only (a CoinGlass row never shortens a settlement's life); a
      per-bar row at the same ``ts`` wins. Such a day cannot see the settlement in force at
      its 00:00 if it is the first day of history (it lives in the day before): re-fetch it.
    * Substitute (``funding_source = binance_settlement``): a day in which the funding input
      has no row takes per-bar rows from the raw Binance settlements (``funding_settlements``,
      ``binance_funding_rate``) placed by ``settlements_on_bars`` over the whole grid: the
      rows the raw table's own fallback stores, read by the rule above. A day the raw table
      already filled (from CoinGlass or its fallback) has rows and is used as stored. Pass
      settlements from ``SETTLEMENT_LOOKBACK`` (24h) before ``start - 30d``.
- ``rv_15m``: ``sqrt(sum r_m^2)`` over the 1m bars ``m`` of the Binance perp inside the bar,
  ``r_m = ln(close_m / close_{m-1})`` only when the 1m bar ``m - 1min`` exists (a missing
  minute is never bridged; the first minute of a bar uses the previous bar's last minute,
  time <= ts) and both closes are finite and > 0. Null when the bar has no such return.
- ``cvd_perp_15m``: ``taker_buy_volume_usd - taker_sell_volume_usd`` of the perp pair at
  ``ts``; null if the bar is missing (or either side null). Substitute
  ``binance_perp_taker``: ``taker_buy_quote_volume - (quote_volume - taker_buy_quote_volume)``
  of the Binance perp 15m bar at ``ts`` (USDT), the same pair's taker flow.
- ``cvd_perp_24h``: sum of ``cvd_perp_15m`` over bars in ``(ts - 24h, ts]`` (by time: the
  bar exactly 24h earlier is out), nulls skipped; null only if no bar in the window has a
  value. Summing over what is present (rather than nulling on any gap) keeps one missing
  bar from blanking 96 rows; the gate still sees the missing bar in ``cvd_perp_15m``.
- ``perp_share_60m``: ``sum(futures buy + sell) / sum(futures + spot buy + sell)`` of the
  CoinGlass aggregated taker volume over bars in ``(ts - 60m, ts]``; a bar with any of the
  four volumes null is skipped in both sums (numerator and denominator stay comparable);
  null if no bar remains or the denominator is not > 0. Substitute ``binance_quote_volume``:
  per bar, futures = Binance perp 15m ``quote_volume`` and total = perp + spot 15m
  ``quote_volume`` (USDT), a bar missing either side or with a null skipped in both sums,
  same window. Binance only where CoinGlass aggregates an exchange list: a level shift.
- ``liq_long_usd``, ``liq_short_usd``: CoinGlass long / short liquidations at ``ts``; a
  missing bar stays null (not zero: absence of data is not absence of liquidations). No
  substitute: a day without a CoinGlass row has ``liq_source = unavailable``, both null.
- ``oi_pctile_30d``, ``funding_pctile_30d``: ``rolling_percentile`` of ``oi_now`` /
  ``funding_now`` over grid bars in ``(ts - 30d, ts]``: the share of the window's non-null
  values ``<=`` the current one (ties count, current included, so in ``(0, 1]``); null where
  the value is null. The window uses the filled values (imputed bars included).

History: callers pass inputs from ``start - 30d`` (the asset's 30-day partition mapping),
and 1m bars from ``start`` (the first return of bar ``start + 15m``). Windows are computed
on the grid ``(start - 30d, end]``. A bar near ``start - 30d`` may take its OI or funding
from an observation before that (up to 45m; for settlement-stamped funding rows up to 8h,
plus the 16h their interval reads: 24h), so with exactly 30 days of input the percentiles
of a run's first hours can differ slightly from those of a longer run. With 31 days of
input a day's rows are identical to the same day inside a longer run (tested). The same
holds with substitutes: ``metrics`` and ``funding_settlements`` from ``start - 31d``, and
``perp_15m`` / ``spot_15m`` from ``start - 24h`` at least (the CVD and perp share windows
read them on the days before ``start`` that CoinGlass lacks).

Same bits everywhere: window sums are added afresh per row in a fixed order
(``percentile.window_sum`` / ``ordered_sum``), never incrementally, and never with a
``group_by`` or ``sum_horizontal`` float sum, whose last bits differ between the streaming
and in-memory engines; a test collects with both. Per-bar joins validate ``1:1``, so an
input with duplicate ``ts`` makes ``collect`` raise instead of duplicating rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from btc_assets.core.bars import bar_duration
from btc_assets.core.carry import funding_on_grid, oi_on_grid
from btc_assets.core.feature_sources import (
    PRICE_COLUMNS,
    by_day,
    cvd_from_perp,
    cvd_rows,
    day_sources,
    funding_from_settlements,
    funding_rows,
    number,
    price_from_perp,
    price_rows,
    share_from_quote_volume,
    share_rows,
)
from btc_assets.core.percentile import ordered_sum, rolling_percentile, window_sum
from btc_assets.core.schema import (
    CVD_SUBSTITUTE,
    FEATURE_SCHEMA,
    PRICE_SUBSTITUTE,
    SHARE_SUBSTITUTE,
    TS,
    UNAVAILABLE_SOURCE,
)

PERCENTILE_WINDOW = timedelta(days=30)
CVD_WINDOW = timedelta(hours=24)
SHARE_WINDOW = timedelta(minutes=60)
_MS = timedelta(milliseconds=1)
_MINUTE = timedelta(minutes=1)


def _on_grid_moment(name: str, moment: datetime, step: timedelta) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{name}={moment} is naive; pass a UTC-aware datetime")
    if round(moment.timestamp() * 1000) % (step // _MS):
        raise ValueError(f"{name}={moment} is not on the {step} grid")


def grid(start: datetime, end: datetime, every: str = "15m") -> pl.LazyFrame:
    """``ts`` (``TS`` dtype) of every bar in ``(start, end]``, sorted; empty if end <= start.

    ``start`` and ``end`` must be UTC-aware and on the ``every`` grid.
    """
    step = bar_duration(every)
    _on_grid_moment("start", start, step)
    _on_grid_moment("end", end, step)
    stamps = pl.datetime_range(
        start + step, end, step, closed="both", time_unit="ms", time_zone="UTC"
    )
    return pl.LazyFrame().select(ts=stamps.cast(TS)).set_sorted("ts")


def _bar_close(step: timedelta) -> pl.Expr:
    """The close time of the right-closed bar holding ``ts``: (end - step, end] -> end."""
    step_ms = step // _MS
    ms = pl.col("ts").dt.epoch("ms")
    return ((ms + (step_ms - 1)) // step_ms * step_ms).cast(TS)


def realized_vol(perp_1m: pl.LazyFrame, every: str = "15m") -> pl.LazyFrame:
    """``ts``, ``rv_15m`` for each bar holding at least one 1m row, sorted by ts.

    ``rv_15m = sqrt(sum r_m^2)``, ``r_m = ln(close_m / close_{m-1})`` for consecutive 1m
    bars only (a missing minute is never bridged), both closes finite and > 0; null when the
    bar has no return. Rows off the minute grid are ignored (they break the contract).

    The sum over a bar's minutes is written out as lagged columns added in a fixed order
    (``percentile.ordered_sum``), not a ``group_by`` sum, whose last bits differed between
    the streaming and the in-memory engine.
    """
    step = bar_duration(every)
    ts, close = pl.col("ts"), number("close")
    prev = close.shift(1)
    consecutive = (ts - ts.shift(1)) == _MINUTE
    valid = consecutive & close.is_finite() & prev.is_finite() & (close > 0) & (prev > 0)
    r2 = pl.when(valid.fill_null(False)).then((close / prev).log().pow(2))
    bar = pl.col("_bar")
    # unique on-minute rows: a bar holds at most step / 1m of them, newest first
    terms = [
        pl.when(bar.shift(k) == bar).then(pl.col("_r2").shift(k)) for k in range(step // _MINUTE)
    ]
    count = pl.sum_horizontal([t.is_not_null().cast(pl.Int64) for t in terms])
    last_of_bar = (bar != bar.shift(-1)).fill_null(True)  # the next row is in the same bar or later
    return (
        perp_1m.select(ts.cast(TS), "close")
        .filter(ts.is_not_null() & (ts.dt.epoch("ms") % (_MINUTE // _MS) == 0))
        .sort("ts")
        .select(_bar=_bar_close(step), _r2=r2)
        .with_columns(_n=count, _sum=ordered_sum(terms))
        .filter(last_of_bar)
        .select(ts=bar, rv_15m=pl.when(pl.col("_n") > 0).then(pl.col("_sum").sqrt()))
    )


def _on_grid(frame: pl.LazyFrame, grid: pl.LazyFrame, *columns: pl.Expr) -> pl.LazyFrame:
    """Left-join per-bar ``columns`` of ``frame`` onto the grid, sorted by ts (keys unique)."""
    bars = frame.select(pl.col("ts").cast(TS), *columns)
    return (
        grid.select(pl.col("ts").cast(TS))
        .join(bars, on="ts", how="left", validate="1:1")
        .sort("ts")
    )


def _cvd_on_grid(rows: pl.LazyFrame, grid: pl.LazyFrame, step: timedelta) -> pl.LazyFrame:
    """``ts``, ``cvd_perp_15m``, ``cvd_perp_24h`` from per-bar ``cvd_perp_15m`` rows."""
    total, _ = window_sum("cvd_perp_15m", CVD_WINDOW, step)
    return _on_grid(rows, grid, pl.col("cvd_perp_15m")).with_columns(cvd_perp_24h=total)


def cvd(pair_taker: pl.LazyFrame, grid: pl.LazyFrame, *, every: str = "15m") -> pl.LazyFrame:
    """``ts``, ``cvd_perp_15m``, ``cvd_perp_24h`` on every bar of ``grid`` (see module).

    The 24h window sums bars of ``grid``, so start the grid 24h before the first bar you
    need. ``grid`` must be sorted-unique with spacing no finer than ``every``.
    """
    return _cvd_on_grid(cvd_rows(pair_taker), grid, bar_duration(every))


def _share_on_grid(rows: pl.LazyFrame, grid: pl.LazyFrame, step: timedelta) -> pl.LazyFrame:
    """``ts``, ``perp_share_60m`` from per-bar ``_futures``, ``_total`` rows."""
    fut_sum, _ = window_sum("_futures", SHARE_WINDOW, step)
    all_sum, _ = window_sum("_total", SHARE_WINDOW, step)
    return _on_grid(rows, grid, pl.col("_futures"), pl.col("_total")).select(
        "ts", perp_share_60m=pl.when(all_sum > 0).then(fut_sum / all_sum)
    )


def perp_share(agg_taker: pl.LazyFrame, grid: pl.LazyFrame, *, every: str = "15m") -> pl.LazyFrame:
    """``ts``, ``perp_share_60m`` on every bar of ``grid`` (see module). The 60m window sums
    bars of ``grid`` (start it 45m before the first bar you need)."""
    return _share_on_grid(share_rows(agg_taker), grid, bar_duration(every))


def _symbol(frames: list[pl.LazyFrame], symbol: str | None) -> pl.LazyFrame:
    """One row: ``symbol`` if given, else the first non-null symbol of the inputs."""
    if symbol is not None:
        return pl.LazyFrame({"symbol": [symbol]}, schema={"symbol": pl.String()})
    found = [f.select(pl.col("symbol").cast(pl.String)).drop_nulls().head(1) for f in frames]
    none = pl.LazyFrame({"symbol": [None]}, schema={"symbol": pl.String()})
    return pl.concat([*found, none]).head(1)


def build_features(
    price: pl.LazyFrame,
    oi: pl.LazyFrame,
    funding: pl.LazyFrame,
    pair_taker: pl.LazyFrame,
    agg_taker: pl.LazyFrame,
    liquidations: pl.LazyFrame,
    perp_1m: pl.LazyFrame,
    perp_15m: pl.LazyFrame,
    spot_15m: pl.LazyFrame,
    start: datetime,
    end: datetime,
    *,
    symbol: str | None = None,
    metrics: pl.LazyFrame | None = None,
    funding_settlements: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """The ``FEATURE_SCHEMA`` table for every 15m bar with ts in ``(start, end]``, sorted.

    Inputs in their contract schemas (CoinGlass price/OI/funding/taker/agg taker/
    liquidations, Binance 1m perp klines and 15m perp/spot bars), covering
    ``(start - 30d, end]`` (1m bars from ``start``). ``symbol`` defaults to the first
    non-null symbol found in the inputs. Substitutes for the days a CoinGlass input has no
    row: price, CVD and perp share from ``perp_15m`` / ``spot_15m``; OI from ``metrics``
    (``METRICS_SCHEMA``) and funding from ``funding_settlements`` (``FUNDING_SCHEMA``, from
    ``SETTLEMENT_LOOKBACK`` before ``start - 30d``) when given. Definitions: module docstring.
    """
    every = "15m"  # FEATURE_SCHEMA names its windows in 15m bars
    step = bar_duration(every)
    history = grid(start - PERCENTILE_WINDOW, end, every)
    funding_mixed = funding
    if funding_settlements is not None:
        substitute = funding_from_settlements(funding_settlements, history)
        funding_mixed = by_day(funding_rows(funding), substitute)
    cvd_primary, share_primary = cvd_rows(pair_taker), share_rows(agg_taker)
    cvd_substitute = cvd_from_perp(perp_15m)
    share_substitute = share_from_quote_volume(perp_15m, spot_15m)
    windowed = (
        oi_on_grid(oi, metrics, history, step)
        .join(funding_on_grid(funding_mixed, history), on="ts", how="left", validate="1:1")
        .sort("ts")
        .with_columns(
            oi_pctile_30d=rolling_percentile("oi_now", "ts", PERCENTILE_WINDOW),
            funding_pctile_30d=rolling_percentile("funding_now", "ts", PERCENTILE_WINDOW),
        )
        .join(
            _cvd_on_grid(by_day(cvd_primary, cvd_substitute), history, step),
            on="ts",
            how="left",
            validate="1:1",
        )
        .join(
            _share_on_grid(by_day(share_primary, share_substitute), history, step),
            on="ts",
            how="left",
            validate="1:1",
        )
        .filter(pl.col("ts") > start)
    )
    days = grid(start, end, every)
    primary_price, price_substitute = price_rows(price), price_from_perp(perp_15m)
    liq = liquidations.select(pl.col("ts").cast(TS))
    sources = [
        day_sources(days, primary_price, price_substitute, PRICE_SUBSTITUTE, "price_source"),
        day_sources(days, cvd_primary, cvd_substitute, CVD_SUBSTITUTE, "cvd_source"),
        day_sources(days, share_primary, share_substitute, SHARE_SUBSTITUTE, "share_source"),
        day_sources(days, liq, None, UNAVAILABLE_SOURCE, "liq_source"),
    ]
    minutes = perp_1m.filter((pl.col("ts") >= start) & (pl.col("ts") <= end))
    per_bar = [
        (by_day(primary_price, price_substitute), [pl.col(c) for c in PRICE_COLUMNS]),
        (perp_15m, [pl.col("volume").alias("perp_volume")]),
        (spot_15m, [pl.col("volume").alias("spot_volume")]),
        (
            liquidations,
            [
                pl.col("long_liquidation_usd").alias("liq_long_usd"),
                pl.col("short_liquidation_usd").alias("liq_short_usd"),
            ],
        ),
        (realized_vol(minutes, every), [pl.col("rv_15m")]),
    ]
    out = windowed
    for frame, columns in per_bar:
        bars = frame.select(pl.col("ts").cast(TS), *columns)
        out = out.join(bars, on="ts", how="left", validate="1:1")
    for source in sources:
        out = out.join(source, on="ts", how="left", validate="1:1")
    inputs = [price, perp_15m, oi, funding, pair_taker, agg_taker, liquidations, spot_15m]
    inputs += [f for f in (metrics, funding_settlements) if f is not None]
    return (
        out.join(_symbol(inputs, symbol), how="cross")
        .select([pl.col(c).cast(t, strict=True) for c, t in FEATURE_SCHEMA.items()])
        .sort("ts")
    )
