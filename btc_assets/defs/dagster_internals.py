"""The private Dagster APIs this project needs, in one module, with why.

Dagster 1.13 exposes the asset-check execution history on the instance's event-log storage
(``get_asset_check_partition_info``, ``get_asset_check_execution_history``), but the types
that filter it (a check's execution status, a partition key) and the type that
``dg.define_asset_job`` returns have no public alias. The per-day gate and the quality
alerts cannot be built without reading that history, so they read it through the functions
below and nothing else imports ``dagster._core``.

``btc_assets_tests/test_defs/test_dagster_internals.py`` records real passing and failing
evaluations on a real instance and reads them back through each function: an upgrade that
moves or changes any of these fails there, by name, before it can silently open the gate.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

# What ``dg.define_asset_job`` returns; schedules and sensors are typed with it.
AssetJob = UnresolvedAssetJobDefinition


def failed_partitions(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], partitions: list[str]
) -> list[tuple[dg.AssetCheckKey, str]]:
    """(check, partition) pairs whose latest execution failed, in one query for the range."""
    infos = instance.event_log_storage.get_asset_check_partition_info(
        list(check_keys), partition_keys=partitions
    )
    return [
        (info.check_key, info.partition_key)
        for info in infos
        if info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED
    ]


def latest_evaluation(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, partition: str
) -> dg.AssetCheckEvaluation | None:
    """The newest evaluation of ``check_key`` for one partition, or None if never evaluated.

    Only finished executions count: a run that plans the check records a pending execution
    first, which must not hide the last real verdict (a run restricted to some symbols
    carries the others' verdicts from it).
    """
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key,
        limit=1,
        partition_filter=PartitionKeyFilter(key=partition),
        status={AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED},
    )
    return _evaluation(records[0]) if records else None


def failed_executions(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, limit: int
) -> list[tuple[float, dg.AssetCheckEvaluation]]:
    """The newest ``limit`` failed evaluations of ``check_key``, as (event time, evaluation)."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=limit, status={AssetCheckExecutionRecordStatus.FAILED}
    )
    out = []
    for record in records:
        evaluation = _evaluation(record)
        if evaluation is not None and record.event is not None:
            out.append((record.event.timestamp, evaluation))
    return out


def _evaluation(record: AssetCheckExecutionRecord) -> dg.AssetCheckEvaluation | None:
    # A record is created when its run is planned and carries an evaluation once evaluated.
    evaluation = record.evaluation
    return evaluation if isinstance(evaluation, dg.AssetCheckEvaluation) else None
