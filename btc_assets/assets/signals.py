"""``signals``: liquidation cascades, funding anomalies and open-interest shocks over
``bars_15m``, one row per episode and severity reached, written to the alert history.

Definitions and thresholds: ``core/signals.py`` (thresholds from ``SignalsResource``). Every
statistic looks back only, by time, so a day's alerts are the same whether built alone or
inside a year-long backfill: the look-back comes through the gate, 32 days of ``bars_15m``
before the range (``SIGNAL_HISTORY``: the 30-day funding history, plus the episodes that
were already running when the range starts). A
blocked day of ``bars_15m`` blocks that symbol's signals day; a blocked look-back day is
left out, so the windows across it are short and nothing fires on a gap.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg

from btc_assets import clock
from btc_assets.assets.common import (
    LAKE_KINDS,
    SymbolDays,
    derived_provenance,
    range_days,
    record_days,
    run_symbols,
    table_key,
)
from btc_assets.assets.raw import split_days
from btc_assets.concurrency import map_members
from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.schema import conform, day_bounds
from btc_assets.core.signals import SIGNAL_HISTORY, SignalThresholds, detect_signals
from btc_assets.core.tables import FEATURES, SIGNALS
from btc_assets.defs import checks
from btc_assets.defs.day_gate import GatedRead, Input, gated_deps, read_gated
from btc_assets.defs.market_resources import SignalsResource
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL, DAILY_START
from btc_assets.defs.resources import DatasetResource
from btc_assets.lake import Lake

SOURCES = {"bars": Input(FEATURES, lookback_days=SIGNAL_HISTORY.days)}
BAR_COLUMNS = ("symbol", "ts", "close", "oi_now", "funding_now", "liq_long_usd", "liq_short_usd")


@dg.asset(
    name=SIGNALS.name,
    description=SIGNALS.description,
    partitions_def=DAILY,
    backfill_policy=DAILY_BACKFILL,
    group_name="signals",
    kinds=LAKE_KINDS,
    **gated_deps(SOURCES.values()),
    check_specs=[checks.quality_check_spec(table_key(SIGNALS))],
)
def signals(
    context: dg.AssetExecutionContext, dataset: DatasetResource, signal_thresholds: SignalsResource
) -> Iterator[Any]:
    lake, days = dataset.lake(), range_days(context)
    members = run_symbols(context, dataset.symbols)
    gated = read_gated(
        context, lake, members, dataset.env, SOURCES, days, DAILY_START, dataset.symbol_workers
    )
    thresholds = signal_thresholds.thresholds()
    perps = [member.perp for member in members]
    found = map_members(
        lambda perp: _build_symbol(lake, perp, gated[perp], dataset.env, thresholds),
        perps,
        dataset.symbol_workers,
    )
    done: list[SymbolDays] = []
    totals: Counter[str] = Counter()
    for perp, per_day in zip(perps, found, strict=True):
        read = gated[perp]
        for counts in per_day.values():
            totals.update(counts)
        done.append(
            SymbolDays(
                perp,
                {
                    day: {"source": "core.signals.detect_signals", **per_day[day]}
                    for day in read.days
                },
                blocked=read.blocked,
                excluded_lookback=read.excluded_lookback,
            )
        )
    context.log.info(
        "signals: " + (", ".join(f"{k} {n}" for k, n in sorted(totals.items())) or "none")
    )
    yield from record_days(
        context,
        SIGNALS,
        lake,
        days,
        done,
        configured=dataset.lake_symbols(SIGNALS),
        workers=dataset.symbol_workers,
        range_metadata={"alerts": dg.MetadataValue.json(dict(sorted(totals.items())))},
    )


def _build_symbol(
    lake: Lake, symbol: str, read: GatedRead, env: str, thresholds: SignalThresholds
) -> dict[date, dict[str, int]]:
    """Detect and write one symbol's signal days; per day, the count per kind/severity."""
    good = read.days
    if not good:
        return {}
    bars = read.frames["bars"].select(BAR_COLUMNS).collect()
    start, end = day_bounds(good[0])[0], day_bounds(good[-1])[1]
    alerts = detect_signals(bars, start, end, thresholds)
    frames = split_days(alerts, good)
    now = clock.now_utc()
    counts: dict[date, dict[str, int]] = {}
    for day in good:
        frame = conform(frames[day], ALERT_SCHEMA)
        still_open = day_bounds(day)[1] > now
        provenance = derived_provenance(env, [FEATURES], day, now if still_open else None)
        provenance["excluded_lookback_days"] = len(read.excluded_lookback.get(day, []))
        lake.write_day(SIGNALS.name, symbol, day, frame, provenance)
        counts[day] = {
            f"{kind}/{severity}": n
            for (kind, severity), n in Counter(
                zip(frame["kind"].to_list(), frame["severity"].to_list(), strict=True)
            ).items()
        }
    return counts
