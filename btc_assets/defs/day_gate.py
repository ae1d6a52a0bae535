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

from btc_assets.concurrency import map_members
from btc_assets.core.tables import Table
from btc_assets.defs.checks import QUALITY, blocking_symbols, symbol_verdicts, table_key
from btc_assets.defs.dagster_internals import failed_partitions, latest_evaluation
from btc_assets.defs.resources import SymbolConfig
from btc_assets.lake import DayWrite, Lake

NEVER_BUILT = "never built"
# Asset metadata key listing the lake tables an asset reads through ``read_gated``.
GATED_INPUTS = "btc_assets/gated_inputs"


@dataclass(frozen=True)
class Input:
    """A lake table an asset reads, and how many days before each output day it looks."""

    table: Table
    lookback_days: int = 0
    # False: a substitute's input. An unusable day of it blocks nothing; it is left out and
    # counted like a look-back day, and the output says the substitute was unavailable.
    required: bool = True

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


@dataclass(frozen=True)
class Failure:
    """A day's failed upstream ``quality`` gate: why, and which symbols it blocks."""

    reason: str
    symbols: frozenset[str] | None  # None: every symbol (recorded before per-symbol verdicts)

    def blocks(self, symbol: str | None) -> bool:
        return symbol is None or self.symbols is None or symbol in self.symbols


def day_failures(
    instance: dg.DagsterInstance,
    upstream: Sequence[dg.AssetKey],
    days: Iterable[date],
) -> dict[date, list[Failure]]:
    """Days whose latest upstream ``quality`` evaluation failed with ERROR, with reasons and
    the symbols each blocks.

    One event-log query for the range, then one per failed day to read its severity and
    symbols (a WARN failure, such as a gap, does not block); the cost does not grow with the
    number of symbols.
    """
    keys = [dg.AssetCheckKey(asset_key, QUALITY) for asset_key in upstream]
    by_key = {day.isoformat(): day for day in days}
    if not by_key:
        return {}
    failed: dict[date, list[Failure]] = {}
    for check_key, partition in failed_partitions(instance, keys, list(by_key)):
        evaluation = latest_evaluation(instance, check_key, partition)
        if evaluation is None or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        name = f"{check_key.asset_key.to_user_string()}.{QUALITY} failed"
        symbols = blocking_symbols(evaluation)
        verdicts = symbol_verdicts(evaluation)
        if symbols is None or len(verdicts) <= 1:
            failure = Failure(
                f"{name}: {evaluation.description}", None if symbols is None else frozenset(symbols)
            )
            failed.setdefault(by_key[partition], []).append(failure)
            continue
        for symbol in sorted(symbols):  # each symbol's own cause, not the whole basket's
            why = verdicts[symbol].description if symbol in verdicts else evaluation.description
            failed.setdefault(by_key[partition], []).append(
                Failure(f"{name}: {why}", frozenset({symbol}))
            )
    return failed


def check_failures(
    instance: dg.DagsterInstance,
    upstream: Sequence[dg.AssetKey],
    days: Iterable[date],
    symbol: str | None = None,
) -> dict[date, list[str]]:
    """The reasons of ``day_failures`` that block ``symbol`` (None: any symbol)."""
    out: dict[date, list[str]] = {}
    for day, failures in day_failures(instance, upstream, days).items():
        reasons = [f.reason for f in failures if f.blocks(symbol)]
        if reasons:
            out[day] = reasons
    return out


def unusable_days(
    instance: dg.DagsterInstance | None,
    lake: Lake,
    table: Table,
    symbol: str,
    days: Iterable[date],
    env: str,
    failures: Mapping[date, list[Failure]] | None = None,
) -> tuple[dict[date, str], dict[date, DayWrite], pl.LazyFrame]:
    """Each day of ``table`` for ``symbol`` (its name in that table) that cannot be read, why;
    the usable days; a scan over them. ``failures``: the table's ``day_failures`` when the
    caller already has them (one query for every symbol)."""
    days = sorted(set(days))
    if failures is None:
        assert instance is not None, "pass the instance or the table's day_failures"
        failures = day_failures(instance, [table_key(table)], days)
    reasons: dict[date, str] = {}
    for day in days:
        why = [f.reason for f in failures.get(day, []) if f.blocks(symbol)]
        if why:
            reasons[day] = "; ".join(why)
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


def gate_names(
    instance: dg.DagsterInstance,
    lake: Lake,
    table: Table,
    names: Iterable[str],
    days: Iterable[date],
    env: str,
) -> dict[str, tuple[dict[date, str], dict[date, DayWrite], pl.LazyFrame]]:
    """``unusable_days`` of ``table`` for each of ``names`` (basket members or series),
    with one ``day_failures`` query for all of them."""
    days = sorted(set(days))
    failures = day_failures(instance, [table_key(table)], days)
    return {name: unusable_days(None, lake, table, name, days, env, failures) for name in names}


