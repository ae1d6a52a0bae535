"""A deployment keeps going after a run worker dies, and its warehouse follows the lake.

On the shared deployment (conftest.py: shipped docker/dagster.yaml, 2 s monitoring poll):

1. A live run whose worker dies together with its code server (the user_code container
   crashed) stays STARTED with nobody left to report it, and the ``live_today`` sensor skips
   behind it. Run monitoring fails it once its ``dagster/max_runtime`` is over; the sensor
   then requests a new live run.
2. A live run whose worker alone gets ``kill -9`` is failed by the code server at once.
3. The next live run succeeds and, with no manual step, the ``warehouse_refresh`` sensor
   rebuilds the DuckDB views and the QA report: the day is queryable and reported.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from btc_assets import clock
from btc_assets.assets.reports import REPORT_NAME
from btc_assets.defs.automation import MAX_RUNTIME_TAG, TRIGGER_TAG
from btc_assets_tests.deployment_harness import (
    Deployment,
    launch_run,
    run_worker_pid,
    sensor_state,
    start_sensor,
    stop_sensor,
    wait_until,
)
from btc_assets_tests.test_deployment.conftest import MONITOR_POLL

# dagster/max_runtime of the run lost with its code server, seconds: long enough for the
# restarted code server and the sensor's skip tick to happen while it is still STARTED.
LOST_RUN_LIMIT = 45
SLACK = 10  # database writes, the daemon's loop, a loaded CI machine


def _run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run


def _started(instance: dg.DagsterInstance, run_id: str) -> bool:
    return _run(instance, run_id).status == dg.DagsterRunStatus.STARTED


def _messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(record.message or "" for record in instance.all_logs(run_id))


def _sensor_live_runs(instance: dg.DagsterInstance, but: set[str]) -> list[dg.DagsterRun]:
    """Live runs the sensor requested, newest first, except ``but``."""
    runs = instance.get_runs(dg.RunsFilter(job_name="live_today", tags={TRIGGER_TAG: "live_today"}))
    return [run for run in runs if run.run_id not in but]


def _skips(live: Deployment) -> list[str]:
    return [tick["skipReason"] or "" for tick in sensor_state(live, "live_today")["ticks"]]


@pytest.mark.slow
def test_dead_live_runs_end_and_the_warehouse_follows_the_lake(live: Deployment) -> None:
    began = time.monotonic()
    with live.instance() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 10800  # the shipped file

        # 1. A live run lost with its code server.
        tags = {"dagster/partition": clock.today_utc().isoformat(),
                MAX_RUNTIME_TAG: str(LOST_RUN_LIMIT)}  # fmt: skip
        lost = launch_run(live, "live_today", tags)
        # Crash at once: a live run takes seconds, and it must die while it is running.
        wait_until("lost run STARTED", lambda: _started(instance, lost), 90, every=0.05)
        live.crash_code_server()
        assert _started(instance, lost)  # nobody is left to say otherwise
        live.start_code_server()
        start_sensor(live, "live_today")
        start_sensor(live, "warehouse_refresh")
        wait_until(
            "live_today skipping behind it", lambda: any(lost in s for s in _skips(live)), 30
        )
        assert _started(instance, lost)  # still: only its time limit can end it
        wait_until("lost run ended", lambda: _run(instance, lost).is_finished, 90)
        record = instance.get_run_record_by_id(lost)
        assert record is not None and record.start_time and record.end_time
        assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        lasted = record.end_time - record.start_time
        print(f"\nlost run failed {lasted:.1f} s after it started "
              f"(limit {LOST_RUN_LIMIT} s + poll {MONITOR_POLL} s)")  # fmt: skip
        assert LOST_RUN_LIMIT <= lasted <= LOST_RUN_LIMIT + MONITOR_POLL + SLACK
        assert f"maximum runtime of {LOST_RUN_LIMIT} seconds" in _messages(instance, lost)

        # 2. The sensor no longer skips: a new live run, whose worker alone is killed.
        killed = wait_until(
            "a live run after the lost one", lambda: _sensor_live_runs(instance, {lost}), 60
        )[-1].run_id
        wait_until("its worker STARTED", lambda: _started(instance, killed), 90, every=0.1)
        pid = run_worker_pid(instance, killed)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until("killed run ended", lambda: _run(instance, killed).is_finished, SLACK)
        print(f"killed run failed {time.monotonic() - killed_at:.1f} s after kill -9")
        assert _run(instance, killed).status == dg.DagsterRunStatus.FAILURE
        assert "signal 9" in _messages(instance, killed)

        # 3. The next live run succeeds, then the warehouse follows the lake on its own.
        wait_until(
            "a successful live run",
            lambda: any(r.status == dg.DagsterRunStatus.SUCCESS
                        for r in _sensor_live_runs(instance, {lost, killed})),
            120,
        )  # fmt: skip
        stop_sensor(live, "live_today")  # the lake stops changing: one last refresh to await
        wait_until(
            "no live run in flight",
            lambda: all(r.is_finished for r in _sensor_live_runs(instance, set())),
            120,
        )
        last_live = max(
            (instance.get_run_record_by_id(r.run_id) for r in _sensor_live_runs(instance, set())),
            key=lambda rec: rec.end_time or 0.0 if rec else 0.0,
        )
        assert last_live is not None and last_live.end_time

        def refresh_after_it() -> dg.RunRecord | None:
            done = instance.get_run_records(
                dg.RunsFilter(job_name="warehouse_catalog", statuses=[dg.DagsterRunStatus.SUCCESS])
            )
            after = [r for r in done if (r.start_time or 0.0) > last_live.end_time]
            return after[0] if after else None

        refresh = wait_until("a warehouse refresh after the last live run", refresh_after_it, 90)
        assert refresh.dagster_run.tags[TRIGGER_TAG] == "warehouse_refresh"
        stop_sensor(live, "warehouse_refresh")

        day = date.fromisoformat(last_live.dagster_run.tags["dagster/partition"])
        start = datetime.combine(day, datetime.min.time(), UTC)
        with duckdb.connect(str(live.data_dir / "warehouse.duckdb"), read_only=True) as conn:
            (bars,) = conn.execute(
                "SELECT count(*) FROM bars_15m WHERE ts > ? AND ts <= ?",
                [start, start + timedelta(days=1)],
            ).fetchone()
        assert bars > 0, f"no bars_15m row of {day} in the DuckDB view"
        report = json.loads((live.data_dir / "reports" / REPORT_NAME).read_text())
        assert report["window"]["last_day"] == day.isoformat(), report["window"]
        assert report["bars"]["present"] >= bars
        print(f"{day}: {bars} bars_15m rows in DuckDB and the QA report, "
              f"{time.monotonic() - began:.0f} s after the first launch")  # fmt: skip
