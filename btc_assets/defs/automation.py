"""Schedules, sensors and freshness checks: the long-lived deployment's clockwork.

- ``tail_refresh`` (schedule): daily at ``BTC_ASSETS_TAIL_REFRESH_CRON`` (UTC), one run over
  the last N complete days (``BTC_ASSETS_TAIL_DAYS``) of every daily table. Those days are
  inside the tail window, so the raw feeds re-fetch them (vendors publish late and revise).
- ``live_today`` (sensor): refreshes today's partial partition with closed bars once the
  stream collector's staging has moved ``BTC_ASSETS_STREAM_TRIGGER_MINUTES`` closed minutes
  (or crossed a 15-minute boundary), and every ``BTC_ASSETS_LIVE_INTERVAL_SECONDS``
  regardless (no collector: REST polling), unless the previous live run is still going. A live run
  carries ``dagster/max_runtime`` (``live_max_runtime_seconds``), so the daemon's run
  monitoring fails one whose worker died unnoticed (its code server died with it) instead of
  leaving it STARTED; should monitoring be off, the sensor stops waiting for a run in flight
  for twice that limit and says so in the log.
- ``warehouse_refresh`` (sensor): rebuilds the DuckDB views and the QA report (the
  ``warehouse_catalog`` job) once an input they read has a newer materialization than they
  do and none of those inputs is being written. Why a sensor and not the assets'
  ``AutomationCondition.eager()``: eager() is evaluated only by the automation-condition
  sensor, and even with that sensor on it never fires here, because both assets are
  unpartitioned over daily partitions since ``BTC_ASSETS_START_DATE`` and eager() waits
  until none of those thousands of parent days is missing. This sensor asks the one question
  that matters (did the lake change since the views were built?) from the asset records,
  so it follows any writer: the live and daily jobs, the tail refresh, a UI backfill, a
  partly failed run.
- ``freshness`` (asset checks on the raw feeds): fail when the newest closed bar is older
  than the feed's cadence plus ``BTC_ASSETS_FRESHNESS_SLACK_MINUTES``; run by the live job.
- ``quality_alerts`` / ``run_failure_alerts`` (sensors): a Telegram message when a blocking
  check fails with ERROR, or a run fails.

Everything is off by default and switched on with ``BTC_ASSETS_AUTOMATION=on`` (or in the UI).
"""

import json
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import Any

import dagster as dg

from btc_assets import clock
from btc_assets.core.bars import bar_duration
from btc_assets.core.tables import Table
from btc_assets.defs.checks import table_key
from btc_assets.defs.dagster_internals import AssetJob, failed_executions
from btc_assets.defs.resources import DatasetResource, TelegramResource
from btc_assets.settings import Settings
from btc_assets.stream.collector import stream_targets
from btc_assets.stream.staging import MINUTE_MS, Staging

FRESHNESS = "freshness"
TRIGGER_TAG = "btc_assets/trigger"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Binance settles funding every 8h; a feed without a bar interval is judged on that cadence.
EVENT_CADENCE = timedelta(hours=8)
ALERT_LINES = 20
ALERT_WINDOW = 2000  # failed executions per check read per tick: a year's backfill fits
MINUTE = timedelta(minutes=1)
# Dagster's per-run time limit, enforced by the daemon's run monitoring (dagster.yaml).
MAX_RUNTIME_TAG = "dagster/max_runtime"
# A live run is one partial day of every daily table: well under a minute normally. Ten
# minutes (or the interval, if longer) is far beyond that, and short enough that a dead run
# does not stop the live refresh for long.
LIVE_MIN_RUNTIME_LIMIT = 600
IN_FLIGHT_LOOKUP = 20  # live runs in flight read per tick; more than one means trouble
# How often the live sensor looks at the stream staging (a few SQLite reads).
STREAM_POLL_SECONDS = 15
STREAM_BOUNDARY_MS = 15 * 60_000
LIVE_REASON_TAG = "btc_assets/live_reason"


def _status(settings: Settings) -> dg.DefaultScheduleStatus:
    on = settings.automation_on
    return dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED


