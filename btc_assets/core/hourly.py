"""The hourly forecasting feature table ``features_1h``: definitions and their Polars code.

Bars are right-closed and labelled by close time: the 1h bar ``ts = 01:00`` covers
``(00:00, 01:00]``. No value at ``ts`` uses data stamped later than ``ts``, and a published
series is seen only from its ``available_at`` (a test perturbs every input after a cut-off
and checks that no earlier row changes). Inputs hold one symbol, in their contract schemas,
keys unique (a duplicate ``ts`` makes a 1:1 join raise). NaN in an input of a derived value
is read as missing; pass-through columns keep theirs.

Columns of ``build_features_1h(..., start, end)`` (``features_1h_schema(series)``), one row
per hour ``ts`` in ``(start, end]`` whatever the inputs hold:

- ``open .. quote_volume``: the Binance perp 1h bar at ``ts``; null if missing.
  ``spot_close``, ``spot_volume``: the spot 1h bar at ``ts`` (null without a spot pair).
- ``basis = close / spot_close - 1``; null if either is missing or ``spot_close <= 0``.
- ``ret_kh = close_t / close_{t-k h} - 1`` (k = 1, 4, 24) with the bar stamped exactly
  ``t - k h`` (by time, not row position): null if that bar is missing or its close <= 0.
- ``rv_1h = sqrt(sum r_m^2)`` over the 1m perp closes ``m`` in ``(ts - 1h, ts]``,
  ``r_m = ln(c_m / c_{m-1min})`` only when the 1m bar one minute earlier exists (a missing
  minute is never bridged; the hour's first minute uses the previous hour's last) and both
  closes are finite and > 0; ``rv_24h`` the same over ``(ts - 24h, ts]``; null when the
  window holds no return. ``minutes_1h``: 1m rows in ``(ts - 1h, ts]`` (60 when whole).
  1m rows off the minute grid are ignored.
- Roll-up of ``bars_15m`` rows stamped ``ts, ts-15m, ts-30m, ts-45m`` (rows off the 15m grid
  are ignored): ``bars_15m`` = how many exist (4 when whole); ``oi_now``, ``oi_source``,
  ``oi_pctile_30d``, ``funding_pctile_30d`` = the row at exactly ``ts`` (the hour's last
  bar), null if missing; ``cvd_perp_1h``, ``liq_long_usd``, ``liq_short_usd`` = sums of
  ``cvd_perp_15m`` / ``liq_*`` over the hour, nulls skipped, null when no row has a value.
- ``oi_delta_kh = oi_now_t / oi_now_{t-k h} - 1`` (k = 1, 4, 24; null unless both exist
  and the earlier is > 0).
- ``funding_rate``, ``funding_source``: ``funding_now`` of the 15m row at ``ts`` with its
  ``funding_source``; where that is missing or null, the CoinAPI funding row at ``ts``
  (``funding_source = "coinapi"``); null with a null source if neither.
  ``funding_delta_24h = funding_rate_t - funding_rate_{t-24h}`` on these (mixed) values.
- ``coinapi_perp_close``, ``coinapi_spot_close``: CoinAPI bar closes at ``ts``;
  ``coinapi_divergence_bp = |close / coinapi_perp_close - 1| * 1e4`` (null unless both and
  the CoinAPI close > 0); ``coinapi_source`` = ``"coinapi"`` when the CoinAPI perp bar
  exists at ``ts``, else ``"unavailable"``.
- Per published series ``s`` (``s.columns()``), joined by ``pit.as_of_join`` on
  ``available_at <= ts`` with ``max_staleness = s.max_staleness_hours``: the latest
  observation known at ``ts`` in its latest vintage known then. ``published[s.prefix]``
  holds ``event_time``, ``available_at`` and the raw values: FRED ``value``; Alpha Vantage
  ``close``, from which ``ret_1d = close / close of the previous session - 1`` is computed
  on the series' knowledge timeline (the previous session is the previous distinct
  ``event_time`` among the rows known when this one was published, so it is point in time
  too; null when there is none or its close <= 0); CryptoQuant ``value`` and ``revised``.
  ``<prefix>source`` is ``fred`` / ``alphavantage`` / ``cryptoquant``, or
  ``cryptoquant_revised`` when the joined row was fetched after the vendor's revision;
  null when the (first) value is null. ``<prefix>null_reason`` is as_of_join's (``nothing
  published yet``, ``stale: ...``), else says why a joined value is null (``ret_1d`` had
  no previous session). A row without a value (FRED ``.`` on a holiday) is not an
  observation: the bar keeps the latest value known, within the staleness bound. A series
  missing from ``published`` or without rows reads as nothing published yet, and so does a
  row published longer than ``horizon`` before the bar; a bar joins only rows published
  after its day began minus ``horizon`` (the look-back the asset reads, so a day built
  alone equals the same day built in a range). Rows with ``available_at <
  event_time`` are not checked here (the raw layer's gate refuses them).

History: pass bars, ``bars_15m`` and CoinAPI rows from ``start - 24h`` (the 24h return and
deltas), 1m klines from ``start - 24h`` too; the values of ``(start, end]`` are then those of
a longer run. Sums are added in a fixed order (``percentile.ordered_sum``), never by a
``group_by`` float sum, so the bits do not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl

from btc_assets.core.feature_sources import number
from btc_assets.core.features import grid
from btc_assets.core.forecast_schema import (
    ALPHAVANTAGE_SOURCE,
    COINAPI_SOURCE,
    CRYPTOQUANT_REVISED_SOURCE,
    CRYPTOQUANT_SOURCE,
    FRED_SOURCE,
    HOURLY_BASE_SCHEMA,
    JoinedSeries,
    features_1h_schema,
)
from btc_assets.core.percentile import ordered_sum, window_sum
from btc_assets.core.pit import as_of_join, knowledge_timeline
from btc_assets.core.schema import TS, UNAVAILABLE_SOURCE, partition_day_expr

HOUR = timedelta(hours=1)
LOOKBACK = timedelta(hours=24)
LAGS_H = (1, 4, 24)
_MS = timedelta(milliseconds=1)
_MINUTE = timedelta(minutes=1)
_QUARTER = timedelta(minutes=15)
_PERP_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume")

# table -> (source value, why a joined row can carry no value)
_VENDORS: dict[str, tuple[str, str]] = {
    "fred_series": (FRED_SOURCE, "vendor served no value (FRED '.')"),
    "alphavantage_daily": (ALPHAVANTAGE_SOURCE, "vendor served no value (Alpha Vantage)"),
    "cryptoquant_flows": (CRYPTOQUANT_SOURCE, "vendor served no value (CryptoQuant null)"),
}
NOTHING_PUBLISHED = "nothing published yet"
NO_PREVIOUS_SESSION = "ret_1d: no previous session with a positive close known"


def _change(now: pl.Expr, before: pl.Expr) -> pl.Expr:
    """``now / before - 1``, null unless ``before > 0`` (a zero or missing base is no return)."""
    return pl.when(before > 0).then(now / before - 1)


def _at(frame: pl.LazyFrame, lag: timedelta = timedelta(0), **columns: pl.Expr) -> pl.LazyFrame:
    """``columns`` of the row stamped ``ts - lag``, labelled ``ts``: a left join on ``ts``
    reads exactly that row, so a missing one gives null, never a neighbour."""
    return frame.select((pl.col("ts").cast(TS) + lag).alias("ts"), **columns)


def _hour_close() -> pl.Expr:
    """The close of the right-closed hour holding ``ts``: (end - 1h, end] -> end."""
    step = HOUR // _MS
    return ((pl.col("ts").dt.epoch("ms") + (step - 1)) // step * step).cast(TS)


def minute_returns(perp_1m: pl.LazyFrame) -> pl.LazyFrame:
    """``ts`` (hour close), ``minutes_1h``, ``_r2`` (sum of squared 1m log returns, null when
    the hour has none) for each hour holding a 1m row (module docstring)."""
    ts, close = pl.col("ts"), number("close")
    prev = close.shift(1)
    valid = ((ts - ts.shift(1)) == _MINUTE) & close.is_finite() & prev.is_finite()
    valid = valid & (close > 0) & (prev > 0)
    hour = pl.col("_hour")
    # unique on-minute rows: an hour holds at most 60, read newest first as lagged columns
    same = [(hour.shift(k) == hour).fill_null(False) for k in range(HOUR // _MINUTE)]
    terms = [pl.when(s).then(pl.col("_r2").shift(k)) for k, s in enumerate(same)]
    returns = pl.sum_horizontal([t.is_not_null().cast(pl.Int64) for t in terms])
    last_of_hour = (hour != hour.shift(-1)).fill_null(True)
    return (
        perp_1m.select(ts.cast(TS), "close")
        .filter(ts.is_not_null() & (ts.dt.epoch("ms") % (_MINUTE // _MS) == 0))
        .sort("ts")
        .select(
            _hour=_hour_close(),
            _r2=pl.when(valid.fill_null(False)).then((close / prev).log().pow(2)),
        )
        .with_columns(
            minutes_1h=pl.sum_horizontal([s.cast(pl.Int64) for s in same]),
            _sum=pl.when(returns > 0).then(ordered_sum(terms)),
        )
        .filter(last_of_hour)
        .select(ts=hour, minutes_1h="minutes_1h", _r2="_sum")
    )


def _rollup_15m(bars_15m: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Per-hour frames of ``bars_15m``: the row at ``ts`` and the four quarters' values.

    Shifted by whole quarters and joined on the hour grid, a row off the 15m grid never
    lands on an hour, so it is ignored without a filter."""
    at_ts = _at(
        bars_15m,
        oi_now=number("oi_now"),
        oi_source=pl.col("oi_source"),
        oi_pctile_30d=pl.col("oi_pctile_30d"),
        funding_pctile_30d=pl.col("funding_pctile_30d"),
        _funding=number("funding_now"),
        _funding_source=pl.col("funding_source"),
    )
    quarters = [
        _at(
            bars_15m,
            k * _QUARTER,
            **{
                f"_row{k}": pl.lit(1, pl.Int64),
                f"_cvd{k}": number("cvd_perp_15m"),
                f"_liql{k}": number("liq_long_usd"),
                f"_liqs{k}": number("liq_short_usd"),
            },
        )
        for k in range(4)
    ]
    return [at_ts, *quarters]


