"""``whale_alerts``: Hyperliquid whale positions and events, as alerts, once each.

The whale endpoints answer "now" only, so the asset observes; it does not backfill. Run for
today's partition (the ``whale_watch`` sensor asks for one every
``BTC_ASSETS_WHALE_POLL_SECONDS``), it asks CoinGlass for the current positions and the
recent events, turns those at or above the notional threshold into alert rows
(``core/whales.py``) and adds the ones never seen before to today's day file of each basket
member. "Never seen" is checked against every stored day of the table, which must verify:
a day that does not is a failure naming its file (deduplicating against a file that cannot
be read would alert again on what it holds). A past day is never fetched: it keeps what
the watch saw then.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.common import (
    LAKE_KINDS,
    SymbolDays,
    range_days,
    record_days,
    run_symbols,
    table_key,
)
from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.tables import WHALE_ALERTS
from btc_assets.core.whales import whale_alert_rows
from btc_assets.defs import checks
from btc_assets.defs.market_resources import WhaleWatchResource
from btc_assets.defs.partitions import DAILY
from btc_assets.defs.resources import CoinGlassResource, DatasetResource, vendor_pool
from btc_assets.lake import Lake
from btc_assets.vendors.coinglass import HYPERLIQUID_WHALE_POSITION


class WhaleDedupeError(RuntimeError):
    """A stored day of whale alerts does not verify: what it holds cannot be deduplicated."""


@dg.asset(
    name=WHALE_ALERTS.name,
    description=WHALE_ALERTS.description,
    partitions_def=DAILY,
    pool=vendor_pool({"coinglass"}),
    group_name="whales",
    kinds=LAKE_KINDS,
    check_specs=[checks.quality_check_spec(table_key(WHALE_ALERTS))],
)
def whale_alerts(
    context: dg.AssetExecutionContext,
    dataset: DatasetResource,
    coinglass: CoinGlassResource,
    whale_watch: WhaleWatchResource,
) -> Iterator[Any]:
    lake, days = dataset.lake(), range_days(context)
    members = run_symbols(context, dataset.symbols)
    today = clock.today_utc()
    coins = {member.coin: member.perp for member in members}
    done = []
    range_metadata: dict[str, Any] = {}
    if today in days:
        seen = _stored_keys(lake, [m.perp for m in members])
        client = coinglass.client()
        seen_at = clock.now_utc()
        positions, events = client.whale_positions(), client.whale_alerts()
        rows = whale_alert_rows(
            positions, events, coins, seen_at,
            whale_watch.min_notional_usd, whale_watch.high_notional_usd,
        )  # fmt: skip
        new = rows.filter(~pl.col("dedupe_key").is_in(list(seen)))
        outside = sorted(
            (set(positions["coin"].to_list()) | set(events["coin"].to_list())) - set(coins)
        )
        range_metadata = {
            "positions": positions.height,
            "events": events.height,
            "new_alerts": new.height,
            "already_seen": rows.height - new.height,
            "coins_outside_basket": len(outside),
            "run_http_requests": client.request_count,
        }
        context.log.info(
            f"whale watch: {positions.height} position(s), {events.height} event(s); "
            f"{new.height} new alert(s), {rows.height - new.height} already seen"
        )
        for member in members:
            added = new.filter(pl.col("symbol") == member.perp)
            stored = lake.read_days(WHALE_ALERTS.name, member.perp, [today], ALERT_SCHEMA)
            frame = pl.concat([stored.frame.collect(), added]).sort("ts", "dedupe_key")
            provenance = {
                "env": dataset.env, "source": "vendor",
                "origin": coinglass.base_url + HYPERLIQUID_WHALE_POSITION,
                "fetched_at": seen_at.isoformat(timespec="seconds"), "closed": False,
                "rows": frame.height,
            }  # fmt: skip
            lake.write_day(WHALE_ALERTS.name, member.perp, today, frame, provenance)
            done.append(SymbolDays(member.perp, {today: {"new_alerts": added.height}}))
    past = [day for day in days if day != today]
    stored = {d for m in members for d in lake.days_present(WHALE_ALERTS.name, m.perp)}
    kept = [day for day in past if day in stored]
    if past:
        context.log.warning(
            f"whale_alerts: {len(past)} past day(s) not fetched (the whale endpoints answer "
            f"for now only): {len(kept)} stored day(s) kept as the watch saw them, "
            f"{len(past) - len(kept)} never watched left unrecorded"
        )
    note = {"source": "kept", "not_fetched": "the whale feed answers for now only"}
    if not done:
        done = [SymbolDays(m.perp, {}) for m in members]
    for sd in done:
        sd.metadata = {**dict.fromkeys(kept, note), **sd.metadata}
    recorded = sorted({*kept, *([today] if today in days else [])})
    if not recorded:
        raise dg.Failure(
            f"whale_alerts {days[0]}..{days[-1]}: none of these days was ever watched and "
            "the whale endpoints answer for now only; materialize today's partition (the "
            "whale_watch sensor does) to start the history"
        )
    yield from record_days(
        context, WHALE_ALERTS, lake, recorded, done,
        configured=dataset.lake_symbols(WHALE_ALERTS), range_metadata=range_metadata,
    )  # fmt: skip


def _stored_keys(lake: Lake, symbols: list[str]) -> set[str]:
    """Every dedupe key already stored, of every day; a day that does not verify fails."""
    keys: set[str] = set()
    for symbol in symbols:
        days = lake.days_present(WHALE_ALERTS.name, symbol)
        read = lake.read_days(WHALE_ALERTS.name, symbol, days, ALERT_SCHEMA)
        if read.errors:
            day, why = next(iter(sorted(read.errors.items())))
            raise WhaleDedupeError(
                f"{WHALE_ALERTS.name} {symbol} {day} does not verify ({why}); the alerts it "
                "holds cannot be deduplicated, so nothing new is stored until it is repaired "
                "or removed (btc-assets verify lists it)"
            )
        keys.update(read.frame.select("dedupe_key").collect()["dedupe_key"].to_list())
    return keys
