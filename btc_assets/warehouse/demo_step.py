"""The demo's warehouse step: BigQuery loads after the daily job, only with WAREHOUSE=bigquery.

DuckDB is the embedded default and needs nothing; BigQuery needs a project and credentials
(or an emulator endpoint), so ``check`` names what is missing before any run starts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from btc_assets.settings import Settings
from btc_assets.warehouse.resources import BigQueryWarehouseResource, WarehouseConfigError

JOB = "btc_bigquery"
__all__ = ["WarehouseConfigError", "WarehouseRun", "check", "load"]


@dataclass(frozen=True)
class WarehouseRun:
    success: bool
    summary: str
    run_ids: tuple[str, ...] = ()


def check(defs: dg.Definitions, settings: Settings) -> None:
    """Raise ``WarehouseConfigError`` (naming the env vars to set) if BigQuery is selected
    but not usable; do nothing for the DuckDB default."""
    if settings.warehouse.kind == "bigquery":
        resource = defs.resources["bigquery"]
        assert isinstance(resource, BigQueryWarehouseResource)
        resource.preflight()


def load(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    start: date,
    end: date,
    run_config: dict[str, Any],
) -> WarehouseRun:
    """Run the BigQuery loads over ``start .. end`` when selected; else say how to."""
    if settings.warehouse.kind != "bigquery":
        return WarehouseRun(
            True,
            "bigquery: skipped (WAREHOUSE=duckdb; set WAREHOUSE=bigquery to load into BigQuery)",
        )
    result = defs.resolve_job_def(JOB).execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
        run_config=run_config,
        raise_on_error=False,
    )
    rows: Counter[str] = Counter()
    days: Counter[str] = Counter()
    for record in instance.all_logs(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ):
        event = record.dagster_event
        assert event is not None
        materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
        name = materialization.asset_key.to_user_string()
        if "blocked" in materialization.metadata:
            continue  # recorded as blocked, not loaded
        count = materialization.metadata.get("dagster/row_count")
        days[name] += 1
        rows[name] += int(count.value) if count is not None else 0
    parity: dict[str, Counter[str]] = {}
    for record in instance.all_logs(
        result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ):
        evaluation = record.dagster_event.event_specific_data  # type: ignore[union-attr]
        verdict = "passed" if evaluation.passed else "failed"
        parity.setdefault(evaluation.asset_key.to_user_string(), Counter())[verdict] += 1
    s = settings.warehouse
    lines = []
    for name in sorted(days):
        checks = parity.get(name, Counter())
        verdict = f"{checks['passed']} passed, {checks['failed']} failed"
        table = f"{s.bigquery_project}.{s.bigquery_dataset}.{name.removeprefix('bq_')}"
        lines.append(f"{name:<26}{days[name]:>6}{rows[name]:>10}  {verdict:<34}{table}")
    total = sum(parity.values(), Counter())
    lines.append(
        f"bigquery run {result.run_id[:8]}: {'succeeded' if result.success else 'FAILED'}, "
        f"bq_row_parity {total['passed']} passed, {total['failed']} failed"
        + (f", staged on gs://{s.gcs_bucket}/{s.gcs_prefix}" if s.gcs_bucket else "")
    )
    return WarehouseRun(result.success, "\n".join(lines), (result.run_id,))
