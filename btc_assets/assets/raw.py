"""Raw vendor feeds: one daily-partitioned asset per feed, one lake table each.

Every day written records its provenance with the data (env, vendor host and endpoint, fetch
time, whether the day had closed, whether it was complete, a fallback, how many re-fetches
confirmed a gap). A day older than the tail window is reused without a request only when it
is real and whole: it verifies, came from this env and host, was fetched after it closed,
was not a fallback, and is complete, or its gap was confirmed by ``gap_confirmations``
re-fetches with the same answer (then reused with its WARN). The ``btc_assets/force`` run
tag re-fetches regardless. A vendor answer with no rows for a day that has bars is an
ERROR: nothing is written and the day is blocked downstream.

Each vendor module supplies how to fetch a list of days: per day (Binance klines, whose
request count per day is part of the contract) or per contiguous span (CoinGlass pages 1000
bars per request).
"""

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.basket import check_basket
from btc_assets.assets.common import (
    LAKE_KINDS,
    SymbolDays,
    forced,
    range_days,
    record_days,
    run_symbols,
    table_key,
)
from btc_assets.concurrency import map_members
from btc_assets.core.quality import quality_by_day
from btc_assets.core.schema import conform, day_bounds, partition_day_expr
from btc_assets.core.tables import Table
from btc_assets.defs import checks
from btc_assets.defs.day_gate import Input, gated_deps
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL
from btc_assets.defs.resources import vendor_pool
from btc_assets.lake import DayWrite, Lake

# A bar table's day "has bars" once this much of it has passed; an empty answer after that,
# or for any closed day, is an error.
FIRST_BARS = timedelta(hours=1)


