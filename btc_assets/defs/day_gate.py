"""The per-day gate and the one way an asset reads the lake: ``read_gated``.

A single-run backfill step covers many days, and Dagster's own blocking gate is per step: one
failing day would stop every downstream day of the range. So each day's ``quality``
evaluation is recorded with its partition (``checks``), and every asset that reads the lake
asks this module for its inputs. For each input day it finds whether the day can be used:

- its latest ``quality`` evaluation did not fail with ERROR (a blocked day records one, so a
  block travels down every level);
- its file verifies against its manifest (``Lake.read_days``: a file can rot after its check
  passed);
- it was written in this env (live never reads a sandbox day, nor the reverse).

An output day whose same-day input cannot be used is blocked: not built, recorded as
blocked with the cause. A look-back day (an earlier day inside a window, e.g. the 30 days of a
percentile) that cannot be used is left out of every window it falls in, and each output
day counts the look-back days it lost (``excluded_lookback``): blocking 31 days of features
for one bad open-interest day would turn one bad print into a month of nothing, while a
window one day short is still the statistic, with the shortfall shown.

Inputs are declared once (``Input``), and the asset's ``deps`` and partition mappings are
built from that declaration (``gated_deps``), which also tags the asset with its gated
tables: ``btc_assets_tests/test_defs`` fails for any asset that depends on a lake table
without reading it through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg
import polars as pl

from btc_assets.core.tables import Table
from btc_assets.defs.checks import QUALITY, table_key
from btc_assets.defs.dagster_internals import failed_partitions, latest_evaluation
from btc_assets.lake import DayWrite, Lake

NEVER_BUILT = "never built"
# Asset metadata key listing the lake tables an asset reads through ``read_gated``.
GATED_INPUTS = "btc_assets/gated_inputs"


@dataclass(frozen=True)
class Input:
    """A lake table an asset reads, and how many days before each output day it looks."""

    table: Table
    lookback_days: int = 0

    def dep(self) -> dg.AssetDep:
        mapping = (
            dg.TimeWindowPartitionMapping(
                start_offset=-self.lookback_days, allow_nonexistent_upstream_partitions=True
            )
            if self.lookback_days
            else None
        )
        return dg.AssetDep(table_key(self.table), partition_mapping=mapping)

    def window(self, day: date) -> list[date]:
        return [day - timedelta(days=n) for n in range(self.lookback_days, -1, -1)]


def gated_deps(inputs: Iterable[Input]) -> dict[str, object]:
    """``deps`` and the metadata tag of an asset that reads ``inputs`` through the gate."""
    inputs = list(inputs)
    return {
        "deps": [i.dep() for i in inputs],
        "metadata": {GATED_INPUTS: sorted({i.table.name for i in inputs})},
    }


@dataclass
class GatedRead:
    """The output days to build, the blocked ones with causes, and the verified inputs."""

    days: list[date]
    blocked: dict[date, list[str]]
    frames: dict[str, pl.LazyFrame]
    committed: dict[str, dict[date, DayWrite]] = field(default_factory=dict)
    excluded_lookback: dict[date, list[str]] = field(default_factory=dict)


def check_failures(
    instance: dg.DagsterInstance,
    upstream: Sequence[dg.AssetKey],
    days: Iterable[date],
) -> dict[date, list[str]]:
    """Days whose latest upstream ``quality`` evaluation failed with ERROR, with reasons.

    One event-log query for the range, then one per failed day to read its severity (a WARN
    failure, such as a gap, does not block).
    """
    keys = [dg.AssetCheckKey(asset_key, QUALITY) for asset_key in upstream]
    by_key = {day.isoformat(): day for day in days}
    if not by_key:
        return {}
    failed: dict[date, list[str]] = {}
    for check_key, partition in failed_partitions(instance, keys, list(by_key)):
        evaluation = latest_evaluation(instance, check_key, partition)
        if evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.setdefault(by_key[partition], []).append(
                f"{check_key.asset_key.to_user_string()}.{QUALITY} failed: {evaluation.description}"
            )
    return failed


def unusable_days(
    instance: dg.DagsterInstance,
    lake: Lake,
    table: Table,
    symbol: str,
    days: Iterable[date],
    env: str,
) -> tuple[dict[date, str], dict[date, DayWrite], pl.LazyFrame]:
    """Each day of ``table`` that cannot be read, why; the usable days; a scan over them."""
    days = sorted(set(days))
    reasons: dict[date, str] = {
        day: "; ".join(why)
        for day, why in check_failures(instance, [table_key(table)], days).items()
    }
    open_days = [day for day in days if day not in reasons]
    read = lake.read_days(table.name, symbol, open_days, schema=dict(table.schema))
    for day in read.missing:
        reasons[day] = NEVER_BUILT
    for day, error in read.errors.items():
        reasons[day] = f"does not verify: {error}"
    usable: dict[date, DayWrite] = {}
    for day, written in read.committed.items():
        written_env = written.provenance.get("env")
        if written_env != env:
            reasons[day] = (
                f"written in {written_env or 'an unrecorded'} env, this is {env} ({written.path})"
            )
        else:
            usable[day] = written
    if len(usable) == len(read.committed):
        return reasons, usable, read.frame
    return reasons, usable, lake.scan(usable.values(), dict(table.schema))  # without other envs


def read_gated(
    context: dg.AssetExecutionContext,
    lake: Lake,
    symbol: str,
    env: str,
    inputs: Mapping[str, Input],
    days: list[date],
    first_day: date,
) -> GatedRead:
    """Gate ``days`` on ``inputs`` and read what may be read.

    ``first_day`` is where the partitions begin: windows reaching before it are short by
    construction (history starts there), not by exclusion.
    """
    blocked: dict[date, list[str]] = {}
    excluded: dict[date, list[str]] = {}
    frames: dict[str, pl.LazyFrame] = {}
    committed: dict[str, dict[date, DayWrite]] = {}
    for name, spec in inputs.items():
        wanted = sorted({d for day in days for d in spec.window(day) if d >= first_day})
        reasons, usable, frame = unusable_days(
            context.instance, lake, spec.table, symbol, wanted, env
        )
        committed[name] = usable
        for day in days:
            if day in reasons:
                blocked.setdefault(day, []).append(f"{spec.table.name} {day} {reasons[day]}")
            # A look-back day never built is simply absent (history or a backfill not yet
            # run); one that exists but cannot be used is excluded, and counted.
            lost = [d for d in spec.window(day)[:-1] if reasons.get(d, NEVER_BUILT) != NEVER_BUILT]
            excluded.setdefault(day, []).extend(
                f"{spec.table.name} {d}: {reasons[d]}" for d in lost
            )
        frames[name] = frame
    good = [day for day in days if day not in blocked]
    if blocked:
        context.log.warning(
            f"{len(blocked)} day(s) blocked upstream, not built: "
            + "; ".join(f"{d}: {' | '.join(why)}" for d, why in sorted(blocked.items()))
        )
    return GatedRead(
        days=good,
        blocked=blocked,
        frames=frames,
        committed=committed,
        excluded_lookback={d: v for d, v in excluded.items() if v and d in good},
    )
