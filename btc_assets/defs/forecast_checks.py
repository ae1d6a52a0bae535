"""The checks of ``features_1h``, per day and symbol like every lake table's.

- ``quality`` (blocking): the bar gates of ``bars_15m`` on the hourly grid (missing bars under
  the gap limit, unique [symbol, ts], percentiles in (0, 1], the MANIFEST), and **no
  look-ahead**: a day with any row using a value published after its bar fails with ERROR,
  so the gate blocks it downstream like any other failure;
- ``point_in_time`` (blocking): the same look-ahead figures per series, on their own so the
  dashboard shows them every day (``core.hourly_figures.point_in_time_by_day``);
- ``coinapi_reconciliation`` (WARN): the Binance perp close against CoinAPI's, per bar;
- ``sources`` (WARN): per series the share of bars with a value, the sources used
  (fallbacks), null reasons and staleness: the monitoring dashboard. Limits:
  ``ForecastResource``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg

from btc_assets.defs.checks import QUALITY, Verdict

POINT_IN_TIME = "point_in_time"
COINAPI_RECONCILIATION = "coinapi_reconciliation"
SOURCES = "sources"
_ERROR, _WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


def forecast_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            QUALITY,
            asset=asset_key,
            blocking=True,
            description="Per day, ERROR (blocks the day downstream): missing hourly bars "
            "over the gap limit, duplicate [symbol, ts], percentiles outside (0, 1], a "
            "file that does not match its MANIFEST, or any row using a value published "
            "after its bar closed.",
        ),
        dg.AssetCheckSpec(
            POINT_IN_TIME,
            asset=asset_key,
            blocking=True,
            description="Per day and series: rows whose joined value has available_at or "
            "event_time after the bar's ts. Must be 0 (ERROR otherwise).",
        ),
        dg.AssetCheckSpec(
            COINAPI_RECONCILIATION,
            asset=asset_key,
            blocking=False,
            description="Binance perp 1h close vs CoinAPI's, per bar: WARN when the share "
            "of bars beyond the tolerance (bp) is over the limit (ForecastResource).",
        ),
        dg.AssetCheckSpec(
            SOURCES,
            asset=asset_key,
            blocking=False,
            description="Per series: coverage, null reasons, sources (fallbacks) and "
            "staleness of the values used; WARN over the null limit (ForecastResource).",
        ),
    ]


def _lookahead_text(row: Mapping[str, int]) -> str:
    """What a day's look-ahead is, each late series named with its row count."""
    late = {k: v for k, v in row.items() if v and k != "lookahead_rows"}
    return f"{row['lookahead_rows']} row(s) use a value published after their bar: " + ", ".join(
        f"{k.removesuffix('_lookahead')} {v}" for k, v in late.items()
    )


def point_in_time_verdicts(figures: Mapping[date, Mapping[str, int]]) -> dict[date, Verdict]:
    verdicts = {}
    for day, row in figures.items():
        verdicts[day] = Verdict(
            passed=not row["lookahead_rows"],
            severity=_ERROR,
            description=_lookahead_text(row)
            if row["lookahead_rows"]
            else "no row uses a value published after its bar",
            metadata=dict(row),
        )
    return verdicts


def with_lookahead(
    quality: Mapping[date, Verdict], figures: Mapping[date, Mapping[str, int]]
) -> dict[date, Verdict]:
    """``quality`` verdicts failed with ERROR where a row looks ahead, naming the series (the
    gate passes this description on as the cause of every day it blocks downstream)."""
    out = dict(quality)
    for day, verdict in quality.items():
        late = figures.get(day, {}).get("lookahead_rows", 0)
        if late:
            why = _lookahead_text(figures[day])
            out[day] = Verdict(
                passed=False,
                severity=_ERROR,
                description="; ".join([why] + ([] if verdict.passed else [verdict.description])),
                metadata={**verdict.metadata, "lookahead_rows": late},
            )  # fmt: skip
        else:
            out[day] = Verdict(verdict.passed, verdict.severity, verdict.description,
                               {**verdict.metadata, "lookahead_rows": 0})  # fmt: skip
    return out


def coinapi_verdicts(
    figures: Mapping[date, Mapping[str, Any]], tolerance_bp: float, max_divergent_pct: float
) -> dict[date, Verdict]:
    verdicts = {}
    for day, row in figures.items():
        share = row["divergent_pct"]
        if not row["compared_bars"]:
            passed, why = False, "no bar to compare: CoinAPI served none for the day"
        elif share is not None and share > max_divergent_pct:
            passed = False
            why = (f"{row['divergent_bars']} of {row['compared_bars']} bars ({share}%) differ "
                   f"from CoinAPI by more than {tolerance_bp} bp (max "
                   f"{row['max_divergence_bp']:.2f} bp)")  # fmt: skip
        else:
            passed = True
            why = f"{row['compared_bars']} bars within {tolerance_bp} bp of CoinAPI"
        metadata = {k: v for k, v in row.items() if v is not None}
        verdicts[day] = Verdict(passed, _WARN, why, {**metadata, "tolerance_bp": tolerance_bp})
    return verdicts


def sources_verdicts(
    figures: Mapping[date, Mapping[str, Mapping[str, Any]]],
    series: Sequence[str],
    max_null_pct: float,
) -> dict[date, Verdict]:
    verdicts = {}
    for day, by_series in figures.items():
        short = [
            f"{name} null {by_series[name]['null_pct']}%"
            for name in series
            if name in by_series and by_series[name]["null_pct"] > max_null_pct
        ]
        metadata: dict[str, Any] = {}
        for name, row in by_series.items():
            for key, value in row.items():
                if isinstance(value, dict):
                    for inner, v in value.items():
                        metadata[f"{name}.{key}.{inner}"] = v
                elif value is not None:
                    metadata[f"{name}.{key}"] = value
        verdicts[day] = Verdict(
            passed=not short,
            severity=_WARN,
            description="; ".join(short) + f" (limit {max_null_pct}%)"
            if short
            else f"every series within {max_null_pct}% nulls",
            metadata=metadata,
        )
    return verdicts
