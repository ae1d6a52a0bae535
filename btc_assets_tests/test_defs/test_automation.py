"""Tail refresh, live today, freshness and Telegram alerts."""

import json
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from btc_assets import clock
from btc_assets.defs.automation import (
    FRESHNESS,
    build_quality_alerts,
    build_run_failure_alerts,
    tail_days,
)
from btc_assets.defs.definitions import SETTINGS, defs, live_job
from btc_assets.defs.resources import SandboxResource, TelegramResource
from btc_assets.lake import Lake
from btc_assets.sandbox.credentials import (
    SANDBOX_TELEGRAM_CHAT_ID,
    SANDBOX_TELEGRAM_TOKEN,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.telegram import telegram_desk
from btc_assets.sandbox.transport import SandboxTransport
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
