"""The private Dagster APIs the gate and the alerts read (``defs/dagster_internals.py``),
exercised on a real instance: an upgrade that moves or changes them fails here, by name."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from btc_assets.defs import checks
from btc_assets.defs import dagster_internals as internals
from btc_assets.defs.day_gate import check_failures

KEY = dg.AssetKey("probe")
CHECK = dg.AssetCheckKey(KEY, "quality")
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
# day -> (passed, severity); 01-03 is never evaluated
VERDICTS = {
    "2024-01-01": (True, dg.AssetCheckSeverity.ERROR),
    "2024-01-02": (False, dg.AssetCheckSeverity.ERROR),
}
WARN_DAY = "2024-01-03"


@dg.asset(
    key=KEY,
    partitions_def=dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1),
    check_specs=[dg.AssetCheckSpec("quality", asset=KEY, blocking=True)],
)
def probe(context: dg.AssetExecutionContext) -> Iterator[object]:
    # Recorded exactly as the project's assets record a day: one partitioned evaluation.
    day = context.partition_key
    passed, severity = VERDICTS.get(day, (False, dg.AssetCheckSeverity.WARN))
    yield dg.MaterializeResult()
    yield checks.day_evaluation(
        KEY, "quality", date.fromisoformat(day), passed=passed, severity=severity,
        description=f"verdict {day}", metadata={},
    )  # fmt: skip
    yield from checks.check_outputs(context)


def _record(instance: dg.DagsterInstance) -> None:
    for day in DAYS:
        assert dg.materialize([probe], instance=instance, partition_key=day).success


def test_failed_partitions_and_latest_evaluation(instance: dg.DagsterInstance) -> None:
    _record(instance)
    failed = internals.failed_partitions(instance, [CHECK], DAYS)
    assert sorted(failed) == [(CHECK, "2024-01-02"), (CHECK, WARN_DAY)]
    latest = internals.latest_evaluation(instance, CHECK, "2024-01-02")
    assert latest is not None and not latest.passed
    assert latest.severity == dg.AssetCheckSeverity.ERROR
    assert latest.description == "verdict 2024-01-02"
    assert internals.latest_evaluation(instance, CHECK, "2024-01-04") is None


def test_failed_executions_newest_first(instance: dg.DagsterInstance) -> None:
    _record(instance)
    failed = internals.failed_executions(instance, CHECK, limit=10)
    assert [e.partition for _, e in failed] == [WARN_DAY, "2024-01-02"]
    assert failed[0][0] >= failed[1][0]  # event timestamps, newest first
    assert len(internals.failed_executions(instance, CHECK, limit=1)) == 1


def test_the_gate_blocks_only_the_error_day(instance: dg.DagsterInstance) -> None:
    _record(instance)
    blocked = check_failures(instance, [KEY], [date.fromisoformat(d) for d in DAYS])
    assert list(blocked) == [date(2024, 1, 2)]
    assert "verdict 2024-01-02" in blocked[date(2024, 1, 2)][0]


def test_asset_job_is_what_define_asset_job_returns() -> None:
    assert isinstance(dg.define_asset_job("probe_job", selection=[KEY]), internals.AssetJob)
