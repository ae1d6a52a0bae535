"""Per-partition quality gate built on ``core.quality``: one check per table per day.

Each table carries one blocking check, ``quality``, whose single evaluation per day carries
every figure, because every evaluation is one event-log write (about 15 ms on sqlite, the
largest item of a long backfill's budget). Its severity follows Dagster's own rule that a
blocking check only blocks when it fails with ERROR:

- ERROR (blocks the day downstream): duplicate ``[symbol, ts]`` keys, OHLC violations,
  negative volumes, time not strictly increasing, nulls in required columns, bars off the
  grid, or a day file that does not match its MANIFEST sha256;
- WARN (reported, does not block): coverage short of expected bars or events, gaps, short
  resampled bars. Exchanges do have outages; a gap is shown, never filled.

Range runs. A single-run backfill step covers many days, and Dagster's own blocking gate is
per step: one failing day would stop every downstream day of the range. So each day's
evaluation is recorded with its partition, and the gate is applied per day by
``day_gate.blocked_days``, which downstream assets call before reading their inputs. The evaluation
events carry ``blocking=False`` so the step does not fail as a whole; the check *spec* stays
``blocking=True``, which is what the UI shows and what ``day_gate.blocked_days`` enforces.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.core.tables import Table
from btc_assets.defs.verdicts import (
    BY_SYMBOL,
    ERROR_SYMBOLS,
    Verdict,
    blocking_symbols,
    day_evaluation,
    merge_verdicts,
    symbol_verdicts,
)

# Re-exported: a check's parts are found here, whatever module holds them.
__all__ = [
    "BY_SYMBOL",
    "ERROR_SYMBOLS",
    "Verdict",
    "blocking_symbols",
    "day_evaluation",
    "merge_verdicts",
    "symbol_verdicts",
]

QUALITY = "quality"

# Figures that must be zero; any other value fails the day with ERROR severity.
INTEGRITY_FIGURES = (
    "duplicate_keys",
    "ohlc_violations",
    "negative_volumes",
    "non_monotonic",
    "null_values",
    "off_grid_rows",
    # published tables (core/published_quality.py)
    "published_early",
    "off_clock_rows",
)


def table_key(table: Table) -> dg.AssetKey:
    """A lake table's asset has the table's name."""
    return dg.AssetKey(table.name)


def quality_check_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        QUALITY,
        asset=asset_key,
        blocking=True,
        description="Per day. ERROR (blocks the day downstream): duplicate [symbol, ts], "
        "OHLC violations, negative volumes, non-monotonic time, nulls, off-grid bars, or a "
        "file that does not match its MANIFEST sha256. WARN: coverage short of expected, "
        "gaps, short bars.",
    )


def day_verdicts(
    quality: pl.DataFrame, manifest_errors: Mapping[date, str | None]
) -> dict[date, Verdict]:
    """One symbol's ``quality`` verdict per day in ``quality`` (a ``*_quality_by_day`` frame)."""
    return {
        row["day"]: _verdict(row, manifest_errors.get(row["day"]))
        for row in quality.iter_rows(named=True)
    }


def _verdict(row: dict[str, Any], manifest_error: str | None) -> Verdict:
    errors, warnings = findings(row)
    if manifest_error:
        errors.append(f"manifest: {manifest_error}")
    coverage, _ = _coverage(row)
    metadata: dict[str, Any] = {name: row[name] for name in INTEGRITY_FIGURES if name in row}
    metadata.update(coverage, manifest_ok=manifest_error is None, rows=row["rows"])
    if manifest_error:
        metadata["manifest_error"] = manifest_error
    severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
    return Verdict(
        passed=not errors and not warnings,
        severity=severity,
        description="; ".join(errors + warnings) or _summary(coverage),
        metadata=metadata,
    )


