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
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.core.tables import Table

QUALITY = "quality"

# Figures that must be zero; any other value fails the day with ERROR severity.
INTEGRITY_FIGURES = (
    "duplicate_keys",
    "ohlc_violations",
    "negative_volumes",
    "non_monotonic",
    "null_values",
    "off_grid_rows",
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


@dataclass(frozen=True)
class Verdict:
    """One symbol's result of one check for one day.

    A day's evaluation is one event whatever the number of symbols (``merge_verdicts``): the
    event log is a backfill's largest cost, so it must not grow with the basket.
    """

    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity.value,
            "description": self.description,
            "metadata": _clean(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            passed=bool(data["passed"]),
            severity=dg.AssetCheckSeverity(data["severity"]),
            description=str(data["description"]),
            metadata=dict(data.get("metadata", {})),
        )

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == dg.AssetCheckSeverity.ERROR


# Metadata of a day's evaluation: the symbols that failed with ERROR (what the day gate blocks)
# and every symbol's verdict (figures per symbol for the dashboard, and what a run restricted
# to other symbols carries over).
ERROR_SYMBOLS = "error_symbols"
BY_SYMBOL = "by_symbol"
_NAMED_IN_DESCRIPTION = 12


def merge_verdicts(
    asset_key: dg.AssetKey, check_name: str, day: date, verdicts: Mapping[str, Verdict]
) -> dg.AssetCheckEvaluation:
    """The day's one evaluation from every symbol's verdict.

    Fails with ERROR if any symbol does (the gate then blocks only those, by
    ``error_symbols``); its top-level figures are the worst symbol's, so a one-symbol basket
    reads as before and a chart of a figure follows the symbol in trouble.
    """
    names = sorted(verdicts)
    errors = [s for s in names if verdicts[s].blocks]
    warns = [s for s in names if not verdicts[s].passed and s not in errors]
    worst = (errors or warns or names)[0]
    if len(names) == 1:
        description = verdicts[worst].description
    elif errors or warns:
        failing = errors + warns
        description = "; ".join(
            f"{s}: {verdicts[s].description}" for s in failing[:_NAMED_IN_DESCRIPTION]
        ) + (
            f"; and {len(failing) - _NAMED_IN_DESCRIPTION} more"
            if len(failing) > _NAMED_IN_DESCRIPTION
            else ""
        )
    else:
        description = f"all {len(names)} symbols pass"
    metadata = {
        **verdicts[worst].metadata,
        "symbols": len(names),
        "worst_symbol": worst,
        ERROR_SYMBOLS: ",".join(errors),
        "warn_symbols": ",".join(warns),
        BY_SYMBOL: dg.MetadataValue.json({s: verdicts[s].as_json() for s in names}),
    }
    severity = (
        dg.AssetCheckSeverity.ERROR
        if errors or all(v.severity == dg.AssetCheckSeverity.ERROR for v in verdicts.values())
        else dg.AssetCheckSeverity.WARN
    )
    return day_evaluation(
        asset_key,
        check_name,
        day,
        passed=not errors and not warns,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def symbol_verdicts(evaluation: dg.AssetCheckEvaluation) -> dict[str, Verdict]:
    """Every symbol's verdict recorded in a day's evaluation (empty for one recorded before
    verdicts were kept per symbol)."""
    value = evaluation.metadata.get(BY_SYMBOL)
    data = getattr(value, "value", None)
    if not isinstance(data, dict):
        return {}
    return {symbol: Verdict.from_json(v) for symbol, v in data.items()}


def blocking_symbols(evaluation: dg.AssetCheckEvaluation) -> set[str] | None:
    """The symbols a failed evaluation blocks; None: all of them (an evaluation recorded
    before verdicts were kept per symbol names none, so it blocks the whole day)."""
    value = evaluation.metadata.get(ERROR_SYMBOLS)
    text = getattr(value, "value", None)
    if not isinstance(text, str):
        return None
    return {s for s in text.split(",") if s}


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
    if "expected_bars" in row:
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
    ratio = row["coverage"]
    figures["coverage_pct"] = None if ratio is None else round(100.0 * ratio, 4)
    figures["first_ts"], figures["last_ts"] = row["first_ts"], row["last_ts"]
    return figures, warnings


def _summary(coverage: Mapping[str, Any]) -> str:
    return f"clean: {coverage['present']}/{coverage['expected']} present"


def _clean(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata takes str/int/float/bool; timestamps become ISO strings."""
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in metadata.items()
        if value is not None
    }


def day_evaluation(
    asset_key: dg.AssetKey,
    check_name: str,
    day: date,
    *,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: Mapping[str, Any],
) -> dg.AssetCheckEvaluation:
    """One day's result of a partitioned check, as every check of the project records it."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        partition=day.isoformat(),
        passed=passed,
        severity=severity,
        blocking=False,  # the per-day gate is blocked_days; see the module docstring
        description=description,
        metadata=_clean(metadata),
    )


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
        passed = compared > 0 and beyond == 0
        verdicts[row["day"]] = Verdict(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{beyond} of {compared} bars differ by more than {tolerance_bp} bp"
            if compared
            else "no bar present on both sides",
            metadata={
                "compared_bars": compared,
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
