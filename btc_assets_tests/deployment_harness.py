"""The deployment topology without Docker: Postgres + code server + daemon + webserver.

Used by the deployment test and ``benchmarks/bench_instances.py``. Every process listens on
127.0.0.1 only, on a free port, and is stopped (with its children) when the context exits;
PostgreSQL is a throwaway server of the test's own, deleted afterwards.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from btc_assets_tests.throwaway_postgres import throwaway_postgres

BIN = Path(sys.executable).parent
DATABASE = "btc_assets_test"


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


def write_instance(home: Path, postgres_url: str | None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    storage = f'storage:\n  postgres:\n    postgres_url: "{postgres_url}"\n' if postgres_url else ""
    (home / "dagster.yaml").write_text(
        storage + "run_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n  config:\n    max_concurrent_runs: 2\n"
        "telemetry:\n  enabled: false\n"
    )


@dataclass
class Deployment:
    graphql_url: str
    home: Path
    data_dir: Path
    logs: Path

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


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
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


@contextmanager
def deployment(root: Path, postgres_url: str, ready_timeout: float = 120) -> Iterator[Deployment]:
    """Code server, daemon and webserver against ``postgres_url``, all on loopback."""
    home, data, logs = root / "dagster_home", root / "data", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_instance(home, postgres_url)
    grpc_port, web_port = free_port(), free_port()
    (root / "workspace.yaml").write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: btc_assets\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BTC_ASSETS_ENV": "sandbox",
        "BTC_ASSETS_DATA_DIR": str(data),
        "BTC_ASSETS_AUTOMATION": "off",
    }
    workspace = ["-w", str(root / "workspace.yaml")]
    processes = [
        _spawn(
            [str(BIN / "dagster"), "code-server", "start", "-m", "btc_assets.defs.definitions",
             "-h", "127.0.0.1", "-p", str(grpc_port)],
            env, logs / "code_server.log",
        ),
    ]  # fmt: skip
    try:
        _wait_for_port(grpc_port, ready_timeout, processes[0], logs / "code_server.log")
        processes.append(
            _spawn([str(BIN / "dagster-daemon"), "run", *workspace], env, logs / "daemon.log")
        )
        processes.append(
            _spawn(
                [str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1",
                 "-p", str(web_port)],
                env, logs / "webserver.log",
            )
        )  # fmt: skip
        live = Deployment(f"http://127.0.0.1:{web_port}/graphql", home, data, logs)
        _wait_for_graphql(live, ready_timeout, processes[-1])
        yield live
    finally:
        for process in reversed(processes):
            _stop(process)


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