def _hour_sum(name: str) -> pl.Expr:
    """The sum of the hour's four quarters of ``name``, newest first, nulls skipped; null
    when none has a value (a missing bar is not a zero)."""
    terms = [pl.col(f"{name}{k}") for k in range(4)]
    present = pl.any_horizontal([t.is_not_null() for t in terms])
    return pl.when(present).then(ordered_sum(terms))


def _join_all(left: pl.LazyFrame, parts: Sequence[pl.LazyFrame]) -> pl.LazyFrame:
    for part in parts:
        left = left.join(part, on="ts", how="left", validate="1:1")
    return left.sort("ts")


def _with_ret_1d(rows: pl.DataFrame) -> pl.DataFrame:
    """Alpha Vantage rows as their knowledge timeline, with ``ret_1d`` against the previous
    distinct session on it: every row it compares with was published no later."""
    timeline = knowledge_timeline(rows)  # sorted by available_at, event_time non-decreasing
    event, close = pl.col("event_time"), pl.col("close")
    new_session = (event != event.shift(1)).fill_null(True)
    # shifted over the whole timeline first (inside ``over`` it would shift within a session);
    # a revision of the current session keeps comparing with the session before it
    previous = pl.when(new_session).then(close.shift(1))
    return (
        timeline.with_columns(_previous=previous)
        .with_columns(ret_1d=_change(close, pl.col("_previous").first().over("event_time")))
        .drop("_previous")
    )


