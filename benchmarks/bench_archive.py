"""A year of Binance history through data.binance.vision vs the REST API, on the sandbox.

    .venv/bin/python benchmarks/bench_archive.py [--days 365] [--latency-ms 80] [--workers 8]

Four datasets over ``--days`` days ending on the last day of the previous full month (so the
monthly files exist): spot 1m, USD-M perp 1m, funding settlements and the 5-minute metrics.
The archive path is :class:`ArchiveClient.fetch_days` (monthly zips where whole months are
asked, ``.CHECKSUM`` verified, ``--workers`` downloads at once). The REST path is what the
raw assets do today: one day at a time, ``spot_klines`` (2 requests/day), ``futures_klines``
(1) and ``funding_rate`` (1). For metrics REST has ``openInterestHist`` only for the latest
30 days: it is asked for the days it can reach, and the rest are counted as unreachable.

Both paths run against the in-process sandbox with ``--latency-ms`` of real sleep per
request (a vendor round trip); the sandbox builds every answer (zips, JSON) on the same
cores, so its CPU time is in both figures. Prints requests and wall time per dataset and
path, and the ratios.

Measured 2026-11-28 (2 shared cores, 365 days 2025-11-01..2026-10-31, 80 ms, 8 workers):
klines + funding 72 archive requests vs 1460 REST (20.3x), 8.4 s vs 170 s (20.1x); all four
804 vs 1462 requests (1.8x), 16.6 s vs 170 s (10.3x). Metrics: 732 archive requests (daily
zips only, each with its .CHECKSUM: 2 per day); REST reaches 2 of the 365 days.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from btc_assets.core.schema import day_bounds
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.binance_archive import ArchiveClient, ArchiveDataset

SYMBOL = "BTCUSDT"
OI_DAYS = 30  # openInterestHist keeps the latest 30 days


@dataclass
class Figure:
    requests: int = 0
    seconds: float = 0.0
    days: int = 0


def day_range(count: int, today: date) -> list[date]:
    last = today.replace(day=1) - timedelta(days=1)  # the previous month's last day
    return [last - timedelta(days=count - 1 - i) for i in range(count)]


def run_archive(
    days: list[date], today: date, now_ms: int, latency: float, workers: int
) -> dict[str, Figure]:
    transport = SandboxTransport(now_ms=now_ms, latency_seconds=latency)
    out: dict[str, Figure] = {}
    with ArchiveClient("http://sandbox.archive.invalid", transport=transport,
                       max_workers=workers) as client:  # fmt: skip
        for dataset in ArchiveDataset:
            started = time.perf_counter()
            got = client.fetch_days(dataset, SYMBOL, days, today)
            out[dataset.value] = Figure(got.requests, time.perf_counter() - started, len(got.days))
    return out


def run_rest(days: list[date], today: date, now_ms: int, latency: float) -> dict[str, Figure]:
    transport = SandboxTransport(now_ms=now_ms, latency_seconds=latency)
    calls = {
        "spot_klines_1m": lambda c, a, b: c.spot_klines(SYMBOL, "1m", a, b),
        "um_klines_1m": lambda c, a, b: c.futures_klines(SYMBOL, "1m", a, b),
        "um_funding_rate": lambda c, a, b: c.funding_rate(SYMBOL, a, b),
        "um_metrics": lambda c, a, b: c.open_interest_hist(SYMBOL, a, b),
    }
    reachable = [d for d in days if d >= today - timedelta(days=OI_DAYS - 1)]
    out: dict[str, Figure] = {}
    with BinanceClient("http://sandbox.binance.invalid", "http://sandbox.fapi.binance.invalid",
                       transport=transport, now_ms=lambda: now_ms) as client:  # fmt: skip
        for name, call in calls.items():
            asked = reachable if name == "um_metrics" else days
            before, started = client.request_count, time.perf_counter()
            got = sum(1 for d in asked if call(client, *day_bounds(d)).height)
            out[name] = Figure(client.request_count - before, time.perf_counter() - started, got)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--latency-ms", type=float, default=80.0)
    parser.add_argument("--workers", type=int, default=8, help="archive downloads at once")
    args = parser.parse_args()
    now = datetime.now(UTC)
    today, now_ms = now.date(), int(now.timestamp() * 1000)
    days = day_range(args.days, today)
    latency = args.latency_ms / 1000
    print(f"{len(days)} days {days[0]}..{days[-1]}, {args.latency_ms:g} ms per request, "
          f"archive workers {args.workers}")  # fmt: skip
    archive = run_archive(days, today, now_ms, latency, args.workers)
    rest = run_rest(days, today, now_ms, latency)
    print(f"{'dataset':<17}{'archive req':>12}{'s':>8}{'days':>6} |{'REST req':>9}{'s':>8}"
          f"{'days':>6} |{'req x':>7}{'time x':>8}")  # fmt: skip
    for name in archive:
        a, r = archive[name], rest[name]
        print(f"{name:<17}{a.requests:>12}{a.seconds:>8.1f}{a.days:>6} |{r.requests:>9}"
              f"{r.seconds:>8.1f}{r.days:>6} |{r.requests / a.requests:>7.1f}"
              f"{r.seconds / a.seconds:>8.1f}")  # fmt: skip
    for label, names in (
        ("klines + funding", ["spot_klines_1m", "um_klines_1m", "um_funding_rate"]),
        ("all four", list(archive)),
    ):
        ar = sum(archive[n].requests for n in names)
        asec = sum(archive[n].seconds for n in names)
        rr = sum(rest[n].requests for n in names)
        rsec = sum(rest[n].seconds for n in names)
        print(f"{label:<17}{ar:>12}{asec:>8.1f}{'':>6} |{rr:>9}{rsec:>8.1f}{'':>6} |"
              f"{rr / ar:>7.1f}{rsec / asec:>8.1f}")  # fmt: skip
    unreachable = len(days) - rest["um_metrics"].days
    print(f"metrics: REST reaches {rest['um_metrics'].days} of {len(days)} days "
          f"(openInterestHist keeps {OI_DAYS}); {unreachable} days exist only in the archive, "
          "and REST has no long/short ratio columns at all")  # fmt: skip


if __name__ == "__main__":
    main()
