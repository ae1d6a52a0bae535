"""The sandbox's opt-in request log: one line per request, ``epoch host path pid``, written so
that concurrent run processes interleave whole lines (a harness measures per-host rates)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import httpx

from btc_assets.sandbox.transport import SandboxTransport

PER_PROCESS = 300
PROCESSES = 4
HOSTS = ("http://sandbox.binance.invalid", "http://sandbox.fapi.binance.invalid")


def _send(log: str, host: str) -> None:
    with httpx.Client(base_url=host, transport=SandboxTransport(request_log=log)) as client:
        for _ in range(PER_PROCESS):
            client.get("/api/v3/ping" if "fapi" not in host else "/fapi/v1/ping")


def test_each_request_is_one_line_of_time_host_path_pid(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    before = time.time()
    with httpx.Client(transport=SandboxTransport(request_log=log)) as client:
        assert client.get("http://sandbox.binance.invalid/api/v3/ping").status_code == 200
        client.get("http://sandbox.fapi.binance.invalid/fapi/v1/time")
    lines = log.read_text().splitlines()
    assert [line.split()[1:] for line in lines] == [
        ["sandbox.binance.invalid", "/api/v3/ping", str(os.getpid())],
        ["sandbox.fapi.binance.invalid", "/fapi/v1/time", str(os.getpid())],
    ]
    assert all(before <= float(line.split()[0]) <= time.time() for line in lines)


def test_no_log_without_the_setting(tmp_path: Path) -> None:
    with httpx.Client(transport=SandboxTransport()) as client:
        client.get("http://sandbox.binance.invalid/api/v3/ping")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_processes_interleave_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "requests.log"
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_send, args=(str(log), HOSTS[i % 2])) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lines = log.read_text().splitlines()
    assert len(lines) == PROCESSES * PER_PROCESS
    by_pid: dict[str, int] = {}
    for line in lines:
        stamp, host, path, pid = line.split(" ")
        float(stamp)
        assert (host, path) in {
            ("sandbox.binance.invalid", "/api/v3/ping"),
            ("sandbox.fapi.binance.invalid", "/fapi/v1/ping"),
        }
        by_pid[pid] = by_pid.get(pid, 0) + 1
    assert sorted(by_pid.values()) == [PER_PROCESS] * PROCESSES
