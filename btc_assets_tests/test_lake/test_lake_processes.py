"""Writers as separate processes, as concurrent Dagster runs are: killed mid-commit, and
racing for one day. Both backends; GCS is the emulator with preconditions enforced."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from google.api_core.exceptions import PreconditionFailed

from btc_assets.lake import Lake
from btc_assets_tests.emulators import GcsEmulator
from btc_assets_tests.gcs_lake import blob, fresh_url
from btc_assets_tests.test_core.test_bars import fixture_klines

TABLE, SYMBOL = "klines_1m", "BTCUSDT"
DAY = date(2024, 9, 21)
# A writer process: writes the day with its frame (head(rows)) ``times`` times, then prints
# "done". rows=-1 alternates 1440 and 720 rows, so a kill can land between any two steps.
WRITER = """
import sys
from datetime import date
from btc_assets.lake import Lake
from btc_assets_tests.test_core.test_bars import fixture_klines
root, rows, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
frame = fixture_klines()
lake = Lake(root)
print("ready", flush=True)
for i in range(times):
    n = rows if rows >= 0 else (1440 if i % 2 else 720)
    lake.write_day("klines_1m", "BTCUSDT", date(2024, 9, 21), frame.head(n))
print("done", flush=True)
"""


def _writer(root: str, rows: int, times: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, root, str(rows), str(times)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "lake")
    request.getfixturevalue("gcs_server")
    return fresh_url()


def test_the_emulator_refuses_stale_generations_as_gcs_does(gcs_server: GcsEmulator) -> None:
    """The harness's own rule, checked with Google's client: without it the race tests
    below would pass whatever the lake did (the bare emulator ignores preconditions)."""
    obj = blob(fresh_url() + "/MANIFEST.tsv")
    obj.upload_from_string(b"one", if_generation_match=0)
    obj.reload()
    first = obj.generation
    with pytest.raises(PreconditionFailed):
        obj.upload_from_string(b"two", if_generation_match=0)
    obj.upload_from_string(b"two", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        obj.upload_from_string(b"three", if_generation_match=first)  # stale now
    assert obj.download_as_bytes() == b"two"


def test_a_writer_killed_at_any_moment_leaves_a_whole_day(root: str) -> None:
    frame = fixture_klines()
    Lake(root).write_day(TABLE, SYMBOL, DAY, frame)
    rng = random.Random(15)
    for _ in range(6):
        proc = _writer(root, -1, 1000)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        lake = Lake(root)
        written = lake.verify_day(TABLE, SYMBOL, DAY)  # raises if the day is not whole
        out = lake.read_days(TABLE, SYMBOL, [DAY]).frame.collect()
        assert out.equals(frame.head(written.rows)) and written.rows in (720, 1440)
    # Whatever the kills left behind is listed, and a later write commits over it.
    Lake(root).write_day(TABLE, SYMBOL, DAY, frame.head(100))
    assert Lake(root).verify_day(TABLE, SYMBOL, DAY).rows == 100


def test_writer_processes_racing_for_one_day_each_commit_whole(root: str) -> None:
    frame = fixture_klines()
    writers = [_writer(root, rows, 15) for rows in (300, 600, 900)]
    outputs = [w.communicate(timeout=300) for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert all(out.strip().endswith("done") for out, _ in outputs)
    lake = Lake(root)
    written = lake.verify_day(TABLE, SYMBOL, DAY)
    assert written.rows in (300, 600, 900)
    assert lake.read_days(TABLE, SYMBOL, [DAY]).frame.collect().equals(frame.head(written.rows))
