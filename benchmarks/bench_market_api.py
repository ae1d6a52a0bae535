"""Throughput and latency of the market-data routes of ``btc-assets serve`` on loopback.

    .venv/bin/python benchmarks/bench_market_api.py [--seconds 10] [--concurrency 10]

Sets up a scratch data folder holding SYNTHETIC market days (random walks, not market data)
for BTCUSDT: 30 days of 15m ``coinglass_open_interest`` bars and one day of liquidation
heatmap tiles (200 price levels x 288 five-minute candles, about a third of the cells
non-empty) with its candles. Then starts the service in a subprocess exactly as
``bench_serve.py`` does (settings from the environment, one uvicorn worker, no Dagster
instance, no model: the market routes do not need one) and drives it with the same thin
keep-alive client: ``--concurrency`` connections, each sending its next request as soon as
the previous answer is read, for ``--seconds`` per endpoint after a one-second warm-up.

Printed: the first (cold) answer of each endpoint (the day files hashed, the picture drawn),
then requests/s and latency percentiles under load (warm caches: verified days are not hashed
again, a picture is drawn once per day file). Asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from bench_serve import drive, free_port, request_bytes, start_server  # noqa: E402

from btc_assets.core.market_schema import HEATMAP_CANDLE_SCHEMA, HEATMAP_TILE_SCHEMA  # noqa: E402
from btc_assets.core.schema import COINGLASS_OI_SCHEMA  # noqa: E402
from btc_assets.core.tables import HEATMAP_CANDLES, HEATMAP_TILES, OPEN_INTEREST  # noqa: E402
from btc_assets.lake import Lake  # noqa: E402

SYMBOL = "BTCUSDT"
DAYS = 30
LEVELS = 200
CANDLES = 288  # 5-minute candles in a day
PROVENANCE = {"env": "sandbox", "host": "benchmark.invalid", "note": "synthetic"}


def oi_days(lake: Lake, last: date, rng: np.random.Generator) -> None:
    for k in range(DAYS):
        day = last - timedelta(days=DAYS - 1 - k)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        close = 1.8e10 + np.cumsum(rng.normal(0, 2e7, size=96))
        frame = pl.DataFrame(
            {
                "symbol": [SYMBOL] * 96,
                "ts": [start + timedelta(minutes=15 * (i + 1)) for i in range(96)],
                "open": close - rng.uniform(0, 1e7, 96),
                "high": close + rng.uniform(0, 3e7, 96),
                "low": close - rng.uniform(0, 3e7, 96),
                "close": close,
            },
            schema=COINGLASS_OI_SCHEMA,
        )
        lake.write_day(OPEN_INTEREST.name, SYMBOL, day, frame, PROVENANCE)


def heatmap_day(lake: Lake, day: date, rng: np.random.Generator) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    stamps = [start + timedelta(minutes=5 * (i + 1)) for i in range(CANDLES)]
    price = 65000 + np.cumsum(rng.normal(0, 25, size=CANDLES))
    levels = 60000.0 + 50.0 * np.arange(LEVELS)
    column, row = np.nonzero(rng.random((CANDLES, LEVELS)) < 0.33)  # sparse, like model1
    tiles = pl.DataFrame(
        {
            "symbol": SYMBOL,
            "ts": [stamps[i] for i in column],
            "scope": "pair",
            "price_level": levels[row],
            "intensity": rng.lognormal(14, 2, size=len(row)),
        },
        schema=HEATMAP_TILE_SCHEMA,
    )
    candles = pl.DataFrame(
        {
            "symbol": SYMBOL, "ts": stamps, "scope": "pair", "open": price - 5,
            "high": price + 20, "low": price - 20, "close": price,
            "volume_usd": rng.uniform(1e6, 5e7, CANDLES),
        },
        schema=HEATMAP_CANDLE_SCHEMA,
    )  # fmt: skip
    lake.write_day(HEATMAP_TILES.name, SYMBOL, day, tiles, PROVENANCE)
    lake.write_day(HEATMAP_CANDLES.name, SYMBOL, day, candles, PROVENANCE)
    return tiles.height


def cold(port: int, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as answer:
        size = len(answer.read())
    return (time.perf_counter() - started) * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench_market_"))
    rng = np.random.default_rng(42)
    last = datetime.now(UTC).date() - timedelta(days=1)
    lake = Lake(data / "lake")
    oi_days(lake, last, rng)
    tiles = heatmap_day(lake, last, rng)
    port = free_port()
    server = start_server(data, port, "auto", "auto")
    first = last - timedelta(days=DAYS - 1)
    oi = f"/replay/oi/{SYMBOL}?start={first.isoformat()}&end={(last + timedelta(days=1))}"
    png = f"/heatmap/{SYMBOL}?day={last.isoformat()}&format=png"
    heatmap_json = f"/heatmap/{SYMBOL}?day={last.isoformat()}"
    cases = {
        f"GET /replay/oi ({DAYS} days, {DAYS * 96} rows)": oi,
        "GET /heatmap?format=png": png,
        "GET /heatmap (json)": heatmap_json,
    }
    try:
        print(f"synthetic lake: {DAYS} days of 15m open interest, one heatmap day of {tiles} "
              f"tiles ({LEVELS} levels x {CANDLES} candles); concurrency {args.concurrency}, "
              f"{args.seconds:.0f} s per endpoint; {os.cpu_count()} CPUs shared by server and "
              "load generator")  # fmt: skip
        for name, path in cases.items():
            ms, size = cold(port, path)
            print(f"first answer of {name}: {ms:.0f} ms, {size} bytes")
        try:
            import uvloop  # the load generator's own loop: cheaper per request

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        print(f"{'endpoint':40} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'non-200':>8}")  # fmt: skip
        for name, path in cases.items():
            raw = request_bytes("GET", path)
            r = runner(drive(port, raw, args.seconds, args.concurrency))
            print(f"{name:40} {r['rps']:8.0f} {r['p50']:8.2f} {r['p90']:8.2f} {r['p99']:8.2f} "
                  f"{r['max']:8.2f} {r['non_200']:8d}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
