"""End-to-end lag: a candle closes in the sandbox stream -> its row is in today's bars_15m.

    .venv/bin/python benchmarks/bench_stream_lag.py [--speed 20] [--minutes 60]

Everything as deployed, in one process on a scratch data folder: the stream collector on
the in-process sandbox websocket, the ``live_today`` sensor evaluated every
``STREAM_POLL_SECONDS`` (the daemon's tick for it), and each run it asks for executed as
the ``live_today`` job (every daily table of today, bars_15m included). The project's clock
runs ``--speed`` times real time from 10:00:20 UTC of today for ``--minutes`` sandbox
minutes, so an hour takes 60/speed real minutes.

For each 15-minute bar that closes in the window, lag = (real time its bars_15m row was
first committed) - (real time its last 1m candle closed in the stream). Printed in real
seconds: the sensor's poll, the wait for a run in flight, and the run itself are real work;
only the idle minutes between closes are compressed. Acceleration makes it pessimistic
(runs come back to back, so a close often waits for a run in flight).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(tempfile.mkdtemp(prefix="bench_stream_lag_"))
os.environ.update(
    BTC_ASSETS_ENV="sandbox",
    BTC_ASSETS_DATA_DIR=str(DATA),
    BTC_ASSETS_AUTOMATION="off",
    BTC_ASSETS_STREAM_METRICS_PORT="0",
)

import dagster as dg  # noqa: E402
import polars as pl  # noqa: E402

from btc_assets import clock  # noqa: E402
from btc_assets.defs.automation import STREAM_POLL_SECONDS  # noqa: E402
from btc_assets.lake import Lake  # noqa: E402
from btc_assets.ops.stream import build_collector  # noqa: E402
from btc_assets.settings import load_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today + timedelta(hours=10, seconds=20)
    clock.run_from(start.timestamp(), args.speed)
    real0 = time.time()

    def real_of(sandbox: datetime) -> float:
        return real0 + (sandbox - start).total_seconds() / args.speed

    from btc_assets.defs.definitions import defs  # after the clock and the env are set

    settings = load_settings()
    collector = build_collector(settings)
    stop = threading.Event()
    threading.Thread(target=collector.run, args=(stop,), daemon=True).start()
    sensor = defs.get_sensor_def("live_today")
    job = defs.resolve_job_def("live_today")
    lake = Lake(settings.lake_dir)
    end = start + timedelta(minutes=args.minutes)
    boundaries = [b for b in (start.replace(second=0) + timedelta(minutes=15 * k)
                              for k in range(1, args.minutes // 15 + 2)) if b <= end]  # fmt: skip
    seen: dict[datetime, float] = {}
    runs, reasons, cursor, durations = 0, {"stream": 0, "interval": 0}, None, []
    (DATA / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(DATA / "dagster")) as instance:
        while clock.now_utc() < end + timedelta(minutes=2) and len(seen) < len(boundaries):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            result = sensor(context)
            cursor = context.cursor
            if isinstance(result, dg.RunRequest):
                began = time.time()
                job.execute_in_process(
                    instance=instance, partition_key=result.partition_key, tags=result.tags,
                    raise_on_error=False,
                )  # fmt: skip
                durations.append(time.time() - began)
                runs += 1
                reasons[result.tags.get("btc_assets/live_reason", "?")] += 1
                committed = time.time()
                for symbol in (s.perp for s in settings.symbols):
                    day = clock.today_utc()
                    found = lake.read_days("bars_15m", symbol, [day]).committed.get(day)
                    if found is None:
                        continue
                    for ts in pl.read_parquet(found.path, columns=["ts"])["ts"].to_list():
                        if ts in boundaries and ts not in seen:
                            seen[ts] = committed
                continue
            time.sleep(STREAM_POLL_SECONDS)
    stop.set()
    lags = [seen[b] - real_of(b) for b in boundaries if b in seen]
    print(f"sandbox {start:%Y-%m-%d %H:%M:%S}..+{args.minutes} min at {args.speed:g}x; "
          f"{runs} live run(s) ({reasons['stream']} asked by the stream, "
          f"{reasons['interval']} by the interval), run wall median "
          f"{statistics.median(durations):.1f} s, max {max(durations):.1f} s")  # fmt: skip
    for b in boundaries:
        shown = f"{seen[b] - real_of(b):6.1f} s" if b in seen else "   not seen"
        print(f"  bars_15m {b:%H:%M}: {shown}")
    if lags:
        print(f"lag candle close -> bars_15m row: median {statistics.median(lags):.1f} s, "
              f"max {max(lags):.1f} s over {len(lags)} bar(s)")  # fmt: skip
    missing = [b for b in boundaries if b not in seen]
    if missing:
        print(f"NOT SEEN: {', '.join(f'{b:%H:%M}' for b in missing)}")


if __name__ == "__main__":
    main()
