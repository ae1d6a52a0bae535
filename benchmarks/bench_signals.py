"""Signals over a year of sandbox data: what fired, per kind and severity, and how long the
``signals`` asset takes over the whole range in one run.

First the tables ``signals`` reads are built (Binance, CoinGlass, bars, ``bars_15m``: the
daily job's groups before it), then ``signals`` alone over the range is timed, twice (the
second run must write byte-identical days). Also prints the events the sandbox planted in
the range (``sandbox/market_events.py``), so the counts can be read against them. Sandbox
in-process vendor, sqlite instance in a temporary DAGSTER_HOME. Not a test.

    .venv/bin/python benchmarks/bench_signals.py [--days 365]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="btc_bench_signals_"))
os.environ["BTC_ASSETS_ENV"] = "sandbox"
os.environ["BTC_ASSETS_DATA_DIR"] = str(WORK / "data")
os.environ["DAGSTER_HOME"] = str(WORK / "dagster_home")
(WORK / "dagster_home").mkdir(parents=True, exist_ok=True)
(WORK / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import warnings  # noqa: E402

import dagster as dg  # noqa: E402
import polars as pl  # noqa: E402

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from btc_assets import clock  # noqa: E402
from btc_assets.core.market_schema import ALERT_SCHEMA  # noqa: E402
from btc_assets.core.tables import SIGNALS  # noqa: E402
from btc_assets.defs.definitions import SETTINGS, defs  # noqa: E402
from btc_assets.lake import Lake  # noqa: E402
from btc_assets.sandbox import market as mk  # noqa: E402
from btc_assets.sandbox import market_events as events  # noqa: E402

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(keys: list[str], tags: dict[str, str], instance: dg.DagsterInstance) -> float:
    began = time.perf_counter()
    result = defs.resolve_job_def("btc_daily").execute_in_process(
        instance=instance,
        tags=tags,
        asset_selection=[dg.AssetKey(k) for k in keys],
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success, f"{keys}: run failed"
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    last = clock.today_utc() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    instance = dg.DagsterInstance.get()
    symbols = [s.perp for s in SETTINGS.symbols]
    print(f"signals {first} .. {last} ({args.days} days), basket {', '.join(symbols)}, sandbox")

    graph = defs.resolve_asset_graph()
    upstream = [
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.get(k).group_name in ("binance", "bars", "coinglass", "features")
        and graph.get(k).is_partitioned
    ]
    wall = run(upstream, tags, instance)
    print(f"  inputs (Binance, CoinGlass, bars, bars_15m)  {wall:8.1f} s")
    wall = run([SIGNALS.name], tags, instance)
    print(f"  signals (one run over the range)             {wall:8.1f} s  "
          f"peak RSS {peak_rss_mib():6.0f} MiB")  # fmt: skip

    lake = Lake(SETTINGS.lake_dir)
    days = [first + timedelta(days=i) for i in range(args.days)]
    digests = {}
    frames = []
    for symbol in symbols:
        read = lake.read_days(SIGNALS.name, symbol, days, ALERT_SCHEMA)
        digests.update({(symbol, d): w.sha256 for d, w in read.committed.items()})
        frames.append(read.frame.collect())
    alerts = pl.concat(frames)
    wall = run([SIGNALS.name], tags, instance)
    again = {
        (s, d): w.sha256
        for s in symbols
        for d, w in lake.read_days(SIGNALS.name, s, days).committed.items()
    }
    print(f"  signals again                                {wall:8.1f} s  "
          f"byte-identical days: {again == digests} ({len(digests)} symbol-days)")  # fmt: skip

    counts = Counter(zip(alerts["kind"].to_list(), alerts["severity"].to_list(), strict=True))
    print(f"\n  {'kind':<22}{'medium':>8}{'high':>8}")
    for kind in sorted({k for k, _ in counts}):
        print(f"  {kind:<22}{counts[(kind, 'medium')]:>8}{counts[(kind, 'high')]:>8}")
    print(f"  {'total':<22}{alerts.height:>16}")
    lo, hi = mk.day_index(first), mk.day_index(last)
    for symbol in symbols:
        planted = events.cascades(SETTINGS.sandbox_seed, symbol, lo, hi)
        spikes = events.funding_spikes(SETTINGS.sandbox_seed, symbol, lo, hi)
        fired = alerts.filter(pl.col("symbol") == symbol)
        found = 0
        for cascade in planted:
            start = mk.EPOCH_MS + cascade.start * mk.MINUTE_MS
            window = fired.filter(
                pl.col("kind") == "liquidation_cascade",
                pl.col("ts").dt.epoch("ms").is_between(start, start + 2 * 3_600_000),
            )
            found += window.height > 0
        print(f"  {symbol}: sandbox planted {len(planted)} cascade(s) and {len(spikes)} "
              f"funding spike(s); {found} cascade(s) found within 2 h of their start")  # fmt: skip
    print(f"\n  work dir {WORK}")


if __name__ == "__main__":
    main()
