"""365-day backfill of the Binance slice in one run vs one run per partition.

Prints: wall time, peak RSS, events written and the share of wall time spent in Dagster's
event-log writes, per-day HTTP requests, and the per-partition extrapolation. Sandbox
in-process vendor, sqlite instance in a temporary DAGSTER_HOME. Not a test: no assertions.

    .venv/bin/python benchmarks/bench_backfill.py [--days 365] [--per-partition-runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

# Step subprocesses of the per-partition runs re-import this file: keep one work dir.
WORK = Path(os.environ.get("BTC_BENCH_WORK") or tempfile.mkdtemp(prefix="btc_bench_"))
os.environ["BTC_BENCH_WORK"] = str(WORK)
os.environ["BTC_ASSETS_ENV"] = "sandbox"
os.environ["BTC_ASSETS_DATA_DIR"] = str(WORK / "data")
os.environ["DAGSTER_HOME"] = str(WORK / "dagster_home")
(WORK / "dagster_home").mkdir(parents=True, exist_ok=True)
(WORK / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import dagster as dg  # noqa: E402

from btc_assets.defs.definitions import defs  # noqa: E402
from btc_assets.vendors.ratelimit import WeightBudget  # noqa: E402

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def daily_job() -> dg.JobDefinition:
    return defs.resolve_job_def("btc_daily")


class EventWriteTimer:
    """Wraps the event log's store calls to measure Dagster's own write time."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.seconds = 0.0
        self.events = 0
        self._depth = 0
        storage = instance.event_log_storage
        for name in ("store_event", "store_event_batch"):
            original = getattr(storage, name)
            setattr(storage, name, self._wrap(original, name == "store_event_batch"))

    def _wrap(self, original, batch: bool):  # type: ignore[no-untyped-def]
        def timed(arg):  # type: ignore[no-untyped-def]
            if self._depth:  # a batch write falls back to single writes: count it once
                return original(arg)
            self._depth += 1
            began = time.perf_counter()
            try:
                return original(arg)
            finally:
                self._depth -= 1
                self.seconds += time.perf_counter() - began
                self.events += len(arg) if batch else 1

        return timed


class RateLimitTimer:
    """Sums the seconds the client's weight budgets slept (Binance's limits, enforced by
    the sandbox per clock minute exactly as Binance does)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        original = WeightBudget.acquire
        timer = self

        def acquire(budget: WeightBudget, cost: int = 1) -> float:
            slept = original(budget, cost)
            timer.seconds += slept
            return slept

        WeightBudget.acquire = acquire  # type: ignore[method-assign]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--first-day", default="2024-01-01")
    parser.add_argument("--per-partition-runs", type=int, default=5)
    args = parser.parse_args()
    first = date.fromisoformat(args.first_day)
    last = first + timedelta(days=args.days - 1)
    instance = dg.DagsterInstance.get()
    timer = EventWriteTimer(instance)
    limits = RateLimitTimer()
    print(
        f"single-run backfill {first} .. {last} ({args.days} days), sqlite, "
        f"DAGSTER_EVENT_BATCH_SIZE={os.environ.get('DAGSTER_EVENT_BATCH_SIZE', 'unset')}"
    )
    began = time.perf_counter()
    result = daily_job().execute_in_process(
        instance=instance, tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    )
    daily_wall = time.perf_counter() - began
    assert result.success
    catalog = defs.resolve_job_def("warehouse_catalog").execute_in_process(instance=instance)
    assert catalog.success
    wall = time.perf_counter() - began
    kinds = Counter(
        r.dagster_event.event_type_value
        for r in instance.all_logs(result.run_id)
        if r.dagster_event
    )
    requests: dict[str, Counter[int]] = defaultdict(Counter)
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        if "http_requests" in mat.metadata:
            requests[mat.asset_key.to_user_string()][mat.metadata["http_requests"].value] += 1
    print(
        f"  wall                 {wall:8.1f} s  ({wall / args.days * 1000:.0f} ms per day; "
        f"daily tables {daily_wall:.1f} s, then DuckDB views + QA report)"
    )
    print(f"  peak RSS             {peak_rss_mib():8.0f} MiB")
    print(f"  events written       {timer.events:8d}  {dict(kinds.most_common(4))}")
    print(
        f"  event-log writes     {timer.seconds:8.1f} s  ({100 * timer.seconds / wall:.0f} % "
        "of wall)"
    )
    print(
        f"  rate-limit waits     {limits.seconds:8.1f} s  (Binance's weight budget per clock "
        "minute, which the sandbox enforces: 365 perp days cost 3650 > 2400)"
    )
    own = wall - timer.seconds - limits.seconds
    print(
        f"  everything else      {own:8.1f} s  ({100 * own / wall:.0f} %: our fetch/parse/"
        "Polars/Parquet work plus Dagster's step machinery)"
    )
    print(f"  wall without waits   {wall - limits.seconds:8.1f} s")
    for asset, counts in sorted(requests.items()):
        print(f"  HTTP requests/day    {asset}: {dict(counts)}  (requests: days)")

    began = time.perf_counter()
    rerun = daily_job().execute_in_process(
        instance=instance, tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    )
    assert rerun.success
    print(f"  re-run (all reused)  {time.perf_counter() - began:8.1f} s")

    runs = args.per_partition_runs
    if runs:
        later = last + timedelta(days=1)
        began = time.perf_counter()
        for offset in range(runs):
            day = (later + timedelta(days=offset)).isoformat()
            single = dg.execute_job(
                dg.reconstructable(daily_job), instance=instance, tags={"dagster/partition": day}
            )
            assert single.success
        per_run = (time.perf_counter() - began) / runs
        print(
            f"one run per partition ({runs} runs, multiprocess executor as a UI backfill "
            "without single_run would use):"
        )
        print(
            f"  per run              {per_run:8.2f} s; extrapolated to {args.days} days: "
            f"{per_run * args.days:.0f} s -> single run is {per_run * args.days / wall:.1f}x "
            "faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
