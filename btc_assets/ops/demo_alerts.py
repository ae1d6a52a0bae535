"""The demo's alert step: one whale watch for today, then one tick of the alert notifier.

The daily job has already built ``signals`` over the demo's days; this adds today's whale
alerts and delivers what is due: in sandbox mode to the sandbox's Telegram (no chat is
reached), in live mode to the configured chat. The summary counts the alert history per
kind and severity, so the demo shows which signals fired.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from btc_assets import clock
from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.tables import ALERT_TABLES
from btc_assets.settings import Settings

JOB = "whale_watch"
NOTIFIER = "alert_notifier"


@dataclass(frozen=True)
class AlertRun:
    success: bool
    summary: str
    run_id: str  # the whale watch's run


def history_counts(lake: Any, symbols: dict[str, list[str]], days: list[date]) -> Counter[str]:
    """Alert rows per ``table kind/severity`` over ``days`` (verified days only)."""
    counts: Counter[str] = Counter()
    for table in ALERT_TABLES:
        for symbol in symbols[table.name]:
            frame = lake.read_days(table.name, symbol, days, ALERT_SCHEMA).frame.collect()
            for kind, severity, n in frame.group_by("kind", "severity").len().iter_rows():
                counts[f"{kind}/{severity}"] += n
    return counts


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: list[date],
    run_config: dict[str, Any],
) -> AlertRun:
    today = clock.today_utc()
    whales = defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, partition_key=today.isoformat(), run_config=run_config,
        raise_on_error=False,
    )  # fmt: skip
    dataset = defs.resources["dataset"]
    lake = dataset.lake()  # type: ignore[union-attr]
    symbols = {t.name: dataset.lake_symbols(t) for t in ALERT_TABLES}  # type: ignore[union-attr]
    counts = history_counts(lake, symbols, [*days, today])
    sensor = defs.resolve_sensor_def(NOTIFIER)
    needed = {k: defs.resources[k] for k in ("dataset", "telegram", "alert_delivery")}
    with dg.build_sensor_context(
        instance=instance, resources=needed, repository_def=defs.get_repository_def()
    ) as context:
        told = sensor.evaluate_tick(context).skip_message or "nothing to say"
    where = "the sandbox's Telegram (no real chat)" if settings.is_sandbox else "Telegram"
    shown = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"
    status = "" if whales.success else f" (whale watch FAILED, run {whales.run_id[:8]})"
    return AlertRun(
        whales.success,
        f"alerts{status}: {shown}\nnotifier -> {where}: {told}",
        whales.run_id,
    )
