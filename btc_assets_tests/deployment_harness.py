"""The deployment topology without Docker: Postgres + code server + daemon + webserver.

Used by the deployment tests and ``benchmarks/bench_instances.py``. Every process listens on
127.0.0.1 only, on a free port, and is stopped (with its children) when the context exits;
PostgreSQL is a throwaway server of the test's own, deleted afterwards. The instance is the
shipped one: ``docker/dagster.yaml`` on Postgres (``dagster.yaml`` on sqlite), with only the
storage URL filled in and whatever a test overrides (a shorter monitoring poll, say).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import yaml

from btc_assets_tests.throwaway_postgres import throwaway_postgres

BIN = Path(sys.executable).parent
DATABASE = "btc_assets_test"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_INSTANCE = PROJECT_ROOT / "docker" / "dagster.yaml"
LOCAL_INSTANCE = PROJECT_ROOT / "dagster.yaml"
LOCATION = "btc_assets"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database() -> Iterator[str]:
    """An empty database on a throwaway server of its own; yields its SQLAlchemy URL.

    Never the machine's PostgreSQL service: the server lives in a temporary directory and is
    stopped and deleted when the context exits, failure or not (see throwaway_postgres.py).
    """
    with throwaway_postgres() as server:
        conn = psycopg2.connect(**server.connect_args())
        # psycopg2's connection context manager opens a transaction; CREATE DATABASE refuses one.
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            conn.close()
        yield server.url(DATABASE)


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if nested else value
    return out


def instance_config(
    postgres_url: str | None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The shipped instance: docker/dagster.yaml with ``postgres_url`` as its storage (the
    file reads it from DAGSTER_PG_URL), or the local dagster.yaml (sqlite) without one."""
    if postgres_url:
        config = yaml.safe_load(DEPLOYMENT_INSTANCE.read_text())
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    else:
        config = yaml.safe_load(LOCAL_INSTANCE.read_text())
    return _merged(config, overrides or {})


def write_instance(
    home: Path, postgres_url: str | None, overrides: dict[str, Any] | None = None
) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config = instance_config(postgres_url, overrides)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Deployment:
    graphql_url: str
    home: Path
    data_dir: Path
    logs: Path
    grpc_port: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.graphql_url, data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The deployment's instance, read directly (what the daemon and webserver see)."""
        instance = dg.DagsterInstance.from_config(str(self.home))
        try:
            yield instance
        finally:
            instance.dispose()

    def start_code_server(self, timeout: float = 120) -> None:
        log = self.logs / "code_server.log"
        process = _spawn(
            [str(BIN / "dagster"), "code-server", "start", "-m", "btc_assets.defs.definitions",
             "-h", "127.0.0.1", "-p", str(self.grpc_port), "--location-name", LOCATION],
            self.env, log,
        )  # fmt: skip
        self.processes["code_server"] = process
        _wait_for_port(self.grpc_port, timeout, process, log)

    def crash_code_server(self) -> None:
        """SIGKILL the code server's whole process group, as when its container dies: the
        gRPC server, every run worker it started and their step processes, with no chance
        to report anything."""
        process = self.processes["code_server"]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def deployment(
    root: Path,
    postgres_url: str,
    ready_timeout: float = 120,
    env: dict[str, str] | None = None,
    instance_overrides: dict[str, Any] | None = None,
) -> Iterator[Deployment]:
    """Code server, daemon and webserver against ``postgres_url``, all on loopback.

    ``env`` adds to (or overrides) the project's variables; automation is off unless a test
    switches it on. ``instance_overrides`` merge into the shipped dagster.yaml.
    """
    home, data, logs = root / "dagster_home", root / "data", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_instance(home, postgres_url, instance_overrides)
    grpc_port, web_port = free_port(), free_port()
    (root / "workspace.yaml").write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: {LOCATION}\n"
    )
    full_env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BTC_ASSETS_ENV": "sandbox",
        "BTC_ASSETS_DATA_DIR": str(data),
        "BTC_ASSETS_AUTOMATION": "off",
        **(env or {}),
    }
    workspace = ["-w", str(root / "workspace.yaml")]
    live = Deployment(
        f"http://127.0.0.1:{web_port}/graphql", home, data, logs, grpc_port, full_env, {}
    )
    try:
        live.start_code_server(ready_timeout)
        live.processes["daemon"] = _spawn(
            [str(BIN / "dagster-daemon"), "run", *workspace], full_env, logs / "daemon.log"
        )
        live.processes["webserver"] = _spawn(
            [str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(web_port)],
            full_env, logs / "webserver.log",
        )  # fmt: skip
        _wait_for_graphql(live, ready_timeout, live.processes["webserver"])
        yield live
    finally:
        for name in ("webserver", "daemon", "code_server"):
            if name in live.processes:
                _stop(live.processes[name])


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s: {log.read_text()[-2000:]}")


