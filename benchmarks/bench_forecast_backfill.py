"""365-day backfill of the forecasting sources and features_1h (sandbox), one run each.

First the tables features_1h reads are built (Binance, CoinGlass, bars, bars_15m: the
daily job without the forecast groups), then, measured on their own:

1. the six source feeds (CoinAPI perp/spot/funding, FRED, Alpha Vantage, CryptoQuant);
2. features_1h.

Prints wall time and peak RSS of each phase, the requests each vendor feed made over the
range against the minimum its paging allows, days served per feed, Alpha Vantage's
budget use, and a re-run of the sources (everything reused: no request). Sandbox
in-process vendor, sqlite instance in a temporary DAGSTER_HOME. Not a test: no assertions
beyond the runs succeeding.

    .venv/bin/python benchmarks/bench_forecast_backfill.py [--days 365]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="btc_bench_forecast_"))
os.environ["BTC_ASSETS_ENV"] = "sandbox"
os.environ["BTC_ASSETS_DATA_DIR"] = str(WORK / "data")
os.environ["DAGSTER_HOME"] = str(WORK / "dagster_home")
(WORK / "dagster_home").mkdir(parents=True, exist_ok=True)
(WORK / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import dagster as dg  # noqa: E402

from btc_assets import clock  # noqa: E402
from btc_assets.core.tables import FEATURES_1H_NAME, FORECAST_SOURCE_TABLES  # noqa: E402
from btc_assets.defs.definitions import SETTINGS, defs  # noqa: E402
from btc_assets.vendors.coinapi import PAGE_LIMIT  # noqa: E402

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SOURCES = [t.name for t in FORECAST_SOURCE_TABLES]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(
    keys: list[str], tags: dict[str, str], instance: dg.DagsterInstance
) -> tuple[float, dg.ExecuteInProcessResult]:
    job = defs.resolve_job_def("btc_daily")
    began = time.perf_counter()
    result = job.execute_in_process(
        instance=instance, tags=tags, asset_selection=[dg.AssetKey(k) for k in keys]
    )
    assert result.success, f"{keys}: run failed"
    return time.perf_counter() - began, result


def range_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    """asset -> its range-level metadata (the materialization carrying run_http_requests)."""
    out: dict[str, dict[str, object]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        values = {k: v.value for k, v in mat.metadata.items()}
        if "run_http_requests" in values:
            out[mat.asset_key.to_user_string()] = values
    return out


def minimum_requests(days: int) -> dict[str, str]:
    """The fewest requests each feed's paging allows for one contiguous range."""
    forecast = SETTINGS.forecast
    symbols = len(SETTINGS.symbols)
    bars = days * 24
    return {
        "coinapi_perp_ohlcv_1h": f"{symbols * math.ceil(bars / PAGE_LIMIT)} at limit="
        f"{PAGE_LIMIT} (1 at limit=100000; credits are per 100 bars either way: "
        f"{symbols * math.ceil(bars / 100)})",
        "coinapi_spot_ohlcv_1h": f"{symbols * math.ceil(bars / PAGE_LIMIT)} at limit={PAGE_LIMIT}",
        "coinapi_funding_1h": f"{symbols * math.ceil(bars / PAGE_LIMIT)} at limit={PAGE_LIMIT}",
        "fred_series": f"{len(forecast.fred_series)} (one per series: < 100000 rows a page)",
        "alphavantage_daily": f"{len(forecast.alphavantage_symbols)} (one per ticker per run)",
        "cryptoquant_flows": f"{len(forecast.cryptoquant_metrics())} (one per endpoint)",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    last = clock.today_utc() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    instance = dg.DagsterInstance.get()
    symbols = ", ".join(s.perp for s in SETTINGS.symbols)
    print(f"backfill {first} .. {last} ({args.days} days), basket {symbols}, sandbox, sqlite")

    graph = defs.resolve_asset_graph()
    upstream = [
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.get(k).group_name in ("binance", "bars", "coinglass", "features")
        and graph.get(k).is_partitioned
    ]
    wall, _ = run(upstream, tags, instance)
    print(f"  inputs (Binance, CoinGlass, bars, bars_15m)  {wall:8.1f} s  "
          f"peak RSS {peak_rss_mib():6.0f} MiB")  # fmt: skip

    wall, result = run(SOURCES, tags, instance)
    print(f"  forecast sources (6 feeds)                   {wall:8.1f} s  "
          f"peak RSS {peak_rss_mib():6.0f} MiB")  # fmt: skip
    meta = range_metadata(result)
    least = minimum_requests(args.days)
    for name in SOURCES:
        m = meta.get(name, {})
        print(f"    {name:24s} requests {m.get('run_http_requests')!s:>4} (minimum {least[name]}); "
              f"{m.get('rows')} rows, {m.get('blocked_days')} blocked days")  # fmt: skip
    budget = Path(SETTINGS.data_dir) / "state" / "alphavantage_sandbox.json"
    if budget.exists():
        print(f"    Alpha Vantage budget file: {json.loads(budget.read_text())} "
              f"(limit {SETTINGS.forecast.alphavantage_daily_limit}/day)")  # fmt: skip

    wall, result = run([FEATURES_1H_NAME], tags, instance)
    rows = range_metadata(result).get(FEATURES_1H_NAME, {}).get("rows")
    if rows is None:
        rows = sum(
            e.event_specific_data.materialization.metadata["dagster/row_count"].value  # type: ignore[union-attr]
            for e in result.get_asset_materialization_events()
            if "dagster/row_count" in e.event_specific_data.materialization.metadata  # type: ignore[union-attr]
        )
    print(f"  features_1h                                  {wall:8.1f} s  "
          f"peak RSS {peak_rss_mib():6.0f} MiB  ({rows} rows)")  # fmt: skip

    wall, result = run(SOURCES, tags, instance)
    again = {n: range_metadata(result).get(n, {}).get("run_http_requests") for n in SOURCES}
    print(f"  sources re-run (tail days re-fetched, rest reused){wall:8.1f} s  requests {again}")
    print(f"  work dir {WORK}")


if __name__ == "__main__":
    main()
