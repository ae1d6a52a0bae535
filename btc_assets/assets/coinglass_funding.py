"""The funding feed: CoinGlass OI-weighted, else volume-weighted, else Binance settlements.

Each day comes from the first source that does not refuse it, and only a definite refusal
moves a day down the chain: ``VendorRefused`` (the plan does not serve the endpoint,
"Upgrade plan"), an HTTP 404, or no row at all for a day that has closed (no history there;
today's partial day may only lag behind, so it stays empty until the next refresh). A
missing or rejected key, and any transient failure that survived the client's retries (5xx,
timeouts, rate limits, a malformed answer), fail the step naming the endpoint: a source
that is down for a while must not be replaced silently.

On the Binance fallback a day stores what the CoinGlass rows would have been, one row per
15m bar close, from real settlements only: the latest Binance settlement at or before the
close while it is in force (``core.funding.settlements_on_bars``), ``funding_source =
"binance_settlement"``. Settlements are fetched from ``SETTLEMENT_LOOKBACK`` (24h) before
the day, so its first bar has the 00:00 settlement, although that row belongs to the day
before's partition, which does not exist on the first day of history. A bar past its
settlement's interval gets no row (``bars_without_settlement`` in the day's metadata); the
features then carry or null it like a missing CoinGlass bar. Storing the rate per bar,
rather than the settlements at their own times, lets a day stand alone and lets the
features read every source the same way. Each day's metadata says its ``funding_source``,
the refusals that led there (``fallback_reasons``) and the settlements it used
(``binance_settlements``).
"""

from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from btc_assets import clock
from btc_assets.assets.raw import Fetched, span_runs, split_days
from btc_assets.core.features import grid
from btc_assets.core.funding import SETTLEMENT_LOOKBACK, settlements_on_bars
from btc_assets.core.schema import (
    BINANCE_SETTLEMENT_SOURCE,
    COINGLASS_FUNDING_SCHEMA,
    TS,
    day_bounds,
    floor_to_grid,
)
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.coinglass import CoinGlassClient
from btc_assets.vendors.errors import VendorError, VendorRefused

BAR = timedelta(minutes=15)
PLACED_SCHEMA: dict[str, pl.DataType] = {**COINGLASS_FUNDING_SCHEMA, "settled_at": TS}
WEIGHTINGS = ("oi", "vol")
NOT_A_REFUSAL = (
    "coinglass_funding moves to its next source only on a definite refusal (plan, 404, no "
    "history); this failure is not one, so the step fails rather than replace the data"
)


def is_refusal(exc: VendorError) -> bool:
    """A definite "no" a fallback may act on. A 404 counts: the endpoint is not served
    (the HTTP layer still reports it as a plain ``VendorError``)."""
    return isinstance(exc, VendorRefused) or (type(exc) is VendorError and exc.status == 404)


def coinglass_funding(
    client: CoinGlassClient,
    weighting: str,
    member: Any,
    days: list[date],
    closed: datetime,
    fetched: Fetched,
    reasons: dict[date, list[str]],
) -> list[date]:
    """Fetch ``days`` from one CoinGlass series into ``fetched``; return the days it refused
    (their reasons added). ``closed`` is the last closed bar: a day that has closed and has
    no row is "no history there"; today's partial day may only lag, so it is kept empty."""
    refused: list[date] = []
    for span in span_runs(days):
        run = span.days
        try:
            frame = client.funding_history(member.perp, member.coin, span.start, span.end,
                                           weighting)  # fmt: skip
        except VendorError as exc:
            if not is_refusal(exc):
                exc.add_note(NOT_A_REFUSAL)
                raise
            for day in run:
                reasons[day].append(f"{weighting}-weight: {exc}")
            refused += run
            continue
        for day, rows in split_days(frame, run).items():
            if rows.height or day_bounds(day)[1] > closed:
                fetched.frames[day] = rows
            else:
                reasons[day].append(f"{weighting}-weight: no rows for the closed day {day}")
                refused.append(day)
    return refused


def outside_plan(client: CoinGlassClient, days: list[date]) -> dict[date, str]:
    """The days older than the plan's 15m history window, never asked for, each with why."""
    first = client.first_full_day()
    if first is None:
        return {}
    why = (
        f"outside the CoinGlass plan's 15m history (the last {client.history.days} days, "
        f"BTC_ASSETS_COINGLASS_HISTORY_DAYS: first whole day {first})"
    )
    return {day: why for day in days if day < first}


def binance_settlements_on_bars(
    binance: BinanceClient, symbol: str, start: datetime, closed: datetime
) -> pl.DataFrame:
    """``COINGLASS_FUNDING_SCHEMA`` rows plus ``settled_at`` (the settlement used) for the
    bars in (start, closed] that have a Binance settlement in force."""
    if closed <= start:  # no bar has closed yet: nothing to ask
        return pl.DataFrame(schema=PLACED_SCHEMA)
    settlements = binance.funding_rate(symbol, start - SETTLEMENT_LOOKBACK, closed)
    placed = settlements_on_bars(settlements.lazy(), grid(start, closed)).collect()
    return placed.select(
        pl.lit(symbol).alias("symbol"),
        "ts",
        "funding_rate",
        pl.lit(BINANCE_SETTLEMENT_SOURCE).alias("funding_source"),
        "settled_at",
    ).cast(PLACED_SCHEMA)


def _fallback_metadata(rows: pl.DataFrame, day: date, closed: datetime) -> dict[str, Any]:
    start, end = day_bounds(day)
    expected = max(0, (min(end, closed) - start) // BAR)
    used = rows["settled_at"].unique().sort().to_list()
    return {
        "binance_settlements": ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in used) or "none",
        "bars_without_settlement": expected - rows.height,
    }


def fetch_funding(resources: Any, member: Any, days: list[date]) -> Fetched:
    """Each day from the first source that does not refuse it: OI-weighted, volume-weighted,
    then Binance settlements on the bars. Only the days a source refused go to the next."""
    client = resources.coinglass.client()
    binance = resources.binance.client()
    closed = floor_to_grid(clock.now_utc(), BAR)
    fetched = Fetched()
    reasons: dict[date, list[str]] = {day: [] for day in days}
    # Days older than the plan's 15m history are not asked for: straight to Binance (asking
    # for a span that starts there would have CoinGlass refuse the whole span).
    outside = outside_plan(client, days)
    for day, why in outside.items():
        reasons[day].append(why)
    todo = sorted(d for d in days if d not in outside)
    for weighting in WEIGHTINGS:
        if todo:
            todo = coinglass_funding(client, weighting, member, todo, closed, fetched, reasons)
    todo = sorted([*todo, *outside])
    fallback: dict[date, dict[str, Any]] = {}
    for span in span_runs(todo):
        run = span.days
        placed = binance_settlements_on_bars(
            binance, member.perp, span.start, min(span.end, closed)
        )
        for day, rows in split_days(placed, run).items():
            fallback[day] = _fallback_metadata(rows, day, closed)
            fetched.frames[day] = rows.drop("settled_at")
    for day in days:
        rows = fetched.frames[day]
        if reasons[day]:  # served by a fallback: recorded, never reused as the real thing
            fetched.fallbacks[day] = "; ".join(reasons[day])
        fetched.day_metadata[day] = {
            "funding_source": ", ".join(rows["funding_source"].unique().sort()) or "none",
            "fallback_reasons": "; ".join(reasons[day]) or "none",
            **fallback.get(day, {}),
        }
    fetched.requests = client.request_count + binance.request_count
    return fetched