def _wait_for_graphql(live: Deployment, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("webserver exited: " + (live.logs / "webserver.log").read_text())
        try:
            data = live.query(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename } } } } }"
            )
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.5)
    raise TimeoutError("the webserver did not load the btc_assets code location in time")


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 50) { runId status } }
  }
}"""


def run_backfill(
    live: Deployment, asset_names: list[str], partitions: list[str], timeout: float = 600
) -> dict[str, Any]:
    """Launch a backfill as the UI does, wait for it to finish, return its final state."""
    launched = live.query(
        LAUNCH_BACKFILL,
        {"params": {"assetSelection": [{"path": [n]} for n in asset_names],
                    "partitionNames": partitions}},
    )["launchPartitionBackfill"]  # fmt: skip
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {launched}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = live.query(BACKFILL_STATUS, {"id": launched["backfillId"]})
        backfill = state["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "CANCELING"):
            return backfill
        time.sleep(1.0)
    raise TimeoutError(f"backfill {launched['backfillId']} still running after {timeout} s")


LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""


def _selector(**names: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", **names}


def launch_run(live: Deployment, job_name: str, tags: dict[str, str]) -> str:
    """Launch a run of ``job_name`` as the UI's launchpad does; returns its run id."""
    launched = live.query(
        LAUNCH_RUN,
        {"params": {"selector": _selector(jobName=job_name),
                    "executionMetadata": {"tags": [{"key": k, "value": v}
                                                   for k, v in tags.items()]}}},
    )["launchRun"]  # fmt: skip
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"run of {job_name} not launched: {launched}")
    return launched["run"]["runId"]


SENSOR_STATE = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status ticks(limit: 20) { status skipReason runIds } } }
  }
}"""
STOP_SENSOR = """
mutation($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""


def start_sensor(live: Deployment, name: str) -> None:
    """Switch a sensor on, as its toggle in the UI does."""
    started = live.query(START_SENSOR, {"selector": _selector(sensorName=name)})["startSensor"]
    if started["__typename"] != "Sensor" or started["sensorState"]["status"] != "RUNNING":
        raise RuntimeError(f"sensor {name} not started: {started}")


def sensor_state(live: Deployment, name: str) -> dict[str, Any]:
    """The sensor's state: id, status and its last 20 ticks (status, skipReason, runIds)."""
    answer = live.query(SENSOR_STATE, {"selector": _selector(sensorName=name)})["sensorOrError"]
    if answer["__typename"] != "Sensor":
        raise RuntimeError(f"no sensor {name}: {answer}")
    return answer["sensorState"]


def stop_sensor(live: Deployment, name: str) -> None:
    stopped = live.query(STOP_SENSOR, {"id": sensor_state(live, name)["id"]})["stopSensor"]
    if stopped.get("instigationState", {}).get("status") != "STOPPED":
        raise RuntimeError(f"sensor {name} not stopped: {stopped}")


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what}: not after {timeout} s")


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run worker reported when it started (the code server's run subprocess)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value)
    return None
