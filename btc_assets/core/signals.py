"""Market signals on 15m feature bars: liquidation cascades, funding anomalies, OI shocks.

Input: bars of one or more symbols (``FEATURE_SCHEMA`` columns ``symbol, ts, close, oi_now,
funding_now, liq_long_usd, liq_short_usd``; others are ignored), ``ts`` the bar close. Any
value may be null (NaN is read as null) and bars may be missing. Every look-back is by time,
never by row count, so a gap never makes two bars look adjacent; a quantity "at t - 1h" is
the bar whose ts is exactly ``t - 1h``, and when it is absent or null the statistic is null
and nothing fires. Thresholds come from ``SignalThresholds`` (defaults in brackets).

1. ``liquidation_cascade`` at bar t. ``liq_1h`` = sum of ``liq_long_usd + liq_short_usd``
   over the bars in (t-1h, t], all 4 of them present with both sides non-null. Baseline
   ``b`` = mean hourly liquidations over the 24h before that hour = (sum of the totals over
   the bars in (t-25h, t-1h]) / 24, null unless at least ``cascade_baseline_coverage`` (0.9)
   of those 96 bars have a total. ``ratio = liq_1h / b``, null when b <= 0. Longs dominate
   when their sum over (t-1h, t] >= the shorts' sum. ``move = ln(close_t / close_{t-1h})``,
   ``oi_change = ln(oi_t / oi_{t-1h}) - move``: the change of open interest in coins
   (``oi_now`` is in USD, and its own change would follow the price). Fires when
   ``ratio >= cascade_ratio`` (5.0) and
   ``move <= -cascade_min_move`` (0.005) if longs dominate, ``move >= +cascade_min_move`` if
   shorts do, and ``oi_change <= -cascade_min_oi_drop`` (0.01). ``high`` when also
   ``ratio >= cascade_ratio_high`` (10.0), else ``medium``. value = ratio.
2. ``funding_anomaly`` at t. ``z = (f_t - mean) / std`` of ``funding_now`` over the bars with
   ts in [t-30d, t) (strictly before t; ``std`` is the sample std, ddof=1), null unless that
   window has >= ``funding_min_history`` (672 = 7 days) non-null values and std > 0. Fires
   when ``|z| >= funding_z`` (3.0), ``high`` when ``|z| >= funding_z_high`` (5.0). value = z.
3. ``oi_shock`` at t. ``c = oi_change`` (in coins, as above); fires when ``|c| >= oi_shock`` (0.03),
   ``high`` when ``|c| >= oi_shock_high`` (0.06). value = c.

``threshold`` is the threshold of the row's severity, signed like the value for funding and
OI (-3.0 for a negative funding anomaly).

Episodes and alerts. An episode of a kind is a maximal run of firing bars of one symbol,
each exactly 15m after the previous one (for funding and OI also with the same sign of the
value). It gives one alert row per severity it reaches, at its first bar of at least that
severity: an episode starting medium and later reaching high gives a medium row at its start
and a high row at its first high bar. ``dedupe_key = kind:symbol:<episode start
%Y-%m-%dT%H:%MZ>:severity`` names the event, so a cascade that fires once alerts once, in any
number of runs. ``details`` is compact JSON with sorted keys and floats rounded to 6
significant digits.

Why sums are exact integers: a rolling float sum is updated incrementally, so its last bits
depend on where the frame started, and a one-day run would disagree with a year-long
backfill on a threshold crossed to the last bit. Liquidations are summed in integer cents and
funding in integer units of 1e-12 (its squares in Int128); the windows' sums are then exact
and the same in any run, and std == 0 is an exact test. Consequence for callers: an alert is
identical whatever the run as long as the bars given before ``start`` cover the longest
look-back (30 days) plus any episode still running at ``start``: pass ``SIGNAL_HISTORY``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import polars as pl

from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.schema import TS

BAR = timedelta(minutes=15)
HOUR = timedelta(hours=1)
BASELINE_WINDOW = timedelta(hours=24)  # the baseline ends where the current hour starts
FUNDING_WINDOW = timedelta(days=30)
# Look-back to pass before `start`: the funding window plus two days for running episodes.
SIGNAL_HISTORY = FUNDING_WINDOW + timedelta(days=2)

CASCADE, FUNDING, OI_SHOCK = "liquidation_cascade", "funding_anomaly", "oi_shock"
INPUT_COLUMNS = ("symbol", "ts", "close", "oi_now", "funding_now", "liq_long_usd", "liq_short_usd")
FIGURE_COLUMNS = ("symbol", "ts", "ratio", "move", "oi_change", "z", "oi_1h_change")

_LIQ_SCALE = 100  # liquidations in integer cents
_FUNDING_SCALE = 10**12  # funding in integer units of 1e-12 (a 1e-10 % resolution)
_MAX_LIQ_USD = 1e12  # per bar; keeps 25h of cents far inside Int64
_MAX_ABS_FUNDING = 1.0  # 100 % per period; keeps 30d of squared units inside Int128
_SEVERITY = {1: "medium", 2: "high"}
_KEY_TIME = "%Y-%m-%dT%H:%MZ"


@dataclass(frozen=True)
class SignalThresholds:
    """Thresholds of the three signals (definitions in the module docstring)."""

    cascade_ratio: float = 5.0
    cascade_ratio_high: float = 10.0
    cascade_min_move: float = 0.005
    cascade_min_oi_drop: float = 0.01
    cascade_baseline_coverage: float = 0.9
    funding_z: float = 3.0
    funding_z_high: float = 5.0
    funding_min_history: int = 672
    oi_shock: float = 0.03
    oi_shock_high: float = 0.06

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"SignalThresholds.{field.name}={value!r}: expected a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"SignalThresholds.{field.name}={value!r}: expected a finite number >= 0"
                )
        for name in ("cascade_ratio", "funding_z", "oi_shock"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SignalThresholds.{name}={getattr(self, name)!r}: must be > 0")
            high = f"{name}_high"
            if getattr(self, high) < getattr(self, name):
                raise ValueError(
                    f"SignalThresholds.{high}={getattr(self, high)!r}: must be >= "
                    f"{name}={getattr(self, name)!r}"
                )
        if not 0 < self.cascade_baseline_coverage <= 1:
            raise ValueError(
                f"SignalThresholds.cascade_baseline_coverage={self.cascade_baseline_coverage!r}:"
                " expected a share in (0, 1]"
            )
        if not isinstance(self.funding_min_history, int) or self.funding_min_history < 2:
            raise ValueError(
                f"SignalThresholds.funding_min_history={self.funding_min_history!r}: expected "
                "an integer >= 2 (a sample std needs two values)"
            )


def _prepared(bars: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The input columns, NaN as null, sorted; ValueError naming the culprit on bad input."""
    names = bars.collect_schema().names()
    missing = [c for c in INPUT_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"signal bars: missing columns {missing}")
    values = [c for c in INPUT_COLUMNS if c not in ("symbol", "ts")]
    frame = (
        bars.lazy()
        .select(
            pl.col("symbol").cast(pl.String),
            pl.col("ts").cast(TS),
            *[pl.col(c).cast(pl.Float64).fill_nan(None) for c in values],
        )
        .sort("symbol", "ts")
        .collect()
    )
    if frame["symbol"].null_count() or frame["ts"].null_count():
        raise ValueError("signal bars: symbol and ts must not be null")
    duplicated = frame.filter(pl.struct("symbol", "ts").is_duplicated())
    bad_liq = pl.any_horizontal(
        [(pl.col(c) < 0) | (pl.col(c) > _MAX_LIQ_USD) for c in ("liq_long_usd", "liq_short_usd")]
    )
    problems = (
        (duplicated, "duplicate (symbol, ts)"),
        (frame.filter(bad_liq), f"liquidations outside [0, {_MAX_LIQ_USD:g}] USD"),
        (
            frame.filter(pl.col("funding_now").abs() > _MAX_ABS_FUNDING),
            f"|funding_now| > {_MAX_ABS_FUNDING}",
        ),
    )
    for culprits, what in problems:
        if culprits.height:
            first = culprits.row(0, named=True)
            raise ValueError(
                f"signal bars: {what} in {culprits.height} rows, first symbol={first['symbol']} "
                f"ts={first['ts']:%Y-%m-%dT%H:%M}Z"
            )
    return frame


