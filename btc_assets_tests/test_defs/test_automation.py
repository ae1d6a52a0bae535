"""Tail refresh, live today (and its dead runs), the warehouse refresh, freshness, alerts."""

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.events import StepMaterializationData

from btc_assets import clock
from btc_assets.defs.automation import (
    FRESHNESS,
    MAX_RUNTIME_TAG,
    build_quality_alerts,
    build_run_failure_alerts,
    build_warehouse_refresh,
    live_max_runtime_seconds,
    tail_days,
    waits_for_live_run,
)
from btc_assets.defs.definitions import SETTINGS, catalog_job, defs, live_job
from btc_assets.defs.resources import SandboxResource, TelegramResource
from btc_assets.lake import Lake
from btc_assets.sandbox.credentials import (
    SANDBOX_TELEGRAM_CHAT_ID,
    SANDBOX_TELEGRAM_TOKEN,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.telegram import telegram_desk
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.settings import PROJECT_ROOT, load_settings
from btc_assets_tests.test_assets.helpers import resources, run_range


def test_tail_refresh_requests_exactly_the_last_n_days_in_one_run() -> None:
    schedule = defs.resolve_schedule_def("tail_refresh")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 3, 10, 0, 30, tzinfo=UTC)
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    tags = requests[0].tags
    assert (
        tags["dagster/asset_partition_range_start"],
        tags["dagster/asset_partition_range_end"],
    ) == (
        "2024-03-08",
        "2024-03-09",
    )
    assert tail_days(date(2024, 3, 10), 5) == (date(2024, 3, 5), date(2024, 3, 9))


# An instant well inside a UTC day: no test here straddles midnight.
NOW = datetime(2024, 5, 2, 10, 7, 30, tzinfo=UTC)


def test_live_sensor_requests_today_and_skips_while_a_run_is_in_flight(
    instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    sensor = defs.resolve_sensor_def("live_today")
    first = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    )
    (request,) = first.run_requests or []
    assert request.partition_key == "2024-05-02"

    job = defs.resolve_job_def(live_job.name)
    run = instance.create_run_for_job(job_def=job, run_config={}, tags={"btc_assets/trigger": "x"})
    instance.handle_run_event(  # the run is now in flight
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.PIPELINE_START.value, job_name=job.name
        ),
    )
    second = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    )
    assert not second.run_requests
    assert second.skip_message and run.run_id in second.skip_message


def _freshness(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.asset_key.to_user_string(): e
        for e in (
            ev.event_specific_data
            for ev in result.all_events
            if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        if e.check_name == FRESHNESS  # type: ignore[union-attr]
    }


def test_freshness_passes_on_today_and_fails_on_a_stale_lake(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    res = resources(tmp_path)
    today = NOW.date().isoformat()
    assert run_range(instance, res, today, today, ["binance_perp_klines_1m"]).success
    check_only = [*[a for a in defs.assets if isinstance(a, dg.AssetsDefinition)],
                  *defs.asset_checks]  # fmt: skip
    fresh = dg.materialize(
        check_only,
        instance=instance,
        resources=res,
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey("binance_perp_klines_1m"), FRESHNESS)
        ),
    )
    evaluation = _freshness(fresh)["binance_perp_klines_1m"]
    assert evaluation.passed, evaluation.description

    stale_root = tmp_path / "stale"
    lake = Lake(stale_root / "lake")
    old = NOW.date() - timedelta(days=3)
    start = datetime.combine(old, datetime.min.time(), UTC)
    frame = pl.DataFrame(
        {"symbol": "BTCUSDT", "ts": [start + timedelta(minutes=m) for m in range(1, 1441)]}
    ).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    lake.write_day("binance_perp_klines_1m", "BTCUSDT", old, frame)
    stale = dg.materialize(
        check_only,
        instance=instance,
        resources=resources(stale_root),
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey("binance_perp_klines_1m"), FRESHNESS)
        ),
    )
    evaluation = _freshness(stale)["binance_perp_klines_1m"]
    assert not evaluation.passed
    assert evaluation.metadata["lag_minutes"].value > 2 * 24 * 60
    assert evaluation.metadata["limit_minutes"].value == 21.0


