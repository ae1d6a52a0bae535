"""Per-partition quality gates built on ``core.quality``.

Every table carries two checks, each carrying many figures in one evaluation because every
evaluation is one event-log write (the budget of a long backfill):

- ``integrity`` (blocking, ERROR): unique ``[symbol, ts]``, OHLC sanity, volumes, monotonic
  time, no nulls in required columns, bars on the grid, and the day file matches its MANIFEST;
- ``coverage`` (WARN): expected vs present bars or events, gap count and longest gap.
  Exchanges do have outages, so a gap is reported, never hidden, but does not stop the graph.

Range runs. A single-run backfill step covers many days, and Dagster's own blocking gate is
per step: one failing day would stop every downstream day of the range. So each day's
evaluation is yielded with its partition, and the blocking gate is applied per day by
``blocked_days``, which downstream assets call before they read their inputs. The evaluation
events therefore carry ``blocking=False`` (the step must not fail as a whole), while the check
*spec* stays ``blocking=True`` and is what the UI and ``blocked_days`` read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

INTEGRITY = "integrity"
COVERAGE = "coverage"

_INTEGRITY_COUNTS = (
    "duplicate_keys",
    "ohlc_violations",
    "negative_volumes",
    "non_monotonic",
    "null_values",
    "off_grid_rows",
)


def table_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            INTEGRITY,
            asset=asset_key,
            blocking=True,
            description="Unique [symbol, ts], OHLC sanity, non-negative volumes, monotonic "
            "time, no nulls, and the day file matches its MANIFEST sha256. Blocks the day "
            "downstream when it fails.",
        ),
        dg.AssetCheckSpec(
            COVERAGE,
            asset=asset_key,
            blocking=False,
            description="Expected vs present bars (or events), gap count and longest gap.",
        ),
    ]


def day_evaluations(
    asset_key: dg.AssetKey,
    quality: pl.DataFrame,
    manifest_errors: Mapping[date, str | None],
) -> Iterator[dg.AssetCheckEvaluation]:
    """Both checks' evaluations for every day in ``quality`` (a ``*_quality_by_day`` frame)."""
    for row in quality.iter_rows(named=True):
        day: date = row["day"]
        yield _integrity(asset_key, row, manifest_errors.get(day))
        yield _coverage(asset_key, row)


def _integrity(
    asset_key: dg.AssetKey, row: dict[str, Any], manifest_error: str | None
) -> dg.AssetCheckEvaluation:
    failures = [f"{name}={row[name]}" for name in _INTEGRITY_COUNTS if row.get(name)]
    if manifest_error:
        failures.append(f"manifest: {manifest_error}")
    metadata: dict[str, Any] = {name: row[name] for name in _INTEGRITY_COUNTS if name in row}
    metadata["rows"] = row.get("rows", row.get("present_events"))
    metadata["manifest_ok"] = manifest_error is None
    if manifest_error:
        metadata["manifest_error"] = manifest_error
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=INTEGRITY,
        partition=row["day"].isoformat(),
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=False,  # the per-day gate is blocked_days; see the module docstring
        description="; ".join(failures) if failures else "all integrity figures clean",
        metadata=_clean(metadata),
    )


def _coverage(asset_key: dg.AssetKey, row: dict[str, Any]) -> dg.AssetCheckEvaluation:
    if "expected_bars" in row:
        expected, present = row["expected_bars"], row["present_bars"]
        metadata = {
            "expected_bars": expected,
            "present_bars": present,
            "coverage_pct": round(100.0 * row["coverage"], 4),
            "gap_count": row["gap_count"],
            "longest_gap_bars": row["longest_gap_bars"],
            "first_ts": row["first_ts"],
            "last_ts": row["last_ts"],
        }
        if "short_bars" in row:
            metadata["short_bars"] = row["short_bars"]
        passed = present >= expected and not row["gap_count"] and not row.get("short_bars")
        description = (
            f"{present}/{expected} bars, {row['gap_count']} gap(s), longest "
            f"{row['longest_gap_bars']} bar(s)"
        )
    else:
        expected, present = row["expected_events"], row["present_events"]
        metadata = {
            "expected_events": expected,
            "present_events": present,
            "coverage_pct": round(100.0 * row["coverage"], 4)
            if row["coverage"] is not None
            else None,
            "interval_minutes": row["expected_interval"].total_seconds() / 60
            if row.get("expected_interval") is not None
            else None,
            "first_ts": row["first_ts"],
            "last_ts": row["last_ts"],
        }
        passed = expected is not None and present >= expected
        description = f"{present}/{expected} events"
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=COVERAGE,
        partition=row["day"].isoformat(),
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.WARN,
        blocking=False,
        description=description,
        metadata=_clean(metadata),
    )


def _clean(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata takes str/int/float/bool; timestamps become ISO strings."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """Satisfy the step's declared check outputs without recording a range-wide result.

    Yielding an ``AssetCheckResult`` would record one more evaluation with no partition; the
    per-day ``AssetCheckEvaluation`` events already carry the results.
    """
    for check_key in context.selected_asset_check_keys:
        yield dg.Output(
            None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key)
        )


def blocked_days(
    instance: dg.DagsterInstance,
    upstream: Sequence[dg.AssetKey],
    days: Iterable[date],
) -> dict[date, list[str]]:
    """Days whose latest blocking check on any upstream asset failed, with the reasons.

    One event-log query for the whole range. A day never checked is not blocked: the
    downstream asset's own integrity check still runs on what it writes.
    """
    keys = [dg.AssetCheckKey(asset_key, INTEGRITY) for asset_key in upstream]
    by_key = {day.isoformat(): day for day in days}
    infos = instance.event_log_storage.get_asset_check_partition_info(
        keys, partition_keys=list(by_key)
    )
    blocked: dict[date, list[str]] = {}
    for info in infos:
        if info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED:
            day = by_key[info.partition_key]
            blocked.setdefault(day, []).append(
                f"{info.check_key.asset_key.to_user_string()}.{info.check_key.name} failed"
            )
    return blocked