def read_gated(
    context: dg.AssetExecutionContext,
    lake: Lake,
    symbols: Sequence[SymbolConfig],
    env: str,
    inputs: Mapping[str, Input],
    days: list[date],
    first_day: date,
    workers: int = 1,
) -> dict[str, GatedRead]:
    """Gate ``days`` on ``inputs`` for each symbol and read what may be read, by perp symbol.

    A failed upstream day blocks only the symbols its evaluation names, so one symbol's bad
    day stops that symbol's dependents and no other. ``first_day`` is where the partitions
    begin: windows reaching before it are short by construction (history starts there), not
    by exclusion. ``workers`` symbols are verified and read at once (``map_members``).
    """
    wanted = {
        name: sorted({d for day in days for d in spec.window(day) if d >= first_day})
        for name, spec in inputs.items()
    }
    failures = {
        name: day_failures(context.instance, [table_key(spec.table)], wanted[name])
        for name, spec in inputs.items()
    }
    found = map_members(
        lambda symbol: _read_symbol(lake, symbol, env, inputs, days, wanted, failures),
        list(symbols),
        workers,
    )
    reads = {symbol.perp: read for symbol, read in zip(symbols, found, strict=True)}
    for symbol in symbols:
        blocked = reads[symbol.perp].blocked
        if blocked:
            context.log.warning(
                f"{symbol.perp}: {len(blocked)} day(s) blocked upstream, not built: "
                + "; ".join(f"{d}: {' | '.join(why)}" for d, why in sorted(blocked.items()))
            )
    return reads


def _read_symbol(
    lake: Lake,
    symbol: SymbolConfig,
    env: str,
    inputs: Mapping[str, Input],
    days: list[date],
    wanted: Mapping[str, list[date]],
    failures: Mapping[str, Mapping[date, list[Failure]]],
) -> GatedRead:
    blocked: dict[date, list[str]] = {}
    excluded: dict[date, list[str]] = {}
    frames: dict[str, pl.LazyFrame] = {}
    committed: dict[str, dict[date, DayWrite]] = {}
    for name, spec in inputs.items():
        stored_as = symbol.lake_symbol(spec.table)
        if stored_as is None:  # no such market for this member (a perp without spot)
            frames[name] = pl.LazyFrame(schema=dict(spec.table.schema))
            committed[name] = {}
            continue
        reasons, usable, frame = unusable_days(
            None, lake, spec.table, stored_as, wanted[name], env, failures[name]
        )
        committed[name] = usable
        for day in days:
            if day in reasons and spec.required:
                blocked.setdefault(day, []).append(
                    f"{spec.table.name} {stored_as} {day} {reasons[day]}"
                )
            # A look-back day never built is simply absent (history or a backfill not yet
            # run); one that exists but cannot be used is excluded, and counted. A
            # substitute's input is read only where CoinGlass has no day, and the feature's
            # source column says so then: its unusable days are left out, not counted.
            if not spec.required:
                continue
            lost = [d for d in spec.window(day)[:-1] if reasons.get(d, NEVER_BUILT) != NEVER_BUILT]
            excluded.setdefault(day, []).extend(
                f"{spec.table.name} {stored_as} {d}: {reasons[d]}" for d in lost
            )
        frames[name] = frame
    good = [day for day in days if day not in blocked]
    return GatedRead(
        days=good,
        blocked=blocked,
        frames=frames,
        committed=committed,
        excluded_lookback={d: v for d, v in excluded.items() if v and d in good},
    )


@dataclass
class PublishedRead:
    """The published series an asset reads: per (table, series) the usable rows, and per
    output day the look-back days left out (a bad file, a failed gate), with why."""

    frames: dict[tuple[str, str], pl.LazyFrame]
    excluded: dict[date, list[str]]
    missing: dict[date, int]  # look-back days never built (sources not backfilled)


def read_published(
    context: dg.AssetExecutionContext,
    lake: Lake,
    env: str,
    inputs: Sequence[Input],
    names: Mapping[str, Sequence[str]],
    days: list[date],
    first_day: date,
) -> PublishedRead:
    """Gate and read published tables (``Table.published``), whose lake names are series,
    not basket members: ``names`` maps each table to its series. Published inputs never
    block a day (a value that is not known stays null with its reason downstream); what
    was left out is returned per output day."""
    frames: dict[tuple[str, str], pl.LazyFrame] = {}
    excluded: dict[date, list[str]] = {}
    missing: dict[date, int] = {}
    for spec in inputs:
        wanted = {d for day in days for d in spec.window(day) if d >= first_day}
        gated = gate_names(
            context.instance, lake, spec.table, names.get(spec.table.name, ()), wanted, env
        )
        for name, (reasons, _, frame) in gated.items():
            frames[(spec.table.name, name)] = frame
            for day in days:
                for d in spec.window(day):
                    why = reasons.get(d)
                    if why == NEVER_BUILT and d >= first_day:
                        missing[day] = missing.get(day, 0) + 1
                    elif why is not None:
                        excluded.setdefault(day, []).append(f"{spec.table.name} {name} {d}: {why}")
    return PublishedRead(frames, excluded, missing)
