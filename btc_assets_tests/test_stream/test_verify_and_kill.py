"""``btc-assets verify`` shows the stream staging, and ``kill -9`` of the real collector
process (``btc-assets stream``) at random moments loses and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from btc_assets import clock
from btc_assets.core.tables import PERP_1M, SPOT_1M
from btc_assets.ops.cli import main
from btc_assets.stream.staging import Staging
from btc_assets_tests.test_stream.helpers import START, accelerate, make_collector, running, truth

ROOT = Path(__file__).resolve().parents[2]


def test_verify_shows_coverage_gaps_last_candle_lag_and_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BTC_ASSETS_ENV", "sandbox")
    accelerate(monkeypatch, START, 1.0)
    collector, _ = make_collector(tmp_path / "stream")
    with running(collector):
        deadline = time.time() + 20
        while time.time() < deadline and collector.status.rest_fills < 2:
            time.sleep(0.1)
        time.sleep(2.5)  # the state file is written every 2 s
        main(["verify", "--table", PERP_1M.name])
    out = capsys.readouterr().out
    perp = next(line for line in out.splitlines() if line.startswith(f"BTCUSDT  {PERP_1M.name}"))
    # 10:00:2x now: the minutes closed over 30 s ago are 00:00..09:58; the 09:59 one is
    # staged too (its close, 10:00, is the last one shown).
    assert "599/599" in perp and "100.00%" in perp and "10:00" in perp and "rest 600" in perp
    assert "perp-1: connected, 1 stream(s), 0 reconnect(s)" in out
    path = Staging(tmp_path / "stream").path(SPOT_1M.name, "BTCUSDT", START.date())
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM candles WHERE open_ms % 3600000 = 0")  # each hour's first
    code = main(["verify", "--table", SPOT_1M.name])
    out = capsys.readouterr().out
    assert code == 1
    assert f"stream staging {SPOT_1M.name} BTCUSDT {START.date()}: 10 gap(s), 10 closed" in out


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    speed, rng = 60.0, random.Random(11)
    start = START
    env = {**os.environ, "BTC_ASSETS_ENV": "sandbox", "BTC_ASSETS_DATA_DIR": str(tmp_path),
           "BTC_ASSETS_STREAM_METRICS_PORT": "0"}  # fmt: skip
    real0 = time.time()

    def launch() -> subprocess.Popen[bytes]:
        at = start + timedelta(seconds=(time.time() - real0) * speed)
        return subprocess.Popen(
            [sys.executable, "-m", "btc_assets.ops.cli", "stream",
             f"--sandbox-clock={at.isoformat()}@{speed:g}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    proc = launch()
    for _ in range(4):
        time.sleep(rng.uniform(2.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = launch()
    time.sleep(8)
    end = start + timedelta(seconds=(time.time() - real0) * speed)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    staging = Staging(tmp_path / "stream")
    day_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    # Compared up to 3 real seconds before the stop: the newest candle's own delivery (a
    # thread switch, a commit) is not what the kills test. The sweep runs every 15 real
    # seconds, so it does not cover the last restart's 8 s; the kills are all minutes older.
    due = end - timedelta(seconds=3 * speed)
    for table, market in ((PERP_1M.name, "perp"), (SPOT_1M.name, "spot")):
        staged = staging.staged_day(table, "BTCUSDT", start.date())
        assert staged is not None
        assert staging.integrity(staging.path(table, "BTCUSDT", start.date())) == "ok"
        window = staged.frame.filter(pl.col("ts") <= due)
        clock_now = end.timestamp()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(clock, "epoch_seconds", lambda t=clock_now: t)
            expected = truth(market, "BTCUSDT", day_start, due)
        assert_frame_equal(window, expected)  # nothing lost, nothing twice, same values
        assert staged.sources.get("ws", 0) > 0  # the stream did deliver between kills