def sensor_status(settings: Settings) -> dg.DefaultSensorStatus:
    on = settings.automation_on
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def build_weekly_retrain(job: AssetJob, settings: Settings) -> dg.ScheduleDefinition:
    """Monday 03:00 UTC, after the tail refresh has rebuilt the weekend's closed days."""
    return dg.ScheduleDefinition(
        name="weekly_retrain",
        cron_schedule="0 3 * * 1",
        execution_timezone="UTC",
        job=job,
        default_status=_status(settings),
        description="Rebuild the training dataset and retrain the baseline model; the "
        "service picks the new version up without a restart.",
    )


def tail_days(end_exclusive: date, n: int) -> tuple[date, date]:
    """The last ``n`` complete days before ``end_exclusive``."""
    return end_exclusive - timedelta(days=n), end_exclusive - timedelta(days=1)


def build_tail_refresh(job: AssetJob, settings: Settings) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="tail_refresh",
        cron_schedule=settings.tail_refresh_cron,
        execution_timezone="UTC",
        job=job,
        default_status=_status(settings),
        description=f"Re-pull the last {settings.tail_days} complete UTC days of every daily "
        "table in one run (the seed's --refresh-tail).",
    )
    def tail_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        first, last = tail_days(context.scheduled_execution_time.date(), settings.tail_days)
        return dg.RunRequest(
            run_key=f"tail-{first}-{last}",
            tags={
                RANGE_START: first.isoformat(),
                RANGE_END: last.isoformat(),
                TRIGGER_TAG: "tail_refresh",
            },
        )

    return tail_refresh


def live_max_runtime_seconds(settings: Settings) -> int:
    """``dagster/max_runtime`` of a live run: monitoring fails a run still going after it."""
    return max(settings.live_interval_seconds, LIVE_MIN_RUNTIME_LIMIT)


def _in_flight_since(record: dg.RunRecord) -> float:
    # STARTED runs have a start time; the others changed status last when they got to it.
    return record.start_time or record.update_timestamp.timestamp()


def waits_for_live_run(status: dg.DagsterRunStatus, age_s: float, give_up_after: float) -> bool:
    """Whether the live sensor still waits for a run in flight for ``age_s`` seconds.

    Queued runs always: they hold no worker, and requesting more would pile them up. Others
    until ``give_up_after``: by then run monitoring should long have failed the run, so it
    is off or broken and the run is most likely dead.
    """
    return status == dg.DagsterRunStatus.QUEUED or age_s <= give_up_after


def stream_moved(before: int | None, now: int | None, trigger_minutes: int) -> bool:
    """Has the stream staging moved enough since the last live run to ask for another:
    ``trigger_minutes`` closed minutes, or across a 15-minute boundary (a new bars_15m row)?"""
    if now is None:
        return False
    if before is None:
        return True
    step = STREAM_BOUNDARY_MS
    return now - before >= trigger_minutes * MINUTE_MS or now // step > before // step


def build_live_today(job: AssetJob, settings: Settings) -> dg.SensorDefinition:
    interval = settings.live_interval_seconds
    # Twice the limit monitoring enforces (limit + one poll): see waits_for_live_run.
    give_up_after = 2 * live_max_runtime_seconds(settings)
    staging = Staging(settings.stream_dir)
    pairs = [(t.table, t.symbol) for t in stream_targets(settings.symbols)]
    trigger = settings.stream.trigger_minutes

    @dg.sensor(
        name="live_today",
        job=job,
        minimum_interval_seconds=min(interval, STREAM_POLL_SECONDS),
        default_status=sensor_status(settings),
        description="Keep today's partial partition current with closed bars: a run once the "
        f"stream staging has moved {trigger} closed minute(s) or crossed a 15-minute "
        f"boundary, and every {interval} s regardless; skip while the previous live run is "
        "still going (runs never pile up).",
    )
    def live_today(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = clock.now_utc()
        watermark = staging.watermark(pairs, now.date())
        moved = stream_moved(cursor.get("watermark"), watermark, trigger)
        due = now.timestamp() - cursor.get("requested_s", 0) >= interval
        if not (moved or due):
            behind = (watermark - cursor["watermark"]) // MINUTE_MS if watermark else 0
            return dg.SkipReason(
                f"stream moved {behind} closed minute(s) since the last live run (asks at "
                f"{trigger}); next timed run within {interval} s"
            )
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=IN_FLIGHT_LOOKUP
        )
        now_s = clock.epoch_seconds()
        for record in records:
            run, age = record.dagster_run, now_s - _in_flight_since(record)
            if waits_for_live_run(run.status, age, give_up_after):
                return dg.SkipReason(
                    f"live run {run.run_id} is still {run.status.value} ({age / 60:.0f} min)"
                )
            context.log.warning(
                f"live run {run.run_id} has been {run.status.value} for {age / 60:.0f} min, "
                f"over twice its {give_up_after // 2} s limit: run monitoring should have "
                "failed it (is run_monitoring enabled in dagster.yaml?); not waiting for it"
            )
        context.update_cursor(json.dumps({"watermark": watermark, "requested_s": now_s}))
        slot = int(now.timestamp()) // interval
        return dg.RunRequest(
            run_key=f"live-stream-{watermark}" if moved else f"live-{slot}",
            partition_key=now.date().isoformat(),
            tags={TRIGGER_TAG: "live_today", LIVE_REASON_TAG: "stream" if moved else "interval"},
        )

    return live_today


