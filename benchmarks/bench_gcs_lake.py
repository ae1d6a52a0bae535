"""A year of the full graph for one symbol (BTCUSDT) into the GCS emulator lake vs the local
lake: wall, and what GCS costs per day.

For each backend (local folder, then ``gs://`` on the GCS emulator the tests use, with GCS's
generation preconditions enforced: ``btc_assets_tests/gcs_lake.py``), one single-run range
backfill of the lake tables (``LAKE_SELECTION``: every partitioned asset but the BigQuery
loads and the whale watch) over a fixed range, so it is reproducible. Prints per backend:
wall and seconds per day (and without the vendors' rate-limit sleeps, which both pay alike),
objects/files stored and their bytes, HTTP requests to the emulator (by method and kind), the
seconds in each storage operation of the lake, then a re-run without force (every day is
reused: the cost of checking and reading what is there), and a verified read of the year of
``bars_15m`` (``Lake.read_days(...).frame.collect()``). Last, the GCS-minus-local difference
per day. An emulator probe (a tiny upload, a metadata read) before and after the backfill
shows whether the emulator itself slows as the bucket fills: gcp-storage-emulator rewrites
its whole object index (one JSON file) on every write, so its uploads cost O(objects stored)
and a long range on it measures the emulator more than the lake. By default it therefore runs
in memory with that copy skipped (``--skip-index``, gcs_preconditions.py; ``--disk-emulator``
for the tests' setup); the HTTP requests per day are the figure that carries over to real
GCS. Sandbox in-process vendors, sqlite instances in a
temporary DAGSTER_HOME, Binance history from the sandbox's archive (the default path). Not a
test: no assertions.

    .venv/bin/python benchmarks/bench_gcs_lake.py [--days 365] [--first-day 2024-01-01] \
        [--backends local,gcs] [--disk-emulator]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

WORK = Path(tempfile.mkdtemp(prefix="btc_bench_gcs_lake_"))
SYMBOL = "BTCUSDT"
os.environ["BTC_ASSETS_ENV"] = "sandbox"
os.environ["BTC_ASSETS_SYMBOLS"] = SYMBOL
os.environ["BTC_ASSETS_DATA_DIR"] = str(WORK / "data")
os.environ.pop("BTC_ASSETS_LAKE_URL", None)  # each backend sets its own below
os.environ["DAGSTER_HOME"] = str(WORK / "dagster_home")
(WORK / "dagster_home").mkdir(parents=True, exist_ok=True)
(WORK / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

import warnings  # noqa: E402

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

import btc_assets.sandbox as sandbox_package  # noqa: E402
from btc_assets.defs.definitions import all_assets, build_resources  # noqa: E402
from btc_assets.lake import Lake  # noqa: E402
from btc_assets.lake.gcs import GcsStorage  # noqa: E402
from btc_assets.lake.storage import LocalStorage  # noqa: E402
from btc_assets.settings import load_settings  # noqa: E402
from btc_assets.vendors.ratelimit import WeightBudget  # noqa: E402
from btc_assets_tests.gcs_lake import fresh_url, gcs_lake_emulator  # noqa: E402
from btc_assets_tests.test_assets.helpers import LAKE_SELECTION  # noqa: E402

BARS = "bars_15m"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The lake's operations on its backend (storage.Storage): each is timed where the lake calls it.
STORAGE_OPS = ("exists", "read_bytes", "read_manifest", "put_data", "ensure_marker", "commit",
               "mark_superseded", "files", "delete", "tables", "folders", "day_dirs",
               "verify_content", "fingerprint")  # fmt: skip


@dataclass
class Meter:
    """What one phase cost: storage seconds and calls per operation, HTTP requests, sleeps."""

    seconds: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    by_op: Counter[str] = field(default_factory=Counter)  # "op: request kind"
    waits: float = 0.0
    wall: float = 0.0


METER = Meter()
_DEPTH = [0]
_CURRENT = ["-"]  # the storage operation running now (gcsfs's loop thread reads it)


def _timed(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _DEPTH[0]:  # an operation calling another (ensure_marker -> exists): count once
            return original(*args, **kwargs)
        _DEPTH[0] += 1
        _CURRENT[0] = name
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _DEPTH[0] -= 1
            _CURRENT[0] = "-"
            METER.seconds[name] += time.perf_counter() - began
            METER.calls[name] += 1

    return wrapper


def _request_kind(method: str, path: str, kwargs: dict[str, Any]) -> str:
    if "/upload/" in path:
        return f"{method} upload"
    if kwargs.get("alt") == "media" or "alt=media" in path:
        return f"{method} download"
    if path.rstrip("/").endswith("/o") and method == "GET":
        return "GET list"
    return f"{method} object"


def install_meters() -> None:
    for cls in (LocalStorage, GcsStorage):
        for name in STORAGE_OPS:
            setattr(cls, name, _timed(name, getattr(cls, name)))

    from gcsfs.core import GCSFileSystem

    # _request is every JSON-API call gcsfs makes (lists, metadata, uploads, downloads).
    request = GCSFileSystem._request

    async def counted(self: Any, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        kind = _request_kind(method.upper(), str(path), kwargs)
        METER.requests[kind] += 1
        METER.by_op[f"{_CURRENT[0]}: {kind}"] += 1
        return await request(self, method, path, *args, **kwargs)

    GCSFileSystem._request = counted  # type: ignore[method-assign]

    acquire = WeightBudget.acquire

    def timed_acquire(budget: WeightBudget, cost: int = 1) -> float:
        slept = acquire(budget, cost)
        METER.waits += slept
        return slept

    WeightBudget.acquire = timed_acquire  # type: ignore[method-assign]


@contextmanager
def measured() -> Iterator[Meter]:
    """A fresh meter for the phase inside; the global one is reset before and after."""
    global METER
    METER = Meter()
    began = time.perf_counter()
    yield METER
    METER.wall = time.perf_counter() - began


def clear_sandbox_caches() -> None:
    """The sandbox memoizes generated days (lru_cache): without this the second backend
    would fetch from a warm vendor."""
    for name, module in list(sys.modules.items()):
        if not name.startswith(sandbox_package.__name__):
            continue
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def backfill(instance: dg.DagsterInstance, res: dict[str, object], tags: dict[str, str]) -> str:
    result = dg.materialize(
        [a for a in all_assets if a.partitions_def is not None],
        instance=instance,
        resources=res,
        tags=tags,
        selection=LAKE_SELECTION,
        run_config=QUIET,
        raise_on_error=False,
    )
    if result.success:
        return "ok"
    failed = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    return f"FAILED steps {failed}"


def stored(lake: Lake) -> tuple[int, int]:
    """Objects (files) under the lake root and their bytes."""
    if isinstance(lake.storage, GcsStorage):
        infos = lake.storage.fs.find(str(lake.root).removeprefix("gs://"), detail=True)
        return len(infos), sum(int(i.get("size", 0)) for i in infos.values())
    files = [p for p in Path(lake.root).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def probe(storage: GcsStorage, rounds: int = 10) -> str:
    """Milliseconds of one tiny upload and one metadata read, outside the lake's prefix: how
    the emulator itself answers as the bucket fills (its cost grows with what it stores)."""
    key = f"{storage.bucket}/bench-probe/object"
    began = time.perf_counter()
    for _ in range(rounds):
        storage.fs.pipe_file(key, b"x")
    upload = (time.perf_counter() - began) / rounds
    began = time.perf_counter()
    for _ in range(rounds):
        storage.fs.info(key)
    info = (time.perf_counter() - began) / rounds
    storage.fs.rm_file(key)
    return f"upload {1000 * upload:.1f} ms, metadata read {1000 * info:.1f} ms"


def _top(counts: Counter[str], limit: int, show: Callable[[str, float], str]) -> str:
    return ", ".join(show(k, v) for k, v in counts.most_common(limit))


def report(label: str, meter: Meter, days: int, status: str) -> None:
    wall = meter.wall
    clean = 1000 * (wall - meter.waits) / days
    print(f"  {label:<22}{wall:8.1f} s  {1000 * wall / days:7.0f} ms/day  {status}")
    print(f"    rate-limit sleeps {meter.waits:.1f} s ({clean:.0f} ms/day without them)")
    if meter.calls:
        total = sum(meter.seconds.values())
        ops = _top(meter.seconds, 7, lambda k, v: f"{k} {v:.1f} s/{meter.calls[k]}")
        print(f"    storage ops {total:.1f} s ({100 * total / wall:.0f} % of wall): {ops}")
    if meter.requests:
        total = sum(meter.requests.values())
        kinds = _top(meter.requests, 8, lambda k, n: f"{k} {n:.0f}")
        print(f"    HTTP requests {total} ({total / days:.0f} per day): {kinds}")
        ops = _top(meter.by_op, 9, lambda k, n: f"{k} {n / days:.1f}")
        print(f"      per day by storage op: {ops}")


RERUN = True  # --no-rerun: the backfill and the read only (a year on both backends is long)


def run_backend(name: str, lake_url: str | None, first: date, last: date) -> dict[str, float]:
    data_dir = WORK / name
    settings = replace(load_settings(), data_dir=data_dir, lake_url=lake_url)
    res = build_resources(settings)
    lake = Lake(settings.lake_location)
    tags = {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
    days = (last - first).days + 1
    print(f"{name}: {lake.url}")
    if isinstance(lake.storage, GcsStorage):
        print(f"    emulator probe before: {probe(lake.storage)}")
    clear_sandbox_caches()
    out: dict[str, float] = {}
    home = WORK / "dagster_home" / name  # one instance per backend: nothing carries over
    home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        with measured() as meter:
            status = backfill(instance, res, tags)
        report("backfill", meter, days, status)
        out["backfill"] = meter.wall
        out["backfill_waits"] = meter.waits
        if isinstance(lake.storage, GcsStorage):
            print(f"    emulator probe after:  {probe(lake.storage)}")
        objects, size = stored(lake)
        tables = len(lake.tables())
        print(f"    stored {objects} objects/files in {tables} tables, "
              f"{size / 2**20:.1f} MiB ({objects / days:.0f} per day)")  # fmt: skip

        if RERUN:
            with measured() as meter:
                status = backfill(instance, res, tags)
            report("re-run (days reused)", meter, days, status)
            out["rerun"] = meter.wall
            out["rerun_waits"] = meter.waits

    wanted = [first + timedelta(days=i) for i in range(days)]
    with measured() as meter:
        read = Lake(settings.lake_location).read_days(BARS, SYMBOL, wanted)
        rows = read.frame.collect().height
    status = f"{len(read.committed)} days, {rows} rows, {len(read.errors)} errors"
    report(f"read {BARS}", meter, days, status)
    out["read"] = meter.wall
    return out


def warm_up(first: date) -> None:
    """The first run in a process pays imports and Dagster's first-run setup: not the lake's."""
    home = WORK / "dagster_home" / "warmup"
    home.mkdir(parents=True)
    settings = replace(load_settings(), data_dir=WORK / "warmup")
    tags = {
        RANGE_START: (first - timedelta(days=2)).isoformat(),
        RANGE_END: (first - timedelta(days=1)).isoformat(),
    }
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        status = backfill(instance, build_resources(settings), tags)
    print(f"warm-up (2 days before, local, not measured): {status}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--first-day", default="2024-01-01")
    # The emulator rewrites its whole object index on every write, so its uploads slow down as
    # the bucket fills: `--backends local` alone gives the baseline of a long range quickly.
    parser.add_argument("--backends", default="local,gcs")
    parser.add_argument("--no-rerun", action="store_true", help="skip the re-run")
    parser.add_argument(
        "--disk-emulator", action="store_true",
        help="the emulator on disk, as the tests run it (slow past ~30 days)",
    )  # fmt: skip
    args = parser.parse_args()
    global RERUN
    RERUN = not args.no_rerun
    first = date.fromisoformat(args.first_day)
    last = first + timedelta(days=args.days - 1)
    print(f"lake backfill {first} .. {last} ({args.days} days), {SYMBOL}, sandbox, single run; "
          f"work dir {WORK}")  # fmt: skip
    install_meters()
    warm_up(first)
    backends = args.backends.split(",")
    results: dict[str, dict[str, float]] = {}
    if "local" in backends:
        results["local"] = run_backend("local", None, first, last)
    if "gcs" in backends:
        (WORK / "gcs").mkdir()
        # In memory, without the emulator's per-write JSON copy of its whole index (which
        # makes an upload cost grow with the objects stored: 90 ms at 5,000), so what is
        # measured is the lake's requests, not the emulator's bookkeeping.
        extra = () if args.disk_emulator else ("-M", "--skip-index")
        with gcs_lake_emulator(WORK / "gcs", extra) as emulator:
            kind = "on disk" if args.disk_emulator else "in memory, index copy skipped"
            print(f"(GCS emulator {emulator.url}, {kind}, generation preconditions enforced)")
            results["gcs"] = run_backend("gcs", fresh_url(), first, last)
    if set(results) != {"local", "gcs"}:
        return 0
    local, gcs, days = results["local"], results["gcs"], args.days
    print("GCS minus local, per day:")
    labels = {"backfill": "backfill", "rerun": "re-run (days reused)", "read": f"read {BARS}"}
    for key, label in labels.items():
        if key not in gcs or key not in local:
            continue
        diff = gcs[key] - local[key]
        waits = gcs.get(f"{key}_waits", 0.0) - local.get(f"{key}_waits", 0.0)
        print(f"  {label:<22}{1000 * diff / days:+8.0f} ms/day  ({diff:+.1f} s over {days} days; "
              f"{1000 * (diff - waits) / days:+.0f} ms/day without rate-limit sleeps)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