def join_published(
    bars: pl.DataFrame,
    s: JoinedSeries,
    rows: pl.DataFrame | None,
    horizon: timedelta | None = None,
) -> pl.DataFrame:
    """``bars`` (with ``ts``) plus ``s.columns()``, joined point in time (module docstring).

    ``horizon``: a row published longer than this before a bar, or before its day began
    minus ``horizon``, is not seen by it, as if never published (``NOTHING_PUBLISHED``).
    The asset reads that much history, so a day built alone equals the same day built
    inside a range (which holds older rows)."""
    if s.table not in _VENDORS:
        raise ValueError(f"{s.prefix}: unknown published table {s.table!r}")
    source, no_value = _VENDORS[s.table]
    p = s.prefix
    if rows is None or rows.height == 0:
        nulls = {c: pl.lit(None, t) for c, t in s.columns().items()}
        return bars.with_columns(**nulls).with_columns(
            pl.lit(NOTHING_PUBLISHED).alias(f"{p}null_reason")
        )
    raw = list(dict.fromkeys(("close",) if s.table == "alphavantage_daily" else s.values))
    # A date the vendor served without a value (FRED "." on a holiday) is not an
    # observation: the bar keeps the latest value known, within the staleness bound.
    rows = rows.filter(pl.col(raw[0]).is_not_null() & pl.col(raw[0]).is_not_nan())
    if rows.height == 0:
        return join_published(bars, s, None)
    frame = rows.select(
        pl.col("event_time", "available_at").cast(TS), *[pl.col(v).cast(pl.Float64) for v in raw]
    )
    extra: list[str] = []
    if s.table == "alphavantage_daily":
        frame = _with_ret_1d(frame)
    elif s.table == "cryptoquant_flows":
        frame = frame.with_columns(revised=rows["revised"].fill_null(False))
        extra = ["revised"]
    by: list[str] = []
    if horizon is not None:
        # A day's bars see only the rows a run of that day alone reads (published after the
        # day began, minus ``horizon``): each row is joined on every day it is in reach of.
        # Otherwise a longer read could join a row beyond the horizon where the day alone
        # joins an older observation's later revision.
        bars = bars.with_columns(_day=partition_day_expr())
        reach = pl.date_ranges(
            partition_day_expr("available_at"), (pl.col("available_at") + horizon - _MS).dt.date()
        )
        frame = frame.with_columns(_day=reach).explode("_day")
        by = ["_day"]
    joined = as_of_join(
        bars,
        frame,
        values=[*s.values, *extra],
        prefix=p,
        max_staleness=timedelta(hours=s.max_staleness_hours),
        by=by,
    )
    first = pl.col(f"{p}{s.values[0]}")
    label = pl.lit(source)
    if extra:
        revised = pl.col(f"{p}revised").fill_null(False)
        label = pl.when(revised).then(pl.lit(CRYPTOQUANT_REVISED_SOURCE)).otherwise(label)
    why = pl.when(first.is_null()).then(pl.lit(no_value))
    if "ret_1d" in s.values:
        why = why.when(pl.col(f"{p}ret_1d").is_null()).then(pl.lit(NO_PREVIOUS_SESSION))
    out = joined.with_columns(
        pl.when(first.is_not_null()).then(label).alias(f"{p}source"),
        pl.coalesce(pl.col(f"{p}null_reason"), why).alias(f"{p}null_reason"),
    ).drop([f"{p}{c}" for c in extra] + by)
    if horizon is None:
        return out
    beyond = (pl.col("ts") - pl.col(f"{p}available_at")) > pl.lit(horizon)
    forgotten = [c for c in s.columns() if not c.endswith("null_reason")]
    return out.with_columns(
        *[pl.when(beyond).then(None).otherwise(pl.col(c)).alias(c) for c in forgotten],
        pl.when(beyond)
        .then(pl.lit(NOTHING_PUBLISHED))
        .otherwise(pl.col(f"{p}null_reason"))
        .alias(f"{p}null_reason"),
    )


