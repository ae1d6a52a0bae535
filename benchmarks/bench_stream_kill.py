"""``kill -9`` the stream collector at random moments of a sandbox hour: is any candle lost or
stored twice?

    .venv/bin/python benchmarks/bench_stream_kill.py [--kills 20] [--speed 30] [--symbols A,B]

Runs ``btc-assets stream`` (sandbox env, in-process sandbox stream, accelerated clock via
``--sandbox-clock``) as a subprocess over a scratch data folder, and SIGKILLs it ``--kills``
times at uniformly random moments of one sandbox hour (10:00..11:00 UTC of today), starting
it again right away with the clock carried on. A last run lets it catch up, then SIGTERM.

Then, per stream, the staging for the day is compared with what the sandbox's REST serves
for 00:00 up to the last minute due: minutes lost (in REST, not staged), minutes stored
twice (rows sharing an open time), rows whose values differ from REST, and SQLite's
integrity check of every staging file. Prints the figures; lost, duplicated, different and
corrupt must all be 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from btc_assets import clock  # noqa: E402
from btc_assets.core.symbols import parse_symbols  # noqa: E402
from btc_assets.ops.stream import rest_filler  # noqa: E402
from btc_assets.sandbox.transport import SandboxTransport  # noqa: E402
from btc_assets.settings import SANDBOX_BINANCE_FUTURES_URL, SANDBOX_BINANCE_SPOT_URL  # noqa: E402
from btc_assets.stream.collector import stream_targets  # noqa: E402
from btc_assets.stream.staging import MINUTE_MS, Staging, day_start_ms  # noqa: E402
from btc_assets.vendors.binance import BinanceClient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, hour = today + timedelta(hours=10), 3600 / args.speed  # real seconds per sandbox hour
    data = Path(tempfile.mkdtemp(prefix="bench_stream_kill_"))
    env = {**os.environ, "BTC_ASSETS_ENV": "sandbox", "BTC_ASSETS_DATA_DIR": str(data),
           "BTC_ASSETS_SYMBOLS": args.symbols, "BTC_ASSETS_STREAM_METRICS_PORT": "0"}  # fmt: skip
    real0 = time.time()

    def sandbox_now() -> datetime:
        return start + timedelta(seconds=(time.time() - real0) * args.speed)

    def launch() -> subprocess.Popen[bytes]:
        at = sandbox_now().isoformat().replace("+00:00", "Z")
        return subprocess.Popen(
            [sys.executable, "-m", "btc_assets.ops.cli", "stream",
             f"--sandbox-clock={at}@{args.speed}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    moments = sorted(rng.uniform(0, hour) for _ in range(args.kills))
    proc = launch()
    for moment in moments:
        time.sleep(max(0.0, real0 + moment - time.time()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = launch()
    time.sleep(max(0.0, real0 + hour - time.time()) + 8)  # catch up after the hour
    end = sandbox_now()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)

    clock.run_from(end.timestamp(), 0.0)  # the REST truth as of the end
    client = BinanceClient(SANDBOX_BINANCE_SPOT_URL, SANDBOX_BINANCE_FUTURES_URL,
                           transport=SandboxTransport(seed=7))  # fmt: skip
    fill = rest_filler(client)
    staging = Staging(data / "stream")
    day = start.date()
    first = day_start_ms(day)
    # The hour and the catch-up: every minute due by the end, less the grace of the sweep.
    last = (int(end.timestamp() * 1000) - 60_000) // MINUTE_MS * MINUTE_MS - MINUTE_MS
    print(f"{args.kills} kill -9 over the sandbox hour {start:%Y-%m-%d %H:%M}..+1h at "
          f"{args.speed:g}x ({hour:.0f} s real); staging {staging.root}")  # fmt: skip
    totals = {"lost": 0, "duplicated": 0, "different": 0, "corrupt": 0}
    for target in stream_targets(parse_symbols(args.symbols)):
        staged = staging.staged_day(target.table, target.symbol, day)
        frame = staged.frame if staged else pl.DataFrame()
        truth = fill(target, first, last)
        window = frame.filter(pl.col("ts").dt.epoch("ms") <= last + MINUTE_MS)
        lost = truth.join(window, on="ts", how="anti").height
        duplicated = window.height - window["ts"].n_unique()
        different = window.join(truth, on=list(truth.columns), how="anti").height
        path = staging.path(target.table, target.symbol, day)
        corrupt = int(staging.integrity(path) != "ok")
        hour_rows = window.filter(
            pl.col("ts") > start.replace(second=0), pl.col("ts") <= start + timedelta(hours=1)
        ).height
        for key, value in (("lost", lost), ("duplicated", duplicated),
                           ("different", different), ("corrupt", corrupt)):  # fmt: skip
            totals[key] += value
        print(f"  {target.table:24} {target.symbol:8} staged {window.height:5} (hour {hour_rows}"
              f"/60) sources {staged.sources if staged else {}}  lost {lost}  duplicated "
              f"{duplicated}  different {different}  integrity "
              f"{'ok' if not corrupt else 'BAD'}")  # fmt: skip
    print("total: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