def warehouse_inputs_changed(
    instance: dg.DagsterInstance, graph: Any, targets: Sequence[dg.AssetKey]
) -> tuple[list[dg.AssetKey], str]:
    """Which of ``targets`` read an input materialized after them, and the run key to ask for.

    One query for the asset records, one for the runs in flight, one per target for where its
    last run began. A target is left alone while it is being built, or while any input it
    reads is (its last planned or recorded materialization belongs to a run in flight): one
    refresh after a backfill, not one per step. A target is behind when an input was
    materialized after the run that built it *began*, not after it ended: a writer that
    started while the refresh was reading ends before it, and its days would otherwise be
    left out of the views until some later write. Storage ids, not timestamps, order the
    events: they are the event log's own order.
    """
    inputs = {target: sorted(graph.get(target).parent_keys) for target in targets}
    keys = sorted({*targets, *(k for parents in inputs.values() for k in parents)})
    entries = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(keys)}
    in_flight = {run.run_id for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT))}

    def newest(key: dg.AssetKey) -> int:
        entry = entries.get(key)
        return (entry.last_materialization_storage_id or 0) if entry else 0

    def built_from(target: dg.AssetKey) -> int:
        """The first event of the run behind ``target``'s last materialization: inputs
        materialized before it were there to read."""
        entry = entries.get(target)
        record = entry.last_materialization_record if entry else None
        if record is None:
            return 0
        run_id = record.event_log_entry.run_id
        first = instance.get_records_for_run(run_id, limit=1).records if run_id else []
        return first[0].storage_id if first else record.storage_id

    def busy(key: dg.AssetKey) -> bool:
        entry = entries.get(key)
        return entry is not None and entry.last_run_id in in_flight

    behind = [
        target
        for target in targets
        if not busy(target)
        and not any(busy(k) for k in inputs[target])
        and max((newest(k) for k in inputs[target]), default=0) > built_from(target)
    ]
    newest_input = max((newest(k) for t in behind for k in inputs[t]), default=0)
    return behind, f"warehouse-{newest_input}-" + "-".join(t.to_user_string() for t in behind)


