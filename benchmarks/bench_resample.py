"""Resample 10 years of 1m bars to 15m from one Parquet file; print speed and peak memory.

    .venv/bin/python benchmarks/bench_resample.py [--years 10]

Timing and memory are measured in a child process, so the peak RSS belongs to the
resample (plus the Polars runtime), not to building the synthetic data.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from btc_assets.core.bars import resample
from btc_assets.core.quality import bar_quality_by_day
from btc_assets.core.schema import KLINE_SCHEMA, TS

START = datetime(2015, 1, 1, tzinfo=UTC)
REPEATS = 3
T = TypeVar("T")


def synthetic_klines(years: int, seed: int = 7) -> pl.DataFrame:
    """A geometric random walk with plausible OHLC and volumes; only the shape matters."""
    days = (START.replace(year=START.year + years) - START).days
    n = days * 1440
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 6e-4, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 3e-4, n)) * close
    volume = rng.gamma(2.0, 5.0, n)
    taker = volume * rng.uniform(0.3, 0.7, n)
    start_ms = int(START.timestamp() * 1000)
    ts = start_ms + 60_000 * np.arange(1, n + 1, dtype=np.int64)
    return pl.DataFrame(
        {
            "symbol": "BTCUSDT",
            "ts": pl.Series(ts).cast(TS),
            "open": open_,
            "high": np.maximum(open_, close) + wiggle,
            "low": np.minimum(open_, close) - wiggle,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "taker_buy_volume": taker,
            "taker_buy_quote_volume": taker * close,
            "trades": rng.poisson(900, n).astype(np.int64),
        }
    ).select([pl.col(c).cast(t) for c, t in KLINE_SCHEMA.items()])


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def best_of(fn: Callable[[], T], repeats: int = REPEATS) -> tuple[float, T]:
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - t0)
    return min(timings), result


def measure(path: Path) -> None:
    baseline = rss_mib()
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    seconds, bars = best_of(lambda: resample(pl.scan_parquet(path), "15m").collect())
    peak = peak_rss_mib()
    print(f"resample 1m -> 15m      : {rows:,} rows in {seconds:.3f} s (best of {REPEATS})")
    print(f"  throughput            : {rows / seconds / 1e6:.2f} M input rows/s")
    print(f"  output                : {bars.height:,} bars")
    print(f"  RSS baseline / peak   : {baseline:.0f} MiB / {peak:.0f} MiB")

    days = [date(2015, 1, 1) + timedelta(days=i) for i in range(bars.height // 96)]
    q_seconds, _ = best_of(lambda: bar_quality_by_day(bars.lazy(), "15m", days))
    print(f"quality 15m, {len(days)} days : {q_seconds:.3f} s")
    year = days[-365:]
    first = datetime(year[0].year, year[0].month, year[0].day, tzinfo=UTC)
    one_min = pl.scan_parquet(path).filter(pl.col("ts") > first)
    y_seconds, _ = best_of(lambda: bar_quality_by_day(one_min, "1m", year))
    print(f"quality 1m, {len(year)} days   : {y_seconds:.3f} s (scan + filter included)")
    print(f"peak RSS after quality  : {peak_rss_mib():.0f} MiB")

    # The textbook formulation, kept here to show why bars.resample does not use it.
    sums = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "trades")

    def dynamic() -> pl.DataFrame:
        return (
            pl.scan_parquet(path)
            .sort("symbol", "ts", maintain_order=True)
            .group_by_dynamic("ts", every="15m", closed="right", label="right", group_by="symbol")
            .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(),
                 pl.col("close").last(), pl.col(*sums).sum(), pl.len())
            .collect()
        )  # fmt: skip

    d_seconds, _ = best_of(dynamic)
    print(f"group_by_dynamic + sort : {d_seconds:.3f} s, peak RSS now {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "klines_1m.parquet"
        t0 = time.perf_counter()
        df = synthetic_klines(args.years)
        df.write_parquet(path, compression="zstd", compression_level=3)
        size = path.stat().st_size / 2**20
        took = time.perf_counter() - t0
        print(f"built {df.height:,} 1m rows, {size:.0f} MiB parquet in {took:.1f} s")
        del df
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