def _log_ratio(now: str, before: str) -> pl.Expr:
    ok = (pl.col(now) > 0) & (pl.col(before) > 0)
    return pl.when(ok).then((pl.col(now) / pl.col(before)).log())


def _window_sum(x: pl.Expr, window: timedelta, closed: str) -> pl.Expr:
    """Exact integer sum of the non-null values of x in the window, 0 when there are none."""
    return x.rolling_sum_by("ts", window, closed=closed).over("symbol").fill_null(0)


def _statistics(frame: pl.DataFrame, th: SignalThresholds) -> pl.LazyFrame:
    """Per bar: the inputs of every signal, its statistic, and its level (0 none, 1, 2)."""
    hour_ago = frame.lazy().select(
        "symbol",
        (pl.col("ts") + HOUR).alias("ts"),
        close_1h_ago="close",
        oi_1h_ago="oi_now",
    )
    long_q = (pl.col("liq_long_usd") * _LIQ_SCALE).round().cast(pl.Int64)
    short_q = (pl.col("liq_short_usd") * _LIQ_SCALE).round().cast(pl.Int64)
    total_q = long_q + short_q  # null unless both sides are known
    funding_q = (pl.col("funding_now") * _FUNDING_SCALE).round().cast(pl.Int128)
    has_total = total_q.is_not_null().cast(pl.Int64)
    has_funding = funding_q.is_not_null().cast(pl.Int64)
    day_and_hour = BASELINE_WINDOW + HOUR
    baseline_bars = BASELINE_WINDOW // BAR
    stats = (
        frame.lazy()
        .join(hour_ago, on=["symbol", "ts"], how="left", validate="1:1")
        .sort("symbol", "ts")
        .with_columns(
            long_1h_q=_window_sum(long_q, HOUR, "right"),
            short_1h_q=_window_sum(short_q, HOUR, "right"),
            liq_1h_q=_window_sum(total_q, HOUR, "right"),
            n_1h=_window_sum(has_total, HOUR, "right"),
            liq_25h_q=_window_sum(total_q, day_and_hour, "right"),
            n_25h=_window_sum(has_total, day_and_hour, "right"),
            funding_n=_window_sum(has_funding, FUNDING_WINDOW, "left"),
            funding_sum_q=_window_sum(funding_q, FUNDING_WINDOW, "left"),
            funding_sq_q=_window_sum(funding_q * funding_q, FUNDING_WINDOW, "left"),
            funding_q=funding_q,
        )
        .with_columns(
            baseline_q=pl.col("liq_25h_q") - pl.col("liq_1h_q"),
            n_baseline=pl.col("n_25h") - pl.col("n_1h"),
            # n * sum(q^2) - sum(q)^2 = n (n - 1) var(q), exact in Int128
            funding_var_num=pl.col("funding_n") * pl.col("funding_sq_q")
            - pl.col("funding_sum_q") * pl.col("funding_sum_q"),
            move=_log_ratio("close", "close_1h_ago"),
            # in coins: oi_now is USD, whose own change would follow the price
            oi_change=_log_ratio("oi_now", "oi_1h_ago") - _log_ratio("close", "close_1h_ago"),
        )
    )
    hour_complete = pl.col("n_1h") == HOUR // BAR
    baseline_ok = (pl.col("n_baseline") >= th.cascade_baseline_coverage * baseline_bars) & (
        pl.col("baseline_q") > 0
    )
    funding_ok = (
        (pl.col("funding_n") >= th.funding_min_history)
        & (pl.col("funding_var_num") > 0)
        & pl.col("funding_q").is_not_null()
    )
    n = pl.col("funding_n").cast(pl.Float64)
    # z = (n q_t - sum q) / sqrt(n/(n-1) * var_num), every integer part exact
    z_den = (pl.col("funding_var_num").cast(pl.Float64) * n / (n - 1)).sqrt()
    z_num = pl.col("funding_n").cast(pl.Int128) * pl.col("funding_q") - pl.col("funding_sum_q")
    stats = stats.with_columns(
        ratio=pl.when(hour_complete & baseline_ok).then(
            (pl.col("liq_1h_q") * (BASELINE_WINDOW // HOUR)).cast(pl.Float64)
            / pl.col("baseline_q").cast(pl.Float64)
        ),
        longs_dominate=pl.when(hour_complete).then(pl.col("long_1h_q") >= pl.col("short_1h_q")),
        z=pl.when(funding_ok).then(z_num.cast(pl.Float64) / z_den),
        funding_mean=pl.when(funding_ok).then(
            pl.col("funding_sum_q").cast(pl.Float64) / n / _FUNDING_SCALE
        ),
        funding_std=pl.when(funding_ok).then(z_den / n / _FUNDING_SCALE),
    )
    directional = (
        pl.when(pl.col("longs_dominate"))
        .then(pl.col("move") <= -th.cascade_min_move)
        .otherwise(pl.col("move") >= th.cascade_min_move)
    )
    cascade = directional & (pl.col("oi_change") <= -th.cascade_min_oi_drop)
    return stats.with_columns(
        cascade_level=_level(pl.col("ratio"), th.cascade_ratio, th.cascade_ratio_high, cascade),
        funding_level=_level(pl.col("z").abs(), th.funding_z, th.funding_z_high),
        oi_level=_level(pl.col("oi_change").abs(), th.oi_shock, th.oi_shock_high),
    )


def _level(
    statistic: pl.Expr, medium: float, high: float, condition: pl.Expr | None = None
) -> pl.Expr:
    """2 when statistic >= high, 1 when >= medium, else 0 (also when null or not condition)."""
    gate = pl.lit(True) if condition is None else condition.fill_null(False)
    return (
        pl.when(gate & (statistic >= high))
        .then(2)
        .when(gate & (statistic >= medium))
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
    )


def _rounded(name: str) -> pl.Expr:
    return pl.col(name).round_sig_figs(6)


def _alerts(
    stats: pl.LazyFrame,
    kind: str,
    level: str,
    value: str,
    signed: bool,
    thresholds: tuple[float, float],
    details: dict[str, pl.Expr],
) -> pl.LazyFrame:
    """One row per (episode, severity reached) of one kind; see the module docstring."""
    fired = stats.filter(pl.col(level) > 0).with_columns(value=pl.col(value))
    sign = pl.col("value").sign() if signed else pl.lit(0.0)
    previous_ts = pl.col("ts").shift(1).over("symbol")
    # `fired` is sorted by symbol, ts, so a symbol's first row always opens an episode
    opens = previous_ts.is_null() | (pl.col("ts") - previous_ts != BAR)
    if signed:
        opens = opens | (sign != sign.shift(1).over("symbol"))
    episodes = fired.with_columns(episode=opens.cast(pl.Int64).cum_sum()).with_columns(
        episode_start=pl.col("ts").min().over("episode")
    )
    medium, high = thresholds
    rows = [
        episodes.filter(pl.col(level) >= rank)
        .filter(pl.col("episode").is_first_distinct())
        .with_columns(
            severity=pl.lit(_SEVERITY[rank]),
            threshold=(sign if signed else pl.lit(1.0)) * (medium if rank == 1 else high),
        )
        for rank in (1, 2)
    ]
    details = {**details, "episode_start": pl.col("episode_start").dt.strftime(_KEY_TIME)}
    return pl.concat(rows).select(
        "ts",
        "symbol",
        kind=pl.lit(kind),
        severity="severity",
        value="value",
        threshold="threshold",
        details=pl.struct(**dict(sorted(details.items()))).struct.json_encode(),
        dedupe_key=pl.format(
            "{}:{}:{}:{}",
            pl.lit(kind),
            "symbol",
            pl.col("episode_start").dt.strftime(_KEY_TIME),
            "severity",
        ),
    )


def _check_window(start: datetime, end: datetime) -> None:
    for name, moment in (("start", start), ("end", end)):
        if moment.tzinfo is None:
            raise ValueError(f"signal window {name}={moment!r}: expected a timezone-aware datetime")
    if end < start:
        raise ValueError(f"signal window: end={end.isoformat()} before start={start.isoformat()}")


def detect_signals(
    bars: pl.DataFrame | pl.LazyFrame,
    start: datetime,
    end: datetime,
    thresholds: SignalThresholds | None = None,
) -> pl.DataFrame:
    """Alert rows (``ALERT_SCHEMA``) with ``start < ts <= end``, sorted by symbol, ts, kind,
    severity, computed over every bar given: pass ``SIGNAL_HISTORY`` of bars before ``start``
    so that look-back windows and episode starts are the same as in any longer run.
    """
    _check_window(start, end)
    th = thresholds or SignalThresholds()
    stats = _statistics(_prepared(bars), th)
    cascade = _alerts(
        stats,
        CASCADE,
        "cascade_level",
        "ratio",
        signed=False,
        thresholds=(th.cascade_ratio, th.cascade_ratio_high),
        details={
            "liq_1h_usd": (pl.col("liq_1h_q") / _LIQ_SCALE).round_sig_figs(6),
            "baseline_hourly_usd": (
                pl.col("baseline_q") / (_LIQ_SCALE * (BASELINE_WINDOW // HOUR))
            ).round_sig_figs(6),
            "dominant_side": pl.when("longs_dominate")
            .then(pl.lit("long"))
            .otherwise(pl.lit("short")),
            "move": _rounded("move"),
            "oi_change": _rounded("oi_change"),
        },
    )
    funding = _alerts(
        stats,
        FUNDING,
        "funding_level",
        "z",
        signed=True,
        thresholds=(th.funding_z, th.funding_z_high),
        details={
            "funding": _rounded("funding_now"),
            "mean": _rounded("funding_mean"),
            "std": _rounded("funding_std"),
            "n": pl.col("funding_n"),
        },
    )
    oi_shock = _alerts(
        stats,
        OI_SHOCK,
        "oi_level",
        "oi_change",
        signed=True,
        thresholds=(th.oi_shock, th.oi_shock_high),
        details={"oi": _rounded("oi_now"), "oi_1h_ago": _rounded("oi_1h_ago")},
    )
    return (
        pl.concat([cascade, funding, oi_shock])
        .filter(pl.col("ts") > start, pl.col("ts") <= end)
        .select([pl.col(name).cast(dtype) for name, dtype in ALERT_SCHEMA.items()])
        .sort("symbol", "ts", "kind", "severity")
        .collect()
    )


def signal_figures(
    bars: pl.DataFrame | pl.LazyFrame,
    start: datetime,
    end: datetime,
    thresholds: SignalThresholds | None = None,
) -> pl.DataFrame:
    """Per bar with ``start < ts <= end``: the signals' statistics, for diagnostics.

    ``ratio`` (cascade), ``move``, ``oi_change`` (cascade input), ``z`` (funding) and
    ``oi_1h_change`` (OI shock; the same log change as ``oi_change``), null where undefined.
    """
    _check_window(start, end)
    th = thresholds or SignalThresholds()
    return (
        _statistics(_prepared(bars), th)
        .filter(pl.col("ts") > start, pl.col("ts") <= end)
        .with_columns(oi_1h_change=pl.col("oi_change"))
        .select(FIGURE_COLUMNS)
        .sort("symbol", "ts")
        .collect()
    )
