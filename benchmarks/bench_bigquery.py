"""One year of ``bars_15m`` (365 day files) loaded into the BigQuery emulator, one run.

Prints: wall time of the single-run backfill of ``bq_bars_15m``, the part spent in the
per-day replace (staging load + transaction script) and in the parity query, and the
BigQuery jobs per day (target: one load + one script). Runs once loading from the local
day files and once staged on GCS (``gs://``). The day files are synthesized through
``Lake.write_day`` (the contract's schema, 96 bars a day); the emulators are the ones the
tests use (``make emulators``). Not a test: no assertions.

    .venv/bin/python benchmarks/bench_bigquery.py [--days 365] [--staging local,gcs]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
import warnings
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

import btc_assets.assets.bigquery_loads as loads_module  # noqa: E402
import btc_assets.warehouse.bigquery as bq_module  # noqa: E402
import btc_assets.warehouse.gcs as gcs_module  # noqa: E402
import btc_assets.warehouse.resources as resources_module  # noqa: E402
from btc_assets.assets.bigquery_loads import bigquery_assets  # noqa: E402
from btc_assets.core.schema import FEATURE_SCHEMA  # noqa: E402
from btc_assets.defs.definitions import build_resources  # noqa: E402
from btc_assets.lake import Lake  # noqa: E402
from btc_assets.settings import WarehouseSettings, load_settings  # noqa: E402
from btc_assets_tests.emulators import (  # noqa: E402
    PROJECT,
    bigquery_emulator,
    gcs_emulator,
    installed_backend,
)

SYMBOL = "BTCUSDT"
FIRST_DAY = date(2023, 1, 1)


def synth_day(day: date, rng: np.random.Generator) -> pl.DataFrame:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = [start + timedelta(minutes=15 * (i + 1)) for i in range(96)]
    close = 30_000 + np.cumsum(rng.normal(0, 20, 96))
    columns: dict[str, object] = {"symbol": [SYMBOL] * 96, "ts": ts}
    for name, dtype in FEATURE_SCHEMA.items():
        if name in columns:
            continue
        if dtype == pl.Boolean:
            columns[name] = rng.random(96) < 0.02
        elif dtype == pl.String:
            source = "coinglass_oi_weight" if name == "funding_source" else "coinglass"
            columns[name] = [source] * 96
        else:
            columns[name] = close if name in ("open", "high", "low", "close") else rng.random(96)
    return pl.DataFrame(columns, schema=FEATURE_SCHEMA)


def build_lake(data_dir: Path, days: list[date]) -> float:
    lake, rng = Lake(data_dir / "lake"), np.random.default_rng(7)
    began = time.perf_counter()
    for day in days:
        lake.write_day("bars_15m", SYMBOL, day, synth_day(day, rng))
    return time.perf_counter() - began


class Timer:
    """Wraps a function, in every module that imported it, to add up its seconds."""

    def __init__(self, name: str, *modules: object) -> None:
        self.seconds, self.calls = 0.0, 0
        self.name, self.modules = name, modules
        self.original = getattr(modules[0], name)

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began
                self.calls += 1

        for module in modules:
            setattr(module, name, timed)

    def restore(self) -> None:
        for module in self.modules:
            setattr(module, self.name, self.original)


def run(data_dir: Path, days: list[date], bq_url: str, bucket: str | None, client: object) -> None:
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    settings = WarehouseSettings(
        kind="bigquery",
        bigquery_project=PROJECT,
        bigquery_dataset=dataset,
        bigquery_api_endpoint=bq_url,
        gcs_bucket=bucket,
    )
    res = build_resources(replace(load_settings(), data_dir=data_dir, warehouse=settings))
    replace_timer = Timer("replace_day", bq_module, loads_module)
    parity_timer = Timer("day_figures", bq_module, loads_module)
    upload_timer = Timer("upload_day", gcs_module, resources_module)
    stage_timer, swap_timer = Timer("_stage", bq_module), Timer("_swap", bq_module)
    jobs_before = Counter(j.job_type for j in client.list_jobs(all_users=True))  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        began = time.perf_counter()
        result = dg.materialize(
            bigquery_assets(load_settings().bar_intervals),
            instance=instance,
            resources=res,
            selection=["bq_bars_15m"],
            tags={
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            },
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        wall = time.perf_counter() - began
        per_day_jobs: Counter[int] = Counter()
        script_id = ""
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                meta = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
                per_day_jobs[meta["bigquery_jobs"].value] += 1
                script_id = meta["bigquery_job_ids"].value.split(", ")[-1]
    jobs_after = Counter(j.job_type for j in client.list_jobs(all_users=True))  # type: ignore[attr-defined]
    delta = {kind: jobs_after[kind] - jobs_before[kind] for kind in jobs_after}
    rows = client.query(  # type: ignore[attr-defined]
        f"SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.bars_15m`"
    ).result()
    loaded = next(iter(rows))["n"]
    label = f"gs://{bucket}" if bucket else "local file"
    children = client.get_job(script_id).num_child_jobs  # type: ignore[attr-defined]
    n = len(days)
    print(f"\n== staging: {label} ==")
    print(f"run {'succeeded' if result.success else 'FAILED'}: {n} days, {loaded} rows")
    print(f"wall {wall:.1f} s = {wall / n * 1000:.0f} ms/day")
    print(
        f"  replace_day (file check, staging load, script, drop) {replace_timer.seconds:.1f} s "
        f"({replace_timer.seconds / n * 1000:.0f} ms/day)"
    )
    stage, swap = stage_timer.seconds, swap_timer.seconds
    print(f"    staging table + load job {stage:.1f} s ({stage / n * 1000:.0f} ms/day)")
    print(f"    transaction script {swap:.1f} s ({swap / n * 1000:.0f} ms/day)")
    if bucket:
        up = upload_timer.seconds
        print(f"  GCS uploads {up:.1f} s ({up / n * 1000:.0f} ms/day)")
    print(f"  parity query {parity_timer.seconds:.2f} s (one query for the whole range)")
    rest = wall - replace_timer.seconds - upload_timer.seconds - parity_timer.seconds
    print(f"  the rest (gate, per-day metadata, Dagster event writes) {rest:.1f} s")
    print(f"BigQuery jobs per day (materialization metadata), {{jobs: days}}: {dict(per_day_jobs)}")
    print(f"jobs the emulator recorded for the run: {delta} (the parity query is 1 per run)")
    print(f"child statements of one script job: {children} (BEGIN, DELETE, INSERT, COMMIT)")
    for timer in (replace_timer, parity_timer, upload_timer, stage_timer, swap_timer):
        timer.restore()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--staging", default="local,gcs")
    args = parser.parse_args()
    days = [FIRST_DAY + timedelta(days=i) for i in range(args.days)]
    kind, _ = installed_backend()
    work = Path(tempfile.mkdtemp(prefix="btc_bench_bq_"))
    print(f"bench_bigquery: {len(days)} day files of bars_15m, emulator {kind}, work dir {work}")
    print(f"lake synthesized in {build_lake(work / 'data', days):.1f} s")
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    (work / "gcs").mkdir()
    (work / "bq").mkdir()
    with gcs_emulator(work / "gcs") as gcs:
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
        with bigquery_emulator(work / "bq", gcs.disk_root) as bq:
            client = bigquery.Client(
                project=PROJECT,
                credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=bq.url),
            )
            for staging in args.staging.split(","):
                bucket = None
                if staging == "gcs":
                    bucket = f"bench-{uuid.uuid4().hex[:8]}"
                    storage.Client(project=PROJECT).create_bucket(bucket)
                run(work / "data", days, bq.url, bucket, client)


if __name__ == "__main__":
    main()