def findings(row: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """A day's ERRORs (integrity) and WARNs (coverage) from its ``*_quality_by_day`` row.

    A day with neither is complete: what the raw assets record in provenance and reuse.
    """
    errors = [f"{name}={row[name]}" for name in INTEGRITY_FIGURES if row.get(name)]
    return errors, _coverage(row)[1]


def _coverage(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Coverage figures of a bar or event day, and what falls short of expectations."""
    if "observations" in row:  # a published day: no expected count, nothing to fall short
        figures = {"observations": row["observations"], "latest_event": row["latest_event"]}
        warnings = []
    elif "expected_bars" in row:
        expected, present = row["expected_bars"], row["present_bars"]
        figures = {
            "expected": expected,
            "present": present,
            "gap_count": row["gap_count"],
            "longest_gap_bars": row["longest_gap_bars"],
            "short_bars": row["short_bars"],
        }
        warnings = [f"{present}/{expected} bars"] if present < expected else []
        if row["gap_count"]:
            warnings.append(f"{row['gap_count']} gap(s), longest {row['longest_gap_bars']} bar(s)")
        if row["short_bars"]:
            warnings.append(f"{row['short_bars']} short bar(s)")
    else:
        expected, present = row["expected_events"], row["present_events"]
        interval = row["expected_interval"]
        figures = {
            "expected": expected,
            "present": present,
            "interval_minutes": None if interval is None else interval.total_seconds() / 60,
        }
        warnings = (
            [] if expected is not None and present >= expected else [f"{present}/{expected} events"]
        )
    ratio = row.get("coverage")
    if "coverage" in row:
        figures["coverage_pct"] = None if ratio is None else round(100.0 * ratio, 4)
    figures["first_ts"], figures["last_ts"] = row["first_ts"], row["last_ts"]
    return figures, warnings


def _summary(coverage: Mapping[str, Any]) -> str:
    if "observations" in coverage:
        return f"clean: {coverage['observations']} observation(s) published"
    return f"clean: {coverage['present']}/{coverage['expected']} present"


def blocked_verdict(reasons: Sequence[str]) -> Verdict:
    """A day not built because its inputs could not be used fails its gate with ERROR, so the
    block shows in the UI with its cause and travels to every asset further down."""
    return Verdict(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description="blocked, not built: " + " | ".join(reasons),
        metadata={"blocked": True, "blocked_by": len(reasons)},
    )


def check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """Satisfy the step's declared check outputs without recording a range-wide result.

    Yielding an ``AssetCheckResult`` would record one more evaluation with no partition; the
    per-day ``AssetCheckEvaluation`` events already carry the results.
    """
    for check_key in context.selected_asset_check_keys:
        yield dg.Output(
            None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key)
        )


# --- the feature table (bars_15m): the seed's gates, and a cross-vendor reconciliation

RECONCILIATION = "reconciliation"


def feature_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            QUALITY,
            asset=asset_key,
            blocking=True,
            description="Per day, every gate ERROR (blocks the day downstream): missing bars "
            "under the gap limit, imputed share per feature under the limit, no NaN or null "
            "in derived features after the warm-up, unique [symbol, ts], percentiles in "
            "(0, 1], and the file matches its MANIFEST. Limits: QualityGatesResource.",
        ),
        dg.AssetCheckSpec(
            RECONCILIATION,
            asset=asset_key,
            blocking=False,
            description="CoinGlass close vs Binance perp 15m close, per bar, within the "
            "configured tolerance (basis points).",
        ),
    ]


def feature_verdicts(
    by_day: pl.DataFrame,
    manifest_errors: Mapping[date, str | None],
    *,
    max_gap_pct: float,
    max_imputed_pct: float,
    imputed_flags: Sequence[str],
) -> dict[date, Verdict]:
    """One symbol's ``quality`` verdict per day of a ``feature_quality_by_day`` frame."""
    verdicts: dict[date, Verdict] = {}
    for row in by_day.iter_rows(named=True):
        day: date = row["day"]
        expected = row["expected_bars"]
        gap_pct = 100.0 * row["gap_bars"] / expected if expected else 0.0
        imputed = {flag: 100.0 * (row[f"{flag}_share"] or 0.0) for flag in imputed_flags}
        failures = []
        if gap_pct >= max_gap_pct:
            failures.append(f"gaps {gap_pct:.2f}% >= {max_gap_pct}% ({row['gap_bars']} bars)")
        failures += [
            f"{flag.removesuffix('_imputed')} imputed {pct:.2f}% >= {max_imputed_pct}%"
            for flag, pct in imputed.items()
            if pct >= max_imputed_pct
        ]
        if row["derived_nulls"]:
            failures.append(f"{row['derived_nulls']} NaN/null derived values after warm-up")
        if row["duplicate_keys"]:
            failures.append(f"duplicate_keys={row['duplicate_keys']}")
        if row["percentile_out_of_range"]:
            failures.append(f"{row['percentile_out_of_range']} percentiles outside (0, 1]")
        error = manifest_errors.get(day)
        if error:
            failures.append(f"manifest: {error}")
        metadata: dict[str, Any] = {
            "expected_bars": row["expected_bars"],
            "present_bars": row["present_bars"],
            "gap_pct": round(gap_pct, 4),
            **{f"{flag.removesuffix('_imputed')}_imputed_pct": round(p, 4)
               for flag, p in imputed.items()},
            "derived_nulls": row["derived_nulls"],
            **{k: v for k, v in row.items() if k.endswith("_nulls") and v},
            "duplicate_keys": row["duplicate_keys"],
            "percentile_out_of_range": row["percentile_out_of_range"],
            "after_warmup": row["warm"],
            "manifest_ok": error is None,
        }  # fmt: skip
        verdicts[day] = Verdict(
            passed=not failures,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(failures) or "all gates pass",
            metadata=metadata,
        )
    return verdicts


def reconciliation_verdicts(divergence: pl.DataFrame, tolerance_bp: float) -> dict[date, Verdict]:
    """One symbol's ``reconciliation`` verdict per day of a ``price_divergence_by_day`` frame."""
    verdicts: dict[date, Verdict] = {}
    for row in divergence.iter_rows(named=True):
        compared, beyond = row["compared_bars"], row["beyond_tolerance"]
        substituted = row.get("substituted_bars", 0) or 0
        if compared and substituted == compared:
            # The price is the Binance perp close itself: a comparison with itself proves
            # nothing, so the day says so instead of passing at 0 bp.
            description = f"nothing to reconcile: all {compared} bars priced from Binance"
        elif compared:
            description = f"{beyond} of {compared} bars differ by more than {tolerance_bp} bp"
            if substituted:
                description += f" ({substituted} priced from Binance itself)"
        else:
            description = "no bar present on both sides"
        verdicts[row["day"]] = Verdict(
            passed=compared > 0 and beyond == 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                "compared_bars": compared,
                "substituted_bars": substituted,
                "beyond_tolerance": beyond,
                "max_abs_bp": row["max_abs_bp"],
                "mean_abs_bp": row["mean_abs_bp"],
                "tolerance_bp": tolerance_bp,
            },
        )
    return verdicts


# --- warehouse loads: BigQuery holds exactly what the lake holds

ROW_PARITY = "bq_row_parity"
# Float sums differ in the last bits when added up in another order; anything beyond this
# is a real difference (a lost or duplicated row moves the sum by a whole bar's volume).
PARITY_REL_TOL = 1e-9

DayFigures = Mapping[date, tuple[int, float | None]]  # day -> (rows, sum of volume)


def parity_check_spec(asset_key: dg.AssetKey, volume_column: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ROW_PARITY,
        asset=asset_key,
        blocking=True,
        description=f"Per day: the rows in BigQuery for the day equal the rows of the lake day "
        f"file, and sum({volume_column}) matches (relative tolerance {PARITY_REL_TOL}). ERROR "
        "on any difference.",
    )


def parity_verdicts(
    lake: DayFigures, warehouse: DayFigures, volume_column: str
) -> dict[date, Verdict]:
    """One symbol's ``bq_row_parity`` verdict per day of ``lake``. A sum over no value counts
    as 0: Polars sums an empty day to 0, BigQuery to NULL."""
    verdicts: dict[date, Verdict] = {}
    for day in sorted(lake):
        lake_rows, lake_sum = lake[day]
        bq_rows, bq_sum = warehouse.get(day, (0, None))
        problems = []
        if bq_rows != lake_rows:
            problems.append(f"rows: BigQuery {bq_rows}, lake {lake_rows}")
        if not math.isclose(bq_sum or 0.0, lake_sum or 0.0, rel_tol=PARITY_REL_TOL):
            problems.append(f"sum({volume_column}): BigQuery {bq_sum}, lake {lake_sum}")
        verdicts[day] = Verdict(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(problems) or f"{bq_rows} rows, sums match",
            metadata={
                "bigquery_rows": bq_rows,
                "lake_rows": lake_rows,
                f"bigquery_sum_{volume_column}": bq_sum,
                f"lake_sum_{volume_column}": lake_sum,
            },
        )
    return verdicts