def build_features_1h(
    *,
    symbol: str,
    perp_1h: pl.LazyFrame,
    spot_1h: pl.LazyFrame,
    perp_1m: pl.LazyFrame,
    bars_15m: pl.LazyFrame,
    coinapi_perp: pl.LazyFrame,
    coinapi_spot: pl.LazyFrame,
    coinapi_funding: pl.LazyFrame,
    published: Mapping[str, pl.DataFrame],
    series: Sequence[JoinedSeries],
    start: datetime,
    end: datetime,
    horizon: timedelta | None = None,
) -> pl.DataFrame:
    """``features_1h_schema(series)`` for every hour ``ts`` in ``(start, end]``, sorted.

    Bars (``BAR_SCHEMA``), 1m klines (``KLINE_SCHEMA``), ``bars_15m`` (``FEATURE_SCHEMA``) and
    CoinAPI frames from ``start - 24h``; ``published`` maps ``JoinedSeries.prefix`` to that
    series' rows. Raises ``pit.PointInTimeError`` when a published frame cannot be placed in
    time. Definitions: module docstring.
    """
    history = grid(start - LOOKBACK, end, "1h")
    minutes = perp_1m.filter((pl.col("ts") > start - LOOKBACK - HOUR) & (pl.col("ts") <= end))
    per_hour = [
        _at(perp_1h, **{c: pl.col(c) for c in _PERP_COLUMNS}),
        _at(spot_1h, spot_close=pl.col("close"), spot_volume=pl.col("volume")),
        minute_returns(minutes),
        *_rollup_15m(bars_15m),
        _at(coinapi_perp, coinapi_perp_close=pl.col("close"), _coinapi=pl.lit(True)),
        _at(coinapi_spot, coinapi_spot_close=pl.col("close")),
        _at(coinapi_funding, _coinapi_funding=number("funding_rate")),
    ]
    ours = pl.col("_funding").is_not_null()
    fallback = pl.col("_coinapi_funding").is_not_null()
    # collected once: the lags below join it with itself three times
    base = (
        _join_all(history, per_hour)
        .with_columns(
            funding_rate=pl.when(ours)
            .then(pl.col("_funding"))
            .otherwise(pl.col("_coinapi_funding")),
            funding_source=pl.when(ours)
            .then(pl.col("_funding_source"))
            .when(fallback)
            .then(pl.lit(COINAPI_SOURCE)),
        )
        .collect()
    )
    lagged = [
        _at(
            base.lazy(),
            k * HOUR,
            **{f"_close{k}": number("close"), f"_oi{k}": pl.col("oi_now")},
            **({"_funding24": pl.col("funding_rate")} if k == 24 else {}),
        )
        for k in LAGS_H
    ]
    rv_24h, _ = window_sum("_r2", LOOKBACK, HOUR)
    close = number("close")
    hourly = (
        _join_all(base.lazy(), lagged)
        .with_columns(
            symbol=pl.lit(symbol, pl.String),
            basis=_change(close, number("spot_close")),
            **{f"ret_{k}h": _change(close, pl.col(f"_close{k}")) for k in LAGS_H},
            rv_1h=pl.col("_r2").sqrt(),
            rv_24h=rv_24h.sqrt(),
            minutes_1h=pl.col("minutes_1h").fill_null(0),
            bars_15m=pl.sum_horizontal([pl.col(f"_row{k}").fill_null(0) for k in range(4)]),
            **{f"oi_delta_{k}h": _change(pl.col("oi_now"), pl.col(f"_oi{k}")) for k in LAGS_H},
            funding_delta_24h=pl.col("funding_rate") - pl.col("_funding24"),
            cvd_perp_1h=_hour_sum("_cvd"),
            liq_long_usd=_hour_sum("_liql"),
            liq_short_usd=_hour_sum("_liqs"),
            coinapi_divergence_bp=_change(close, number("coinapi_perp_close")).abs() * 1e4,
            coinapi_source=pl.when(pl.col("_coinapi").fill_null(False))
            .then(pl.lit(COINAPI_SOURCE))
            .otherwise(pl.lit(UNAVAILABLE_SOURCE)),
        )
        .filter(pl.col("ts") > start)
        .select([pl.col(c).cast(t, strict=True) for c, t in HOURLY_BASE_SCHEMA.items()])
        .collect()
    )
    for s in series:
        hourly = join_published(hourly, s, published.get(s.prefix), horizon)
    schema = features_1h_schema(series)
    return hourly.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()]).sort("ts")
