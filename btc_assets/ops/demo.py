"""``make demo``: materialize the whole graph for the last N UTC days and print a summary.

Runs on the Dagster instance in ``DAGSTER_HOME``, so ``make dev`` shows the same runs,
materializations and check results afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from datetime import date, timedelta

import dagster as dg

# backfill_policy is beta and partitioned checks are preview in dagster 1.13: known, chosen.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from btc_assets import clock  # noqa: E402  (after the filters)
from btc_assets.assets.day_metadata import BLOCKED_TAG_PREFIX  # noqa: E402
from btc_assets.core.tables import WHALE_ALERTS, lake_tables  # noqa: E402
from btc_assets.defs.definitions import defs  # noqa: E402
from btc_assets.ops import demo_alerts, demo_model  # noqa: E402
from btc_assets.settings import load_settings  # noqa: E402
from btc_assets.warehouse import demo_step  # noqa: E402  (after the filters)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Step-level DEBUG events would bury the summary; the UI keeps the full event log.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _check_tally(instance: dg.DagsterInstance, run_id: str) -> dict[str, Counter[str]]:
    tally: dict[str, Counter[str]] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data  # type: ignore[union-attr]
        verdict = "passed" if evaluation.passed else f"failed {evaluation.check_name}"
        tally.setdefault(evaluation.asset_key.to_user_string(), Counter())[verdict] += 1
    return tally


def _blocked(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, str]:
    """What the runs tagged as blocked, per asset (see ``assets.day_metadata.tag_blocked``)."""
    found: dict[str, str] = {}
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        for key, value in (run.tags if run else {}).items():
            if key.startswith(BLOCKED_TAG_PREFIX):
                found[key.removeprefix(BLOCKED_TAG_PREFIX)] = value
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30, help="UTC days ending yesterday")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    settings = load_settings()
    end = clock.today_utc() - timedelta(days=1)
    start = max(end - timedelta(days=args.days - 1), settings.start_date)
    members = ", ".join(s.perp for s in settings.symbols)
    print(f"btc_assets demo: {settings.env} mode, {members}, {start} .. {end}")
    try:
        demo_step.check(defs, settings)  # WAREHOUSE=bigquery: says what to set, early
    except demo_step.WarehouseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instance = dg.DagsterInstance.get()
    began = time.perf_counter()
    daily = defs.resolve_job_def("btc_daily").execute_in_process(
        instance=instance,
        tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat()},
        run_config=QUIET,
        raise_on_error=False,
    )
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    alerts = demo_alerts.run(defs, instance, settings, days, QUIET)
    catalog = defs.resolve_job_def("warehouse_catalog").execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False
    )
    bigquery = demo_step.load(defs, instance, settings, start, end, QUIET)
    model = demo_model.train(defs, instance, settings, args.days, QUIET)
    elapsed = time.perf_counter() - began
    tally = {**_check_tally(instance, daily.run_id), **_check_tally(instance, alerts.run_id)}
    lake_root = settings.lake_location
    width = 30
    print(f"\n{'asset':<{width}}{'days':>6}{'rows':>10}  {'checks':<34}lake path")
    dataset = defs.resources["dataset"]
    lake = dataset.lake()  # type: ignore[union-attr]
    for table in lake_tables(settings.bar_intervals, settings.forecast.joined_series()):
        present: set[date] = set()
        rows = 0
        # The whale watch observes today, not the demo's range.
        shown = [clock.today_utc()] if table.name == WHALE_ALERTS.name else days
        for symbol in dataset.lake_symbols(table):  # type: ignore[union-attr]
            read = lake.read_days(table.name, symbol, shown)
            present |= set(read.committed)
            rows += read.frame.select("ts").collect().height if read.committed else 0
        counts = tally.get(table.name, Counter())
        passed = counts.pop("passed", 0)
        failed = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "0 failed"
        print(
            f"{table.name:<{width}}{len(present):>6}{rows:>10}  {f'{passed} passed, {failed}':<34}"
            f"{lake_root}/{table.name}"
        )
    print(f"{'duckdb_catalog':<{width}}{'':>16}  {'':<34}{settings.warehouse_path}")
    print(f"{'qa_report':<{width}}{'':>16}  {'':<34}{settings.reports_dir / 'p1_qa_core.json'}")
    print(bigquery.summary)
    print(model.summary)
    print(alerts.summary)
    blocked = _blocked(instance, [daily.run_id, *bigquery.run_ids])
    if blocked:
        print("\nblocked (asset: days not built because an input day failed its gate):")
        for asset, text in blocked.items():
            print(f"  {asset}: {text}")
    ok = daily.success and catalog.success and bigquery.success and model.success
    ok = ok and alerts.success
    status = "succeeded" if ok else "FAILED"
    print(
        f"\nruns {status} in {elapsed:.1f} s (daily run {daily.run_id[:8]}, "
        f"catalog run {catalog.run_id[:8]}); open `make dev` to browse them"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
