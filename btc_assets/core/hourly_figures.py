"""Per-day figures of ``features_1h``: point in time, the CoinAPI cross-check, and what each
source gave (the monitoring summaries). Pure: literal frames in, one row per day out.

- ``point_in_time_by_day``: rows whose joined value of any series was published after the
  bar closed (``<prefix>available_at > ts``) or describes a period after it
  (``<prefix>event_time > ts``). Both must be zero: the blocking ``point_in_time`` check.
- ``coinapi_by_day``: bars compared (both closes present), their share of the day's bars,
  the bars whose divergence is above a tolerance, and the largest divergence.
- ``sources_by_day``: per series, the share of bars with a value, the null reasons' counts,
  the share served by each source value (fallbacks included), and the age of the values
  used (``ts - <prefix>event_time``, hours: median and max); per derived input, nulls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from btc_assets.core.forecast_schema import JoinedSeries
from btc_assets.core.schema import partition_day_expr

HOURS = 3_600_000  # ms


def _by_day(frame: pl.DataFrame, days: Sequence[date]) -> pl.DataFrame:
    return frame.with_columns(_day=partition_day_expr()).filter(pl.col("_day").is_in(list(days)))


def point_in_time_by_day(
    frame: pl.DataFrame, series: Sequence[JoinedSeries], days: Sequence[date]
) -> dict[date, dict[str, int]]:
    """day -> {"lookahead_rows": n, "<prefix>lookahead": n, ...} (zeros included)."""
    tagged = _by_day(frame, days)
    checks = {
        f"{s.prefix}lookahead": (
            (pl.col(f"{s.prefix}available_at") > pl.col("ts"))
            | (pl.col(f"{s.prefix}event_time") > pl.col("ts"))
        ).fill_null(False)
        for s in series
    }
    any_late = pl.any_horizontal(list(checks.values())) if checks else pl.lit(False)
    stats = tagged.group_by("_day").agg(
        lookahead_rows=any_late.sum(),
        **{name: expr.sum() for name, expr in checks.items()},
    )
    found = {row.pop("_day"): row for row in stats.iter_rows(named=True)}
    zeros = {"lookahead_rows": 0, **dict.fromkeys(checks, 0)}
    return {day: {k: int(v) for k, v in found.get(day, zeros).items()} for day in days}


def coinapi_by_day(
    frame: pl.DataFrame, days: Sequence[date], tolerance_bp: float
) -> dict[date, dict[str, Any]]:
    tagged = _by_day(frame, days)
    compared = pl.col("coinapi_divergence_bp").is_not_null()
    stats = tagged.group_by("_day").agg(
        bars=pl.len(),
        compared_bars=compared.sum(),
        divergent_bars=(pl.col("coinapi_divergence_bp") > tolerance_bp).sum(),
        max_divergence_bp=pl.col("coinapi_divergence_bp").max(),
        median_divergence_bp=pl.col("coinapi_divergence_bp").median(),
    )
    found = {row.pop("_day"): row for row in stats.iter_rows(named=True)}
    out: dict[date, dict[str, Any]] = {}
    for day in days:
        none = {"max_divergence_bp": None, "median_divergence_bp": None}
        row = found.get(day, {"bars": 0, "compared_bars": 0, "divergent_bars": 0, **none})
        bars, compared_n = row["bars"], row["compared_bars"]
        out[day] = {
            **row,
            "coinapi_coverage_pct": round(100.0 * compared_n / bars, 4) if bars else None,
            "divergent_pct": round(100.0 * row["divergent_bars"] / compared_n, 4)
            if compared_n
            else None,
        }
    return out


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def sources_by_day(
    frame: pl.DataFrame, series: Sequence[JoinedSeries], days: Sequence[date]
) -> dict[date, dict[str, dict[str, Any]]]:
    """day -> series prefix (without the trailing _) or input -> its figures."""
    tagged = _by_day(frame, days)
    out: dict[date, dict[str, dict[str, Any]]] = {day: {} for day in days}
    for day, part in tagged.group_by("_day"):
        rows = part.height
        figures = out.setdefault(day[0], {})  # type: ignore[index]
        for s in series:
            value = f"{s.prefix}{s.values[0]}"
            age = (pl.col("ts") - pl.col(f"{s.prefix}event_time")).dt.total_milliseconds() / HOURS
            stats = part.select(
                present=pl.col(value).is_not_null().sum(),
                age_median=age.filter(pl.col(value).is_not_null()).median(),
                age_max=age.filter(pl.col(value).is_not_null()).max(),
            ).row(0, named=True)
            sources = part[f"{s.prefix}source"].drop_nulls().value_counts(sort=True)
            reasons = part[f"{s.prefix}null_reason"].drop_nulls().value_counts(sort=True)
            figures[s.prefix.rstrip("_")] = {
                "coverage_pct": _round(100.0 * stats["present"] / rows),
                "null_pct": _round(100.0 * (rows - stats["present"]) / rows),
                "staleness_hours_median": _round(stats["age_median"]),
                "staleness_hours_max": _round(stats["age_max"]),
                "source_pct": {r[0]: _round(100.0 * r[1] / rows) for r in sources.iter_rows()},
                "null_reasons": {r[0]: r[1] for r in reasons.iter_rows()},
            }
        funding = part["funding_source"].drop_nulls().value_counts(sort=True)
        figures["funding"] = {
            "null_pct": _round(100.0 * part["funding_rate"].null_count() / rows),
            "source_pct": {r[0]: _round(100.0 * r[1] / rows) for r in funding.iter_rows()},
        }
        figures["bars"] = {
            "rows": rows,
            "null_pct": {
                c: _round(100.0 * part[c].null_count() / rows)
                for c in ("close", "spot_close", "basis", "ret_24h", "rv_1h", "oi_now")
            },
        }
    return out