@pytest.fixture
def telegram_box() -> tuple[TelegramResource, SandboxTransport]:
    transport = SandboxTransport()
    with serve_sandbox(transport=transport) as url:
        yield (
            TelegramResource(
                base_url=url,
                token=SANDBOX_TELEGRAM_TOKEN,
                chat_id=SANDBOX_TELEGRAM_CHAT_ID,
                sandbox=SandboxResource(enabled=False),
            ),
            transport,
        )


def test_blocking_failure_and_failed_run_reach_telegram_without_the_token(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    telegram_box: tuple[TelegramResource, SandboxTransport],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram, transport = telegram_box
    sensor = defs.resolve_sensor_def("quality_alerts")
    repo = defs.get_repository_def()
    with dg.build_sensor_context(
        instance=instance, resources={"telegram": telegram}, repository_def=repo
    ) as context:
        sensor.evaluate_tick(context)  # the first tick only places the cursor
        cursor = context.cursor
    bad = [{"kind": "bad_ohlc", "path": "/api/v3/klines", "day": "2024-03-02",
            "start_minute": 60, "minutes": 2}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(bad))
    blocked = run_range(
        instance, res, "2024-03-01", "2024-03-03", ["binance_spot_klines_1m", "spot_klines_15m"]
    )
    assert blocked.success  # the bad day is blocked; the others were built
    with dg.build_sensor_context(
        instance=instance, resources={"telegram": telegram}, repository_def=repo, cursor=cursor
    ) as context:
        sensor.evaluate_tick(context)
    (message,) = telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID)
    assert "2 blocking check failure" in message  # the bad day, and the day it blocked
    assert "binance_spot_klines_1m.quality 2024-03-02: ohlc_violations=2" in message
    assert "spot_klines_15m.quality 2024-03-02: blocked, not built" in message

    # A failed run raises a run-failure alert: here a range refused for reaching the future.
    tomorrow = clock.today_utc() + timedelta(days=1)
    failed = run_range(instance, res, tomorrow.isoformat(), tomorrow.isoformat(),
                       ["binance_spot_klines_1m"])  # fmt: skip
    assert not failed.success
    run_sensor = defs.resolve_sensor_def("run_failure_alerts")
    failure = next(
        e for e in failed.all_events if e.event_type == dg.DagsterEventType.PIPELINE_FAILURE
    )
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(failed.run_id),
        dagster_event=failure,
        resources={"telegram": telegram},
    ) as run_context:
        run_sensor(run_context.for_run_failure())
    texts = telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID)
    assert len(texts) == 2 and f"run {failed.run_id[:8]}" in texts[1]
    assert f"{tomorrow}..{tomorrow} failed" in texts[1]
    secret = SANDBOX_TELEGRAM_TOKEN.split(":")[1]
    assert secret not in caplog.text
    assert all(secret not in t for t in texts)


# A recognisable chat id that appears nowhere else.
SECRET_CHAT = "-100868686868686"


def _whole_error(exc: BaseException) -> str:
    """What Dagster records of a failed tick: the chain of messages and tracebacks."""
    return "".join(traceback.format_exception(exc))


