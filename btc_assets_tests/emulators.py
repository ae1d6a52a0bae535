"""Local BigQuery and GCS emulators as subprocesses on free loopback ports.

``make test`` installs them first (``tools/setup_emulators.sh`` → ``.cache/emulators``):
local-bigquery 0.3.2 in its own Python 3.13 venv, or bqemulator 1.4.0 where no Python 3.13
exists, and gcp-storage-emulator from the dev extras. Each runs with ``HOME`` inside the cache,
where the DuckDB extensions were unpacked, so nothing is downloaded and the real HOME is left
alone. Both answer on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from btc_assets.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".cache" / "emulators"
EMULATOR_HOME = CACHE / "home"
PROJECT = "test-project"

# What the fallback cannot do, from shared/reference/bigquery-gcs-testing.md: a test that
# needs one of these skips, with this reason in pytest's summary (-ra), and only that test.
BQEMULATOR_LACKS = {
    "gs_hive_path": "bqemulator 1.4.0 reads key=value path segments of a gs:// URI as extra "
    "columns ('table has 5 columns but 9 values were supplied'); real BigQuery does not",
    "project_ids": "bqemulator accepts any project id, so it cannot stand in for a project "
    "BigQuery refuses",
}


@dataclass(frozen=True)
class BigQueryEmulator:
    kind: str  # "local-bigquery" or "bqemulator"
    url: str
    project: str
    lacks: Mapping[str, str] = field(default_factory=dict)

    def require(self, operation: str) -> None:
        """Skip the calling test, saying why, if this emulator lacks ``operation``."""
        if operation in self.lacks:
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
            reason = f"{test} needs {operation!r}, which {self.kind} lacks: {self.lacks[operation]}"
            print(f"\nSKIP {reason}", file=sys.stderr)
            pytest.skip(reason)


@dataclass(frozen=True)
class GcsEmulator:
    url: str
    disk_root: Path  # objects as plain files: <root>/<bucket>/<object>


def installed_backend() -> tuple[str, Path]:
    """Which BigQuery emulator ``make emulators`` installed, and its executable.

    ``BTC_ASSETS_BQ_EMULATOR=bqemulator`` picks the fallback where both are installed
    (``BTC_ASSETS_FORCE_BQEMULATOR=1 tools/setup_emulators.sh``), to test it.
    """
    marker = CACHE / "backend"
    kind = os.environ.get("BTC_ASSETS_BQ_EMULATOR") or (
        marker.read_text().strip() if marker.is_file() else ""
    )
    binary = {
        "local-bigquery": CACHE / "local-bigquery" / "bin" / "local-bigquery",
        "bqemulator": CACHE / "bqemulator" / "bin" / "bqemulator",
    }.get(kind)
    if binary is None or not binary.is_file():
        raise RuntimeError(
            f"no BigQuery emulator in {CACHE}: run `make emulators` (or `make test`, which "
            "installs it first)"
        )
    return kind, binary


def free_port() -> int:
    # The port is released before the child binds it; the race never showed in ~100 starts,
    # and _serve reports the emulator's own log if it lost.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    cmd: Sequence[str],
    port: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Start ``cmd``, wait until it answers HTTP on ``port``, yield its URL, stop it."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            list(cmd), stdout=sink, stderr=subprocess.STDOUT, env=dict(env or os.environ)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{Path(cmd[0]).name} exited rc={proc.returncode}: {log.read_text()[-2000:]}"
                )
            try:
                urllib.request.urlopen(url + "/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # any HTTP status means it is serving (both answer 404 on /)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cmd[0]} did not answer on {url} in {timeout}s") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def gcs_emulator(data: Path, extra: Sequence[str] = ()) -> Iterator[GcsEmulator]:
    """``extra``: more arguments of ``start`` (``-M`` for in memory; ``--skip-index`` with
    it, for benchmarks: gcs_preconditions.py)."""
    port = free_port()
    # Through the launcher that adds GCS's generation preconditions (gcs_preconditions.py).
    cmd = [sys.executable, "-m", "btc_assets_tests.gcs_preconditions",
           "-d", str(data), "start", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serve([*cmd, "-q", *extra], port, data / "emulator.log") as url:
        yield GcsEmulator(url, data / ".cloudstorage")


@contextmanager
def bigquery_emulator(data: Path, gcs_root: Path) -> Iterator[BigQueryEmulator]:
    """The installed BigQuery emulator, reading ``gs://`` URIs from the GCS emulator's disk."""
    kind, binary = installed_backend()
    port, grpc_port = free_port(), free_port()
    # The child must not follow STORAGE_EMULATOR_HOST: local-bigquery would then fetch gs://
    # objects over HTTP (no wildcards); the disk root is what both emulators support.
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env["HOME"] = str(EMULATOR_HOME)
    if kind == "local-bigquery":
        env["GCS_LOCAL_ROOT"] = str(gcs_root)
        cmd = [
            str(binary),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--project",
            PROJECT,
            "--data-dir",
            str(data),
        ]
        lacks: dict[str, str] = {}
    else:
        env["BQEMU_GCS_LOCAL_ROOT"] = str(gcs_root)
        cmd = [
            str(binary),
            "start",
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(port),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(grpc_port),
            "--project",
            PROJECT,
            "--ephemeral",
            "--log-level",
            "warning",
        ]
        lacks = dict(BQEMULATOR_LACKS)
    with serve(cmd, port, data / "emulator.log", env) as url:
        yield BigQueryEmulator(kind, url, PROJECT, lacks)