@dataclass
class Fetched:
    """What a fetch of some days brought back."""

    frames: dict[date, pl.DataFrame] = field(default_factory=dict)
    day_metadata: dict[date, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    # Days served by a fallback source, and why: never reused, re-fetched next time.
    fallbacks: dict[date, str] = field(default_factory=dict)
    # What a day records beyond the table's own origin (e.g. the archive file it came from:
    # ``origin``, ``host`` and ``endpoint`` here replace the table's).
    provenance: dict[date, dict[str, Any]] = field(default_factory=dict)
    # Days no source could give, and why: not written, blocked downstream.
    refused: dict[date, str] = field(default_factory=dict)
    # Days the vendor does not serve at all (outside its plan's history), and why: stored
    # empty with the reason, a warning, not a block (a substitute may stand in downstream).
    unavailable: dict[date, str] = field(default_factory=dict)
    # Days not asked this time (a daily request budget spent, no key), and why: a stored
    # day stays as it is; a day never stored is stored empty with the reason, as above.
    kept: dict[date, str] = field(default_factory=dict)


# (resources, basket member (``SymbolConfig``), days to fetch) -> Fetched
FetchDays = Callable[[Any, Any, list[date]], Fetched]
# resources -> the URL (base + path) the table is fetched from, for provenance
Origin = Callable[[Any], str]
# resources -> other origins a stored day may come from and still be reused (the archive)
OtherOrigins = Callable[[Any], tuple[str, ...]]
# (resources, the stored days about to be reused) -> those to fetch again, and why
Recheck = Callable[[Any, Mapping[date, DayWrite]], dict[date, str]]
# (resources) -> the names the table stores, each with what its fetch is given: the
# published series (a FRED id, a ticker), where the basket members are the default
Members = Callable[[Any], dict[str, Any]]
# (context, lake, names stored, days of the run) -> more metadata for the run's range (a
# picture of what was stored), computed after every day is written
RangeExtras = Callable[[dg.AssetExecutionContext, Lake, list[str], list[date]], Mapping[str, Any]]


def spans(days: list[date]) -> list[tuple[date, date]]:
    """Maximal runs of consecutive days, as (first, last)."""
    runs: list[tuple[date, date]] = []
    for day in sorted(days):
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


@dataclass(frozen=True)
class SpanRun:
    """A maximal run of consecutive days and the time window it covers, (start, end]."""

    days: list[date]
    start: datetime
    end: datetime


def span_runs(days: list[date]) -> list[SpanRun]:
    """``spans`` with each run's days and bounds: what a per-span fetch asks for."""
    return [
        SpanRun(
            [first + timedelta(days=i) for i in range((last - first).days + 1)],
            day_bounds(first)[0],
            day_bounds(last)[1],
        )
        for first, last in spans(days)
    ]


def split_days(frame: pl.DataFrame, days: list[date]) -> dict[date, pl.DataFrame]:
    """A range frame cut into partition days; a day without rows gets an empty frame."""
    parts = frame.with_columns(_day=partition_day_expr()).partition_by(
        "_day", as_dict=True, include_key=False
    )
    empty = frame.clear()
    return {day: parts.get((day,), empty) for day in days}


def reusable(
    written: DayWrite | None, env: str, origins: str | tuple[str, ...], confirmations_needed: int
) -> bool:
    """Is a stored day real and whole enough to keep without asking the vendor again?"""
    if written is None:
        return False
    p = written.provenance
    whole = p.get("complete") is True or p.get("confirmations", 0) >= confirmations_needed
    return (
        p.get("env") == env
        and p.get("origin") in ((origins,) if isinstance(origins, str) else origins)
        and p.get("closed") is True
        and not p.get("fallback")
        and whole
    )


def _confirmations(
    lake: Lake, previous: DayWrite | None, frame: pl.DataFrame, complete: bool
) -> int:
    """How many fetches in a row gave this same incomplete answer (0 when complete)."""
    if complete or previous is None or previous.provenance.get("complete") is not False:
        return 0
    try:
        stored = pl.read_parquet(io.BytesIO(lake.read_verified_bytes(previous)))
        same = stored.equals(frame.sort("symbol", "ts"))
    except Exception:  # an unreadable previous file confirms nothing
        return 0
    return int(previous.provenance.get("confirmations", 0)) + 1 if same else 0


def _has_rows(written: DayWrite | None) -> bool:
    return written is not None and int(written.provenance.get("rows", 0) or 0) > 0


def _write_fetched(
    lake: Lake,
    table: Table,
    symbol: str,
    fetched: Fetched,
    stale: list[date],
    previous: Mapping[date, DayWrite],
    base: dict[str, Any],
    fetch_started: datetime,
) -> tuple[dict[date, dict[str, Any]], dict[date, list[str]]]:
    """Write what the vendor returned, with provenance; refuse empty answers for days with
    bars. Returns per-day metadata and the days not written, with why."""
    schema = dict(table.schema)
    frames = {day: conform(fetched.frames.get(day, pl.DataFrame(schema=schema)), schema)
              for day in stale}  # fmt: skip
    as_of = fetch_started if any(day_bounds(d)[1] > fetch_started for d in stale) else None
    figures = {
        row["day"]: row
        for row in quality_by_day(
            table,
            pl.concat(frames.values(), rechunk=False).lazy()
            if frames
            else pl.LazyFrame(schema=schema),
            stale,
            as_of,
        ).iter_rows(named=True)
    }
    metadata: dict[date, dict[str, Any]] = {}
    refused: dict[date, list[str]] = {}
    for day in stale:
        frame, (start, end) = frames[day], day_bounds(day)
        closed = end <= fetch_started
        if day in fetched.kept and day in previous:
            metadata[day] = {"source": "kept", "not_fetched": fetched.kept[day]}
            continue
        if day in fetched.unavailable and _has_rows(previous.get(day)):
            # A vendor that no longer serves a day it once did (the plan's window moved, a
            # refusal on a forced re-run) does not erase what was stored.
            metadata[day] = {"source": "kept", "not_fetched": fetched.unavailable[day]}
            continue
        if day in fetched.kept:
            fetched.unavailable.setdefault(day, fetched.kept[day])
        if day in fetched.refused:
            refused[day] = [f"{table.name} {symbol} {day}: {fetched.refused[day]}"]
            continue
        # Bars come every minute or 15; events (funding) may be hours apart, so only a
        # closed day must have them.
        # A published table's day may hold nothing: no publication that day.
        has_bars = not table.published and (
            closed or (table.every is not None and fetch_started - start >= FIRST_BARS)
        )
        if frame.is_empty() and has_bars and day not in fetched.unavailable:
            refused[day] = [
                f"{table.name} {day}: {base['origin']} answered no rows for a day that has "
                "bars; nothing was written (the previous file, if any, is kept)"
            ]
            continue
        errors, warnings = checks.findings(figures[day])
        # A day not asked (no key, budget spent) is stored empty for now, never as whole:
        # reuse would otherwise keep it empty once the vendor can be asked again.
        complete = closed and not errors and not warnings and day not in fetched.kept
        provenance = {
            **base,
            **fetched.provenance.get(day, {}),
            "fetched_at": fetch_started.isoformat(timespec="seconds"),
            "closed": closed,
            "complete": complete,
            "rows": frame.height,
            "confirmations": _confirmations(lake, previous.get(day), frame, complete),
        }
        if day in fetched.fallbacks:
            provenance["fallback"] = fetched.fallbacks[day]
        if day in fetched.unavailable:
            provenance["unavailable"] = fetched.unavailable[day]
        lake.write_day(table.name, symbol, day, frame, provenance)
        metadata[day] = {
            "source": provenance["source"],
            **fetched.day_metadata.get(day, {}),
            "closed": closed,
            "complete": complete,
            "gap_confirmations": provenance["confirmations"],
        }
        if day in fetched.unavailable:
            metadata[day]["unavailable"] = fetched.unavailable[day]
    return metadata, refused


def _names(
    context: dg.AssetExecutionContext, table: Table, members: Members | None
) -> dict[str, Any]:
    """Each name the table stores, with what its fetch is given: one pass per name (two
    perps may share a spot pair). The basket is checked against the exchange first."""
    basket = run_symbols(context, context.resources.dataset.symbols)  # refuses a bad tag
    if members is not None:  # series shared by the basket: a symbol tag does not narrow them
        return members(context.resources)
    check_basket(context.run.run_id, context.resources, basket)
    by_name: dict[str, Any] = {}
    for member in basket:
        name = member.lake_symbol(table)
        if name is not None:  # a perp without a spot pair has no spot tables
            by_name.setdefault(name, member)
    return by_name


def raw_asset(
    table: Table,
    group: str,
    vendor_resources: set[str],
    fetch: FetchDays,
    origin: Origin,
    other_origins: OtherOrigins | None = None,
    recheck: Recheck | None = None,
    members: Members | None = None,
    reads: Sequence[Table] = (),
    range_extras: RangeExtras | None = None,
) -> dg.AssetsDefinition:
    """The raw asset of ``table``: for each name it stores (the basket members' names in it,
    or ``members``), reuse, fetch through ``fetch`` and write each day of the range.

    ``reads``: other tables ``range_extras`` reads, through the gate (the heatmap's candles,
    drawn under its tiles): declared as gated inputs, so they are built first in a run;
    ``range_extras`` adds metadata once every day is written."""

    resource_keys = {"dataset", *vendor_resources} | (set() if members else {"binance"})

    @dg.asset(
        name=table.name,
        description=table.description,
        partitions_def=DAILY,
        backfill_policy=DAILY_BACKFILL,
        pool=vendor_pool(resource_keys),  # one vendor's steps queue across runs
        group_name=group,
        kinds=LAKE_KINDS,
        required_resource_keys=resource_keys,
        check_specs=[checks.quality_check_spec(table_key(table))],
        **(gated_deps(Input(t) for t in reads) if reads else {}),
    )
    def _asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        days = range_days(context)
        dataset = context.resources.dataset
        by_name = _names(context, table, members)  # before any fetch: checks the basket
        fetch_started = clock.now_utc()
        # Every bar closed before the fetch starts must be there, today's included.
        as_of = fetch_started if clock.today_utc() in days else None
        lake, today = dataset.lake(), clock.today_utc()
        url = origin(context.resources)
        base = {"env": dataset.env, "source": "vendor", "origin": url,
                "host": urlsplit(url).netloc, "endpoint": urlsplit(url).path}  # fmt: skip
        done: list[SymbolDays] = []
        requests = 0
        origins = (url, *(other_origins(context.resources) if other_origins else ()))

        def one(stored_as: str) -> tuple[SymbolDays, int, list[str], str]:
            """One member's days: reuse, re-check, fetch, write (no Dagster events here)."""
            member = by_name[stored_as]
            previous = lake.read_days(table.name, stored_as, days).committed
            keep = {
                day
                for day in days
                if not forced(context)
                and dataset.reusable(day, today)
                and reusable(previous.get(day), dataset.env, origins, dataset.gap_confirmations)
            }
            again = recheck(context.resources, {d: previous[d] for d in keep}) if recheck else {}
            warnings = [f"{table.name} {stored_as} {day}: fetched again: {why}"
                        for day, why in sorted(again.items())]  # fmt: skip
            keep -= set(again)
            stale = [day for day in days if day not in keep]
            fetched = fetch(context.resources, member, stale) if stale else Fetched()
            metadata, refused = _write_fetched(
                lake, table, stored_as, fetched, stale, previous, base, fetch_started
            )
            for day in keep:
                metadata[day] = {"source": "reused", "http_requests": 0}
            for day, why in again.items():
                if day in metadata:
                    metadata[day]["fetched_again"] = why
            summary = (
                f"{table.name} {stored_as}: fetched {len(stale)} day(s) in "
                f"{fetched.requests} request(s), reused {len(keep)}, refused {len(refused)}"
            )
            return (
                SymbolDays(stored_as, metadata, blocked=refused),
                fetched.requests,
                warnings,
                summary,
            )

        for symbol_days, count, warnings, summary in map_members(
            one, list(by_name), dataset.symbol_workers
        ):
            for warning in warnings:
                context.log.warning(warning)
            context.log.info(summary)
            requests += count
            done.append(symbol_days)
        yield from record_days(
            context,
            table,
            lake,
            days,
            done,
            configured=list(by_name) if members else dataset.lake_symbols(table),
            workers=dataset.symbol_workers,
            range_metadata={
                "run_http_requests": requests,
                **(range_extras(context, lake, list(by_name), days) if range_extras else {}),
            },
            as_of=as_of,
        )

    return _asset
