"""The full daily graph over a year: a basket of 1 symbol vs 10, in one benchmark run.

Each basket runs in its own process (so peak RSS is its own), in-process executor, sqlite
instance, the in-process sandbox with the archive path on and CoinGlass's 15m history
limited like a Professional plan (``--coinglass-days``, default 180), so the year crosses
the hand-over to Binance substitutes. Prints per basket: wall time, peak RSS, events
written (materializations and check evaluations), bars_15m days passing their gate, and
the share of each feature column's sources. Not a test: no assertions.

    .venv/bin/python benchmarks/bench_symbols.py [--days 365] [--symbols 10]
        [--latency-ms 0] [--workers N]

``--latency-ms 0`` (the default) is the harshest case for the ratio: the in-process sandbox
builds every vendor answer (zips, JSON) in Python on the same two cores and under the same
GIL as the pipeline, so the basket's vendor work counts ten times over. A real vendor's
work is a round trip's wait instead, which the symbol workers overlap (``--latency-ms 80``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from btc_assets.settings import DEFAULT_SYMBOL_WORKERS

BASKET = [
    "BTCUSDT",
    "ETHUSDT",
    "XRPUSDT",
    "LTCUSDT",
    "TRXUSDT",
    "LINKUSDT",
    "ADAUSDT",
    "BNBUSDT",
    "DOGEUSDT",
    "SOLUSDT",
    "AVAXUSDT",
    "NEARUSDT",
    "1000PEPEUSDT",
]


def child(days: int, end: date) -> dict[str, object]:
    import dagster as dg
    import polars as pl

    from btc_assets.defs.checks import QUALITY
    from btc_assets.defs.definitions import defs

    start = end - timedelta(days=days - 1)
    instance = dg.DagsterInstance.get()
    began = time.perf_counter()
    result = defs.resolve_job_def("btc_daily").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
        },
        raise_on_error=False,
    )
    wall = time.perf_counter() - began
    kinds = Counter(e.event_type_value for e in result.all_events)
    gates = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.asset_key == dg.AssetKey("bars_15m")  # type: ignore[union-attr]
        and e.event_specific_data.check_name == QUALITY  # type: ignore[union-attr]
    ]
    dataset = defs.resources["dataset"]
    lake = dataset.lake()  # type: ignore[union-attr]
    wanted = [start + timedelta(days=i) for i in range(days)]
    frames = [
        lake.read_days("bars_15m", m.perp, wanted).frame.collect()
        for m in dataset.symbols  # type: ignore[union-attr]
    ]
    features = pl.concat(frames)
    shares = {
        column: {
            str(row[column]): round(100.0 * row["len"] / features.height, 2)
            for row in features.group_by(column).len().iter_rows(named=True)
        }
        for column in ("price_source", "oi_source", "funding_source", "cvd_source",
                       "share_source", "liq_source")
    }  # fmt: skip
    return {
        "success": result.success,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "materializations": kinds["ASSET_MATERIALIZATION"],
        "check_evaluations": kinds["ASSET_CHECK_EVALUATION"],
        "planned": kinds["ASSET_MATERIALIZATION_PLANNED"],
        "gate_days": len(gates),
        "gate_days_passed": sum(bool(g.passed) for g in gates),  # type: ignore[union-attr]
        "symbol_days_failed": sum(
            len(str(g.metadata["error_symbols"].value).split(",")) if not g.passed else 0  # type: ignore[union-attr]
            for g in gates
        ),
        "feature_rows": features.height,
        "source_share_pct": shares,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--coinglass-days", type=int, default=180)
    parser.add_argument("--end", help="last day (default: 3 days ago)")
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        help="the sandbox's wait per request, like a vendor round trip",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_SYMBOL_WORKERS,
        help="BTC_ASSETS_SYMBOL_WORKERS: basket members worked on at once (default: the "
        "project's, the cores up to 4)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    end = date.fromisoformat(args.end) if args.end else date.today() - timedelta(days=3)
    if args.child:
        print(json.dumps(child(args.days, end)))
        return 0
    results = {}
    for count in dict.fromkeys((1, args.symbols)):  # --symbols 1: the one-symbol run only
        work = Path(tempfile.mkdtemp(prefix=f"btc_bench_symbols_{count}_"))
        home = work / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {
            **os.environ,
            "BTC_ASSETS_ENV": "sandbox",
            "BTC_ASSETS_DATA_DIR": str(work / "data"),
            "DAGSTER_HOME": str(home),
            "BTC_ASSETS_SYMBOLS": ",".join(BASKET[:count]),
            "BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS": str(args.coinglass_days),
            "BTC_ASSETS_SANDBOX_LATENCY_MS": str(args.latency_ms),
            "BTC_ASSETS_SYMBOL_WORKERS": str(args.workers),
            "BTC_ASSETS_START_DATE": (end - timedelta(days=args.days + 40)).isoformat(),
        }
        cmd = [sys.executable, __file__, "--days", str(args.days), "--end", end.isoformat(),
               "--child", "1"]  # fmt: skip
        print(f"running {count} symbol(s), {args.days} days to {end} ...", flush=True)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            print(out.stderr[-4000:], file=sys.stderr)
            return 1
        results[count] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[count], indent=1), flush=True)
    one, many = results[1], results[args.symbols]
    print(f"\n{args.days} days, full daily graph, archive path, CoinGlass history "
          f"{args.coinglass_days} days, sandbox latency {args.latency_ms} ms, "
          f"{args.workers} symbol workers")  # fmt: skip
    for key in ("wall_s", "peak_rss_mib", "materializations", "check_evaluations", "planned"):
        print(f"  {key:<20} 1 symbol {one[key]:>10}   {args.symbols} symbols {many[key]:>10}")
    print(
        f"  wall ratio {many['wall_s'] / one['wall_s']:.2f}x (target <= 2.5x); "
        f"same event count: {one['materializations'] == many['materializations']}"
    )
    for n, r in ((1, one), (args.symbols, many)):
        print(
            f"  {n} symbol(s): bars_15m days passing their gate {r['gate_days_passed']}/"
            f"{r['gate_days']}, failed symbol-days {r['symbol_days_failed']}"
        )
    print(f"  source shares ({args.symbols} symbols), % of feature rows:")
    for column, by_source in many["source_share_pct"].items():
        print(f"    {column:<15} {by_source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
