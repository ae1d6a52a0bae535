"""Train the baseline (regressor + classifier) on two years of hourly rows; print wall time
and peak memory for 1 symbol and for 10.

    .venv/bin/python benchmarks/bench_training.py [--symbols 1,10] [--nthread 0]

The data is a SYNTHETIC BENCHMARK FRAME, not market data: 60 float features (N(0, 1), 2% of
values null, and the first 30 days of a third of them null, as long look-backs are) and a
target that is a weak nonlinear function of six of them buried in noise, so early stopping
runs for a realistic number of rounds. Only its shape and size matter.

Each case runs in its own child process that reads the frame from Parquet, so its peak RSS
belongs to that case (reading the file plus training), not to building the data or to the
other case.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb

from btc_assets.model.train import TrainingParams, booster_bytes, importance_png, train_baseline

START = datetime(2023, 1, 1, tzinfo=UTC)
HOURS = 2 * 365 * 24  # 17,520 hourly rows per symbol
N_FEATURES = 60
FEATURES = tuple(f"feature_{i:02d}" for i in range(N_FEATURES))
SHARES = (0.70, 0.15, 0.15)


def synthetic_frame(symbols: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(symbols):
        x = rng.normal(0.0, 1.0, (HOURS, N_FEATURES))
        signal = 0.3 * x[:, 0] - 0.2 * x[:, 1] + 0.2 * np.tanh(x[:, 2] * x[:, 3])
        signal += 0.1 * (x[:, 4] > 1.0) - 0.1 * np.abs(x[:, 5])
        target = 0.004 * (0.6 * signal + rng.normal(0.0, 1.0, HOURS))
        x[rng.random(x.shape) < 0.02] = np.nan
        x[: 30 * 24, ::3] = np.nan  # warm-up of long look-back features
        ts = int(START.timestamp() * 1000) + 3_600_000 * np.arange(1, HOURS + 1, dtype=np.int64)
        frame = pl.DataFrame({name: x[:, i] for i, name in enumerate(FEATURES)})
        parts.append(
            frame.with_columns(
                pl.lit(f"SYM{s:02d}USDT").alias("symbol"),
                pl.Series("ts", ts).cast(pl.Datetime("ms", "UTC")),
                pl.Series("target", target),
                pl.Series("ret_1h", np.concatenate([[np.nan], target[:-1]])),
            ).with_columns(pl.col(FEATURES).fill_nan(None), pl.col("ret_1h").fill_nan(None))
        )
    return (
        pl.concat(parts)
        .with_columns((pl.col("target") > 0).alias("target_up"))
        .sort("ts", "symbol")
    )


def time_splits(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """70/15/15 on the shared timeline, the boundary hour dropped (a one-hour purge)."""
    times = frame.get_column("ts").unique().sort()
    a = times[int(len(times) * SHARES[0])]
    b = times[int(len(times) * (SHARES[0] + SHARES[1]))]
    ts = pl.col("ts")
    return {
        "train": frame.filter(ts < a - pl.duration(hours=1)),
        "validation": frame.filter((ts >= a) & (ts < b - pl.duration(hours=1))),
        "test": frame.filter(ts >= b),
    }


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(path: Path, nthread: int) -> None:
    frame = pl.read_parquet(path)
    splits = time_splits(frame)
    del frame
    loaded = rss_mib()
    params = TrainingParams(nthread=nthread)
    t0 = time.perf_counter()
    trained = train_baseline(splits["train"], splits["validation"], splits["test"], FEATURES,
                             params)  # fmt: skip
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    t1 = time.perf_counter()
    sizes = [len(booster_bytes(trained.regressor)), len(booster_bytes(trained.classifier))]
    png = importance_png(trained.importance)
    extras = time.perf_counter() - t1

    rows = {name: f.height for name, f in splits.items()}
    symbols = splits["train"].get_column("symbol").n_unique()
    print(f"{symbols} symbol(s), {sum(rows.values()):,} rows x {N_FEATURES} features")
    print(f"  split rows            : {rows['train']:,} / {rows['validation']:,} / "
          f"{rows['test']:,} (train / validation / test)")  # fmt: skip
    for model in ("regressor", "classifier"):
        best = trained.best_iteration[model]
        grown = min(best + 1 + params.early_stopping_rounds, params.max_rounds)
        print(f"  {model:<22}: best round {best}, {grown} rounds grown, kept {best + 1}")
    print(f"  train_baseline        : {seconds:.2f} s wall (both boosters + metrics on 3 splits)")
    print(f"  RSS after load / peak : {loaded:.0f} MiB / {peak:.0f} MiB")
    print(f"  model bytes (ubj)     : regressor {sizes[0]:,}, classifier {sizes[1]:,}; "
          f"importance.png {len(png):,} ({extras:.2f} s)")  # fmt: skip
    m = trained.metrics["validation"]
    print(f"  validation rmse model/zero: {m['model']['rmse'] / m['zero']['rmse']:.4f}, "
          f"ic {m['model']['ic']:.3f}, classifier accuracy "
          f"{m['classifier']['directional_accuracy']:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", default="1,10", help="comma-separated symbol counts")
    parser.add_argument("--nthread", type=int, default=0, help="0: every core")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.nthread)
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())  # a busy machine slows training
    print(f"xgboost {xgb.__version__}, polars {pl.__version__}, {os.cpu_count()} CPUs "
          f"(load average {load}), nthread={args.nthread}")  # fmt: skip
    print(f"synthetic benchmark frame (not market data): {HOURS:,} hourly rows per symbol")
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.symbols.split(",")):
            path = Path(tmp) / f"synthetic_{count}.parquet"
            t0 = time.perf_counter()
            synthetic_frame(count).write_parquet(path)
            took = time.perf_counter() - t0
            print(f"\nbuilt synthetic frame: {count} symbol(s), "
                  f"{path.stat().st_size / 2**20:.0f} MiB parquet in {took:.1f} s")  # fmt: skip
            sys.stdout.flush()
            subprocess.run(
                [sys.executable, __file__, "--measure", str(path), "--nthread", str(args.nthread)],
                check=True,
            )


if __name__ == "__main__":
    main()
