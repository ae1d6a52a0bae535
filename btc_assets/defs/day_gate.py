"""The per-day blocking gate: which days of a range are safe to build, and why the others not.

A single-run backfill step covers many days, and Dagster's own blocking gate is per step: one
failing day would stop every downstream day of the range. So each day's ``quality``
evaluation is recorded with its partition (``checks``), and every downstream asset asks this
module, before it reads its inputs, which of its days are blocked upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import dagster as dg

from btc_assets.core.tables import Table
from btc_assets.defs.checks import QUALITY, table_key
from btc_assets.defs.dagster_internals import failed_partitions, latest_evaluation
from btc_assets.lake import Lake


def blocked_days(
    instance: dg.DagsterInstance,
    upstream: Sequence[dg.AssetKey],
    days: Iterable[date],
) -> dict[date, list[str]]:
    """Days whose latest upstream ``quality`` evaluation failed with ERROR, with reasons.

    One event-log query for the whole range, then one per failed day to read its severity
    (a WARN failure, such as a gap, does not block). A day never checked is not blocked:
    the downstream asset's own check still runs on what it writes.
    """
    keys = [dg.AssetCheckKey(asset_key, QUALITY) for asset_key in upstream]
    by_key = {day.isoformat(): day for day in days}
    blocked: dict[date, list[str]] = {}
    for check_key, partition in failed_partitions(instance, keys, list(by_key)):
        evaluation = latest_evaluation(instance, check_key, partition)
        if evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            blocked.setdefault(by_key[partition], []).append(
                f"{check_key.asset_key.to_user_string()}.{QUALITY}: {evaluation.description}"
            )
    return blocked


def gate_days(
    context: dg.AssetExecutionContext,
    lake: Lake,
    symbol: str,
    sources: Sequence[Table],
    days: list[date],
) -> tuple[list[date], dict[date, list[str]]]:
    """Split ``days`` into those safe to build and those blocked, with the reasons.

    A day is blocked when an upstream day's blocking check failed with ERROR, or when an
    upstream day file no longer verifies against its manifest (a file can rot after its
    check passed).
    """
    blocked = blocked_days(context.instance, [table_key(s) for s in sources], days)
    for source in sources:
        open_days = [day for day in days if day not in blocked]
        for day, error in lake.verify_days(source.name, symbol, open_days).items():
            if error is not None:
                blocked[day] = [f"{source.name} cannot be read: {error}"]
    return [day for day in days if day not in blocked], blocked