def test_alert_sensors_never_show_the_chat_id(
    instance: dg.DagsterInstance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    @dg.asset
    def tiny() -> int:
        return 1

    @dg.asset_check(asset=tiny, blocking=True)
    def always_broken() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, description="broken"
        )

    quality = build_quality_alerts(SETTINGS)
    run_failure = build_run_failure_alerts(SETTINGS)
    repo = dg.Definitions(
        assets=[tiny], asset_checks=[always_broken], sensors=[quality, run_failure]
    ).get_repository_def()
    transport = SandboxTransport()
    desk = telegram_desk(transport)
    with serve_sandbox(transport=transport) as url:
        telegram = TelegramResource(
            base_url=url,
            token=SANDBOX_TELEGRAM_TOKEN,
            chat_id=SECRET_CHAT,  # unknown to the sandbox's bot at first: "chat not found"
            sandbox=SandboxResource(enabled=False),
        )

        def tick(cursor: str | None) -> tuple[Any, str | None]:  # the tick's result, cursor
            with dg.build_sensor_context(
                instance=instance, resources={"telegram": telegram}, repository_def=repo,
                cursor=cursor,
            ) as context:  # fmt: skip
                return quality.evaluate_tick(context), context.cursor

        first, cursor = tick(None)  # places the cursor
        failed = dg.materialize([tiny, always_broken], instance=instance, raise_on_error=False)
        assert not failed.success
        with pytest.raises(Exception) as quality_error:
            tick(cursor)
        failure = next(
            e for e in failed.all_events if e.event_type == dg.DagsterEventType.PIPELINE_FAILURE
        )

        def run_failure_tick() -> None:
            with dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts", dagster_instance=instance,
                dagster_run=instance.get_run_by_id(failed.run_id), dagster_event=failure,
                resources={"telegram": telegram},
            ) as context:  # fmt: skip
                run_failure(context.for_run_failure())

        with pytest.raises(Exception) as run_failure_error:
            run_failure_tick()
        # Now the bot knows the chat: the same ticks deliver.
        desk.chats[SECRET_CHAT] = {"id": int(SECRET_CHAT), "title": "ops", "type": "supergroup"}
        delivered, after = tick(cursor)
        run_failure_tick()
    assert [t.split("\n")[0] for t in desk.texts(SECRET_CHAT)] == [
        "btc_assets: 1 blocking check failure(s)",
        f"btc_assets: run {failed.run_id[:8]} of {failed.job_def.name} failed",
    ]
    errors = [_whole_error(quality_error.value), _whole_error(run_failure_error.value)]
    assert all("chat not found" in e and "TELEGRAM_CHAT_ID" in e for e in errors)
    results = [repr(first), repr(delivered), str(cursor), str(after)]
    assert delivered.skip_message == "1 failure(s) reported"
    assert SECRET_CHAT not in caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert not [text for text in errors + results if SECRET_CHAT in text]


def _tick(name: str, instance: dg.DagsterInstance) -> Any:
    sensor = defs.resolve_sensor_def(name)
    return sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    )


def _started_live_run(instance: dg.DagsterInstance, at: datetime | None = None) -> str:
    """A live run STARTED now, or ``at`` (the start event sets its start time, as a worker's
    does)."""
    job = defs.resolve_job_def(live_job.name)
    run = instance.create_run_for_job(job_def=job, run_config={})
    start = dg.DagsterEventType.PIPELINE_START.value
    instance.handle_run_event(
        run.run_id, dg.DagsterEvent(event_type_value=start, job_name=job.name), update_timestamp=at
    )
    return run.run_id


def test_live_runs_carry_a_runtime_limit_that_run_monitoring_enforces() -> None:
    job = defs.resolve_job_def(live_job.name)
    assert job.run_tags[MAX_RUNTIME_TAG] == "900"  # the 900 s default interval
    short = replace(load_settings(), live_interval_seconds=60)
    assert live_max_runtime_seconds(short) == 600  # never below ten minutes
    for path in ("dagster.yaml", "docker/dagster.yaml"):
        monitoring = yaml.safe_load((PROJECT_ROOT / path).read_text())["run_monitoring"]
        assert monitoring["enabled"] is True, path
        for bound in ("start_timeout_seconds", "cancel_timeout_seconds",
                      "max_runtime_seconds", "poll_interval_seconds"):  # fmt: skip
            assert 0 < monitoring[bound] <= 3 * 3600, (path, bound)
        # A dead live run is failed within its limit plus one poll: well within an hour.
        assert 900 + monitoring["poll_interval_seconds"] <= 3600, path


