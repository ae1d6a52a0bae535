"""What a multi-run backfill did, measured from outside: its runs' time spans (how many ran
at once) and the vendor requests per host per clock minute, read from the sandbox's request
log (``BTC_ASSETS_SANDBOX_REQUEST_LOG``: one line per request from every run process).

Used by ``test_deployment/test_multi_run_backfill.py`` and ``benchmarks/bench_multi_run.py``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

WINDOW_SECONDS = 60  # the vendors' budgets count per clock minute (vendors/ratelimit.py)


@dataclass(frozen=True)
class HostRate:
    host: str
    requests: int
    processes: int  # distinct pids that sent them: one per run (and its steps)
    busiest_minute: int  # the most requests in one clock minute
    minutes: int  # clock minutes with any request
    shared_minutes: int  # clock minutes whose requests came from more than one process


def request_rates(log: Path) -> dict[str, HostRate]:
    per_minute: dict[str, Counter[int]] = defaultdict(Counter)
    pids: dict[str, set[str]] = defaultdict(set)
    minute_pids: dict[tuple[str, int], set[str]] = defaultdict(set)
    for line in log.read_text().splitlines():
        epoch, host, _path, pid = line.split(" ")
        minute = int(float(epoch) // WINDOW_SECONDS)
        per_minute[host][minute] += 1
        pids[host].add(pid)
        minute_pids[(host, minute)].add(pid)
    return {
        host: HostRate(
            host,
            sum(c.values()),
            len(pids[host]),
            max(c.values()),
            len(c),
            sum(1 for m in c if len(minute_pids[(host, m)]) > 1),
        )
        for host, c in sorted(per_minute.items())
    }


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) overlapping at any instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_spans(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[float, float]]:
    records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
    return sorted(
        (r.start_time, r.end_time)
        for r in records
        if r.start_time is not None and r.end_time is not None
    )


def run_partitions(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The days one run of a range backfill covered (its range tags)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    start = run.tags.get("dagster/asset_partition_range_start")
    end = run.tags.get("dagster/asset_partition_range_end")
    if start is None or end is None:
        return [run.tags["dagster/partition"]]
    from datetime import date, timedelta

    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
