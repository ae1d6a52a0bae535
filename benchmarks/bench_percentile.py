"""Rolling 30-day percentile rank on 10 years of 1m values; print seconds, best of 3.

    .venv/bin/python benchmarks/bench_percentile.py [--years 10]

Compares ``core.percentile.rolling_percentile`` (time window ``30d`` via
``rolling_rank_by`` / ``rolling_sum_by``) with Polars ``rolling_rank`` by row count (43,200
rows), on a regular 1m index with a few nulls, and then the production shape: 15m bars with a
2,880-bar window. On a regular index the two windows hold the same rows, so the script also
prints how far ``rolling_percentile`` is from ``rolling_rank / rolling count`` (expected 0).
Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np
import polars as pl

from btc_assets.core.percentile import rolling_percentile
from btc_assets.core.schema import TS

START = datetime(2015, 1, 1, tzinfo=UTC)
WINDOW = timedelta(days=30)
REPEATS = 3
NULL_SHARE = 1e-4
T = TypeVar("T")


def synthetic(years: int, step: timedelta, seed: int = 7) -> pl.DataFrame:
    """A random walk (OI-like level) on a regular grid, a few values null."""
    days = (START.replace(year=START.year + years) - START).days
    n = days * (timedelta(days=1) // step)
    rng = np.random.default_rng(seed)
    value = 1e10 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    start_ms = int(START.timestamp() * 1000)
    ts = start_ms + (step // timedelta(milliseconds=1)) * np.arange(1, n + 1, dtype=np.int64)
    return pl.DataFrame({"ts": pl.Series(ts).cast(TS), "v": value}).with_columns(
        v=pl.when(pl.Series(rng.random(n) < NULL_SHARE)).then(None).otherwise("v")
    )


def best_of(fn: Callable[[], T], repeats: int = REPEATS) -> tuple[float, T]:
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - t0)
    return min(timings), result


def run(df: pl.DataFrame, label: str, step: timedelta) -> None:
    rows = WINDOW // step
    print(f"{label}: {df.height:,} rows, window {WINDOW.days}d = {rows:,} rows")

    def ours() -> pl.Series:
        return df.select(rolling_percentile("v", "ts", WINDOW))["percentile"]

    def by_rows() -> pl.Series:
        return df.select(pl.col("v").rolling_rank(rows, method="max", min_samples=1))["v"]

    seconds, pct = best_of(ours)
    print(f"  rolling_percentile (rank_by max / count, 30d by time) : {seconds:.3f} s")
    seconds, rank = best_of(by_rows)
    print(f"  polars rolling_rank(max), {rows} rows by count      : {seconds:.3f} s")
    count = df.select(pl.col("v").is_not_null().cast(pl.Int64).rolling_sum(rows, min_samples=1))
    diff = (pct - rank / count.to_series()).abs().max()
    print(f"  max |ours - rolling_rank / count|                     : {diff}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--years", type=int, default=10)
    args = parser.parse_args()
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads, {os.cpu_count()} CPUs")
    minute, bar = timedelta(minutes=1), timedelta(minutes=15)
    run(synthetic(args.years, minute), f"{args.years}y of 1m", minute)
    run(synthetic(args.years, bar), f"{args.years}y of 15m", bar)


if __name__ == "__main__":
    main()