def test_live_sensor_stops_waiting_for_a_run_in_flight_far_beyond_its_limit(
    instance: dg.DagsterInstance,
    pinned_clock: Callable[[datetime], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The run is back-dated rather than the clock moved forward: Dagster checks a run
    # request's partition against the real date, and a clock pinned past midnight would ask
    # for a partition that does not exist yet (this test failed in the last half hour of
    # every UTC day).
    give_up_after = 2 * live_max_runtime_seconds(load_settings())
    wall = datetime.now(UTC)
    stuck = _started_live_run(instance, at=wall - timedelta(seconds=give_up_after + 60))
    pinned_clock(wall - timedelta(seconds=120))  # the same run, 60 s short of the limit
    waiting = _tick("live_today", instance)
    assert not waiting.run_requests and stuck in (waiting.skip_message or "")

    pinned_clock(wall)  # 60 s past it
    (request,) = _tick("live_today", instance).run_requests or []
    warned = capsys.readouterr().err  # the sensor's context.log, as the daemon shows it
    assert request.partition_key == wall.date().isoformat()
    assert stuck in warned and "run monitoring should have failed it" in warned

    # A queued run holds no worker: however old, the sensor waits, so runs never pile up.
    # (A queued run needs a code location's origin, so this is the decision alone.)
    day = 24 * 3600.0
    assert waits_for_live_run(dg.DagsterRunStatus.QUEUED, day, give_up_after)
    assert not waits_for_live_run(dg.DagsterRunStatus.STARTING, day, give_up_after)
    assert waits_for_live_run(dg.DagsterRunStatus.STARTING, give_up_after, give_up_after)


def _materialize(instance: dg.DagsterInstance, *names: str) -> None:
    for name in names:
        instance.report_runless_asset_event(dg.AssetMaterialization(name, partition="2024-05-01"))


def _requested(instance: dg.DagsterInstance) -> tuple[set[str], str | None]:
    result = _tick("warehouse_refresh", instance)
    requests = result.run_requests or []
    assert len(requests) <= 1
    if not requests:
        return set(), None
    keys = {k.to_user_string() for k in requests[0].asset_selection or []}
    return keys, requests[0].run_key


def test_warehouse_follows_every_change_of_the_lake_tables_it_reads(
    instance: dg.DagsterInstance,
) -> None:
    assert _requested(instance) == (set(), None)  # nothing in the lake yet

    # Raw tables only: the views are behind, the QA report (bars_15m) has nothing to read.
    _materialize(instance, "binance_spot_klines_1m")
    keys, first_key = _requested(instance)
    assert keys == {"duckdb_catalog"}
    _materialize(instance, "duckdb_catalog")
    assert _requested(instance) == (set(), None)

    # bars_15m changes: both are behind, and the run key moves with the newest input.
    _materialize(instance, "bars_15m")
    keys, second_key = _requested(instance)
    assert keys == {"duckdb_catalog", "qa_report"} and second_key != first_key
    _materialize(instance, "duckdb_catalog", "qa_report")
    assert _requested(instance) == (set(), None)


def test_warehouse_waits_while_an_input_is_being_written(instance: dg.DagsterInstance) -> None:
    _materialize(instance, "binance_perp_klines_1m")
    daily = defs.resolve_job_def("btc_daily")
    writing = instance.create_run_for_job(
        job_def=daily,
        run_config={},
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": "2024-05-02"},
    )
    assert _requested(instance) == (set(), None)
    instance.report_run_failed(writing)  # ended, whatever its outcome: the lake may have changed
    assert _requested(instance)[0] == {"duckdb_catalog"}


def test_warehouse_follows_a_write_that_ended_while_it_was_being_refreshed(
    instance: dg.DagsterInstance,
) -> None:
    """A refresh begins with the lake quiet; a live run writes while it reads and ends first.
    The views were built from a lake without that write, though they were recorded after it."""
    _materialize(instance, "binance_perp_klines_1m")
    refresh = instance.create_run_for_job(
        job_def=defs.resolve_job_def(catalog_job.name),
        run_config={},
        status=dg.DagsterRunStatus.STARTED,
    )
    assert _requested(instance) == (set(), None)  # the views are being built
    _materialize(instance, "binance_perp_klines_1m")  # the concurrent writer, already done
    built = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name=catalog_job.name,
        event_specific_data=StepMaterializationData(dg.AssetMaterialization("duckdb_catalog")),
    )
    instance.report_dagster_event(built, run_id=refresh.run_id)
    instance.report_run_failed(refresh)  # ended (its outcome does not matter here)
    keys, _ = _requested(instance)
    assert keys == {"duckdb_catalog"}, "the write made during the refresh is not in the views"


def test_warehouse_refresh_respects_the_automation_switch() -> None:
    settings = load_settings()
    off = build_warehouse_refresh(catalog_job, replace(settings, automation_on=False))
    on = build_warehouse_refresh(catalog_job, replace(settings, automation_on=True))
    assert off.default_status == dg.DefaultSensorStatus.STOPPED
    assert on.default_status == dg.DefaultSensorStatus.RUNNING