def build_warehouse_refresh(job: AssetJob, settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="warehouse_refresh",
        job=job,
        minimum_interval_seconds=30,
        default_status=sensor_status(settings),
        description="Rebuild the DuckDB views and the QA report once the lake tables they read "
        "have changed and are no longer being written.",
    )
    def warehouse_refresh(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        graph = context.repository_def.asset_graph
        targets = sorted(job.selection.resolve(graph))
        behind, run_key = warehouse_inputs_changed(context.instance, graph, targets)
        if not behind:
            return dg.SkipReason("warehouse up to date, or its inputs are being written")
        return dg.RunRequest(
            run_key=run_key, asset_selection=behind, tags={TRIGGER_TAG: "warehouse_refresh"}
        )

    return warehouse_refresh


def build_freshness_checks(tables: Sequence[Table], settings: Settings) -> dg.AssetChecksDefinition:
    slack = timedelta(minutes=settings.freshness_slack_minutes)

    @dg.multi_asset_check(
        name="raw_freshness",
        specs=[
            dg.AssetCheckSpec(
                FRESHNESS,
                asset=table_key(table),
                description="Newest closed bar in the lake no older than the feed's cadence "
                f"plus {settings.freshness_slack_minutes} min (the seed's lag verify).",
            )
            for table in tables
        ],
        can_subset=True,
    )
    def raw_freshness(
        context: dg.AssetCheckExecutionContext, dataset: DatasetResource
    ) -> Iterator[dg.AssetCheckResult]:
        lake, now = dataset.lake(), clock.now_utc()
        selected = {key.asset_key for key in context.selected_asset_check_keys}
        for table in tables:
            if table_key(table) not in selected:
                continue
            limit = (bar_duration(table.every) if table.every else EVENT_CADENCE) + slack
            newest = {s: lake.last_ts(table.name, s) for s in dataset.lake_symbols(table)}
            # The stalest symbol is the table's freshness: one lagging feed is a lagging table.
            stalest = min(newest, key=lambda s: (newest[s] is not None, newest[s] or now))
            oldest = newest[stalest]
            lag = None if oldest is None else now - oldest
            passed = lag is not None and lag <= limit
            who = f"{stalest}: " if len(newest) > 1 else ""
            yield dg.AssetCheckResult(
                asset_key=table_key(table),
                check_name=FRESHNESS,
                passed=passed,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"{who}no data in the lake"
                    if lag is None
                    else f"{who}newest bar {oldest:%Y-%m-%d %H:%M} UTC, "
                    f"lag {lag / MINUTE:.0f} min (limit {limit / MINUTE:.0f})"
                ),
                metadata={
                    "newest_ts": oldest.isoformat() if oldest else "none",
                    "lag_minutes": round(lag / MINUTE, 1) if lag else -1.0,
                    "limit_minutes": limit / MINUTE,
                    "stalest_symbol": stalest,
                    "newest_ts_by_symbol": dg.MetadataValue.json(
                        {s: t.isoformat() if t else None for s, t in newest.items()}
                    ),
                },
            )

    return raw_freshness


def failed_blocking_checks(
    instance: dg.DagsterInstance, graph: Any, after: float | None
) -> tuple[list[str], float | None]:
    """Lines for every blocking check that failed with ERROR after timestamp ``after``.

    Read from the asset-check execution records (one query per blocking check), which every
    instance storage indexes across runs. The cursor is the evaluation time, not a record
    id: a record is created when its run is planned and filled in when it is evaluated.
    """
    lines: list[tuple[float, str]] = []
    newest = after
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        if not graph.get(check_key).blocking:
            continue
        for timestamp, evaluation in failed_executions(instance, check_key, ALERT_WINDOW):
            if after is not None and timestamp <= after:
                continue
            newest = max(newest or 0.0, timestamp)
            if evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            lines.append(
                (
                    timestamp,
                    f"{check_key.asset_key.to_user_string()}.{check_key.name} "
                    f"{evaluation.partition or ''}: {evaluation.description or 'failed'}",
                )
            )
    return [line for _, line in sorted(lines)], newest


def build_quality_alerts(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="quality_alerts",
        minimum_interval_seconds=60,
        default_status=sensor_status(settings),
        description="Telegram message when a blocking check fails with ERROR.",
    )
    def quality_alerts(
        context: dg.SensorEvaluationContext, telegram: TelegramResource
    ) -> dg.SkipReason:
        after = float(context.cursor) if context.cursor else None
        if after is None:  # first tick: start from now, not from the whole history
            context.update_cursor(str(clock.now_utc().timestamp()))
            return dg.SkipReason("cursor initialised; alerting on new evaluations from now on")
        lines, newest = failed_blocking_checks(
            context.instance, context.repository_def.asset_graph, after
        )
        if lines:
            shown = lines[:ALERT_LINES]
            more = f"\n... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
            text = f"btc_assets: {len(lines)} blocking check failure(s)\n" + "\n".join(shown)
            telegram.client().send_message(text + more)
        if newest is not None:
            context.update_cursor(str(newest))
        return dg.SkipReason(f"{len(lines)} failure(s) reported" if lines else "no new failure")

    return quality_alerts


def build_run_failure_alerts(settings: Settings) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="run_failure_alerts",
        default_status=sensor_status(settings),
        description="Telegram message when a run fails.",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext, telegram: TelegramResource) -> None:
        run = context.dagster_run
        error = context.failure_event.message or "no message"
        window = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
        scope = f" {window[0]}..{window[1]}" if all(window) else ""
        partition = run.tags.get("dagster/partition")
        scope = scope or (f" {partition}" if partition else "")
        telegram.client().send_message(
            f"btc_assets: run {run.run_id[:8]} of {run.job_name}{scope} failed\n{error[:1500]}"
        )

    return run_failure_alerts
