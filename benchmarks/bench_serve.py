"""Throughput and latency of ``btc-assets serve`` on loopback: /predict and /predict/latest.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 10] [--concurrency 10]
                                               [--http auto|h11|httptools]
                                               [--loop auto|asyncio|uvloop]

Sets up a scratch data folder holding a real model (XGBoost, ~40 features, 200 trees of depth
4, trained on SYNTHETIC benchmark rows: random numbers, not market data) promoted as
``baseline_1h``, and one ``features_1h`` day of today with the same synthetic columns. Then
starts the service in a subprocess, built exactly as ``btc-assets serve`` builds it (settings
from the environment, ``ops/serve.service_config``, one uvicorn worker, no Dagster instance:
gate unchecked), so the load generator does not share its GIL. ``--http``/``--loop`` pick
uvicorn's parser and event loop (``auto``, the default, is what ``btc-assets serve`` uses:
httptools and uvloop when installed).

The load: ``--concurrency`` keep-alive HTTP/1.1 connections over raw asyncio streams (a
client as thin as possible, so it is not the bottleneck), each sending its next request as
soon as the previous answer is read, for ``--seconds`` per endpoint after a short warm-up.
Prints requests/s and latency percentiles; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import xgboost as xgb  # noqa: E402

from btc_assets.lake import Lake  # noqa: E402
from btc_assets.model.registry import model_store, save_model  # noqa: E402

FEATURES = tuple(f"synthetic_{i:02d}" for i in range(40))
SYMBOL = "BTCUSDT"
SERVER = """
import sys, uvicorn
from btc_assets.ops.serve import service_config
from btc_assets.service.app import create_app
from btc_assets.settings import load_settings
settings = load_settings()
uvicorn.run(create_app(service_config(settings, None)), host="127.0.0.1",
            port=settings.serve.port, log_level="warning", access_log=False,
            http=sys.argv[1], loop=sys.argv[2])
"""


def build_lake(data: Path) -> str:
    """A promoted synthetic model and today's synthetic features_1h day; the version."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(20_000, len(FEATURES))).astype(np.float32)
    y = 0.01 * x[:, 0] - 0.004 * x[:, 1] * x[:, 2] + rng.normal(scale=0.01, size=len(x))
    params = {"max_depth": 4, "eta": 0.05, "nthread": 2, "seed": 42}
    names = list(FEATURES)
    regressor = xgb.train({**params, "objective": "reg:squarederror"},
                          xgb.DMatrix(x, label=y, feature_names=names), 200)  # fmt: skip
    classifier = xgb.train({**params, "objective": "binary:logistic"},
                           xgb.DMatrix(x, label=y > 0, feature_names=names), 200)  # fmt: skip
    lake = data / "lake"
    store = model_store(lake)
    card = {"features": names, "dtypes": dict.fromkeys(names, "Float64"),
            "dataset_sha256": "synthetic-benchmark", "env": "sandbox",
            "note": "synthetic benchmark model: random inputs, not market data"}  # fmt: skip
    version = save_model(
        store, "baseline_1h", regressor=bytes(regressor.save_raw("ubj")),
        classifier=bytes(classifier.save_raw("ubj")), card=card, importance_png=b"\x89PNG",
    ).version  # fmt: skip
    store.promote("baseline_1h", version)
    now = datetime.now(UTC)
    day = now.date() if now.hour >= 1 else now.date() - timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hours = max(1, min(24, int((now - start).total_seconds() // 3600)))
    frame = pl.DataFrame(
        {
            "symbol": [SYMBOL] * hours,
            "ts": pl.Series(
                [start + timedelta(hours=h + 1) for h in range(hours)],
                dtype=pl.Datetime("ms", "UTC"),
            ),
            **{f: rng.normal(size=hours) for f in FEATURES},
        }
    )
    Lake(lake).write_day("features_1h", SYMBOL, day, frame, {"env": "sandbox"})
    return version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, http: str, loop: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTC_ASSETS_", "DAGSTER"))}
    env.update(BTC_ASSETS_ENV="sandbox", BTC_ASSETS_DATA_DIR=str(data),
               BTC_ASSETS_SERVE_PORT=str(port), PYTHONPATH=str(ROOT))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", SERVER, http, loop], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the service did not answer within 60 s")


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _connection(port: int, raw: bytes, until: float, out: list[float], bad: list[int]):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while clock() < until:
            started = clock()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            out.append(clock() - started)
            if head[9:12] != b"200":
                bad.append(int(head[9:12]))
    finally:
        writer.close()


async def drive(port: int, raw: bytes, seconds: float, concurrency: int) -> dict[str, float]:
    await asyncio.gather(*(_connection(port, raw, time.perf_counter() + 1.0, [], [])
                           for _ in range(concurrency)))  # warm-up, not counted  # fmt: skip
    latencies: list[float] = []
    bad: list[int] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_connection(port, raw, until, latencies, bad) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "requests": len(ms),
        "rps": len(ms) / elapsed,
        "p50": statistics.median(ms),
        "p90": ms[int(0.90 * (len(ms) - 1))],
        "p99": ms[int(0.99 * (len(ms) - 1))],
        "max": ms[-1],
        "non_200": len(bad),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    version = build_lake(data)
    port = free_port()
    server = start_server(data, port, args.http, args.loop)
    try:
        rng = np.random.default_rng(7)
        one = {"instances": [{f: float(v) for f, v in zip(FEATURES, rng.normal(size=40),
                                                           strict=True)}]}  # fmt: skip
        cases = {
            "POST /predict (1 instance)":
                request_bytes("POST", "/predict", json.dumps(one).encode()),
            f"GET /predict/latest?symbol={SYMBOL}":
                request_bytes("GET", f"/predict/latest?symbol={SYMBOL}"),
        }  # fmt: skip
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready") as ready:
            status = json.loads(ready.read())["status"]
        print(f"model {version} (synthetic: 40 features, 200 trees of depth 4 per booster); "
              f"service {status}; uvicorn http={args.http} loop={args.loop}; "
              f"concurrency {args.concurrency}, {args.seconds:.0f} s per endpoint; "
              f"{os.cpu_count()} CPUs shared by server and load generator")  # fmt: skip
        try:
            import uvloop  # the load generator's own loop: cheaper per request

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        print(f"{'endpoint':40} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'non-200':>8}")  # fmt: skip
        for name, raw in cases.items():
            r = runner(drive(port, raw, args.seconds, args.concurrency))
            print(f"{name:40} {r['rps']:8.0f} {r['p50']:8.2f} {r['p90']:8.2f} {r['p99']:8.2f} "
                  f"{r['max']:8.2f} {r['non_200']:8d}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
