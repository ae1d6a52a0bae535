"""The account's Binance USD-M fees: one snapshot per perp symbol and UTC day.

``GET /fapi/v1/commissionRate`` answers only the current rate, so a snapshot belongs to the
day it was taken on, and only today's partition can be fetched (each run of today takes a
newer one). A past day keeps what it holds; a past day that holds nothing gets a row with
null fees and a note, no request: a past fee is never made up from today's.

Without ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` (live) the asset skips: one warning, and
today gets a null row with the reason unless it already holds a row. A refusal for a symbol
(bad key, bad signature, a clock outside recvWindow after one resync, an unknown symbol) is
a null row with Binance's message and our hint as note, and a warning; an earlier snapshot
of today is kept rather than replaced by nothing. When every symbol is refused the step
logs one ERROR and says so in the metadata, but does not fail: nothing reads this table, and
the live job would otherwise fail and alert every interval until the key is fixed. A
transient failure (outage, rate limit, malformed answer, after the client's retries) fails
the step before anything is written, as for every feed.

The ``quality`` check: ERROR (keeps the day out of the DuckDB view) for anything but one row
per symbol and day, a row with one rate only, a null row without a note, a rate beyond
``MAX_PLAUSIBLE_BPS`` or a file that does not verify; WARN for a day without fees (the note
says why); passed for a snapshot.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.common import LAKE_KINDS, SymbolDays, range_days, record_days, run_symbols
from btc_assets.core.fees import FeeRow, fee_figures_by_day, fee_frame, no_fee_row
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import EXCHANGE_FEES
from btc_assets.defs.checks import QUALITY, Verdict, table_key
from btc_assets.defs.partitions import DAILY, DAILY_BACKFILL
from btc_assets.defs.resources import vendor_pool
from btc_assets.lake import DayWrite, Lake
from btc_assets.vendors.binance_signed import (
    COMMISSION_RATE,
    KEY_SETTING,
    SECRET_SETTING,
    CommissionRate,
)
from btc_assets.vendors.errors import VendorError, VendorRefused

SOURCE = "commissionRate"  # where a stored value came from (the table's `source`)
NO_CREDENTIALS = f"credentials not set ({KEY_SETTING}, {SECRET_SETTING})"
KEY = table_key(EXCHANGE_FEES)


def no_snapshot_note(day: date) -> str:
    return f"no snapshot was taken on {day}: commissionRate returns only the current rate"


def refusal_note(err: VendorError) -> str:
    """What a refused symbol's row says: Binance's code and message, and what to fix. Built
    from the error's fields, not ``str()``: the request's parameters stay out of the lake."""
    return f"refused by Binance (code {err.code}): {err.message} -- {err.hint}"


@dataclass
class Plan:
    """What the run does for one symbol: the rows to write (with their provenance) per day,
    and every day's metadata (the days not in ``write`` are kept as stored)."""

    write: dict[date, tuple[FeeRow, dict[str, Any]]] = field(default_factory=dict)
    metadata: dict[date, dict[str, Any]] = field(default_factory=dict)


def _taken(written: DayWrite | None) -> bool:
    return written is not None and written.provenance.get("snapshot") is True


def _stored(lake: Lake, symbol: str, days: list[date], env: str) -> dict[date, DayWrite]:
    """The days that verify and were written in this env (live never keeps a sandbox day)."""
    committed = lake.read_days(EXCHANGE_FEES.name, symbol, days).committed
    return {d: w for d, w in committed.items() if w.provenance.get("env") == env}


def _now_in(day: date, now: datetime) -> datetime:
    """``now`` as a ts of partition ``day``, i.e. inside (D 00:00, D+1 00:00]: a fetch that
    started on D and answered a hair after midnight still belongs to D."""
    start, end = day_bounds(day)
    return min(max(now, start + timedelta(milliseconds=1)), end)


def plan_symbol(
    symbol: str,
    days: list[date],
    stored: Mapping[date, DayWrite],
    today: date,
    now: datetime,
    fetched: CommissionRate | VendorRefused | None,
    credentials: bool,
) -> Plan:
    """Decide every day of one symbol: keep, write a snapshot, or write a null row and why.

    ``fetched`` is today's answer (None when today is not in the run or nothing was asked).
    """
    plan = Plan()
    for day in days:
        previous = stored.get(day)
        if day != today:
            if previous is not None:
                plan.metadata[day] = {"snapshot": "kept" if _taken(previous) else "kept_none"}
                continue
            row = no_fee_row(symbol, day_bounds(day)[1], no_snapshot_note(day))
            plan.write[day] = (row, {"snapshot": False, "note": row[5]})
            plan.metadata[day] = {"snapshot": "none", "note": row[5]}
            continue
        if isinstance(fetched, CommissionRate):
            ts = _now_in(day, now)
            row = (symbol, ts, fetched.maker_bps, fetched.taker_bps, SOURCE, None)
            extra = {"snapshot": True, "rpi_bps": fetched.rpi_bps}
            plan.write[day] = (row, extra)
            # Text, not numbers: the basket's day metadata adds numbers up over the symbols.
            fees = f"maker {fetched.maker_bps} bps, taker {fetched.taker_bps} bps"
            plan.metadata[day] = {"snapshot": "taken", "fees": fees}
            continue
        # Nothing new for today. An earlier snapshot of today stays; so does any row of today
        # while the credentials are missing (the reason cannot have changed).
        if not credentials:
            note: str | None = NO_CREDENTIALS
        else:
            note = refusal_note(fetched) if fetched is not None else None
        if _taken(previous) or (previous is not None and not credentials) or note is None:
            plan.metadata[day] = {"snapshot": "kept" if _taken(previous) else "kept_none"}
            if note:
                plan.metadata[day]["not_refreshed"] = note
            continue
        row = no_fee_row(symbol, _now_in(day, now), note)
        plan.write[day] = (row, {"snapshot": False, "note": note})
        plan.metadata[day] = {"snapshot": "none", "note": note}
    return plan


def fee_verdicts(
    frame: pl.DataFrame, errors: Mapping[date, str | None]
) -> dict[str, dict[date, Verdict]]:
    """One symbol's ``quality`` verdict per day (the ``evaluate`` of ``record_days``)."""
    verdicts: dict[date, Verdict] = {}
    for row in fee_figures_by_day(frame.lazy(), list(errors)).iter_rows(named=True):
        day, error = row["day"], errors.get(row["day"])
        problems = [f"manifest: {error}"] if error else []
        if row["rows"] != 1 and not error:
            problems.append(f"{row['rows']} rows, expected 1 per symbol and day")
        problems += [f"{name}={row[name]}" for name in ("half_null", "unexplained",
                                                        "implausible") if row[name]]  # fmt: skip
        metadata = {k: row[k] for k in ("rows", "with_fees", "maker_bps", "taker_bps")}
        metadata["manifest_ok"] = error is None
        # A day without fees is reported, not blocked: it is a true record of that day.
        severity = dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN
        if problems:
            description = "; ".join(problems)
        elif not row["with_fees"]:
            description = f"no fee: {row['note']}"
        else:
            description = f"maker {row['maker_bps']} bps, taker {row['taker_bps']} bps"
        passed = not problems and bool(row["with_fees"])
        verdicts[day] = Verdict(passed, severity, description, metadata)
    return {QUALITY: verdicts}


def _fetch_today(
    context: dg.AssetExecutionContext, symbols: list[str]
) -> tuple[dict[str, CommissionRate | VendorRefused], int]:
    """Today's answer per symbol, refusals included; a transient failure raises."""
    answers: dict[str, CommissionRate | VendorRefused] = {}
    with context.resources.binance_account.client() as client:
        for symbol in symbols:
            try:
                answers[symbol] = client.commission_rate(symbol)
            except VendorRefused as exc:  # a definite "no": recorded, not retried
                answers[symbol] = exc
                context.log.warning(f"{EXCHANGE_FEES.name} {symbol}: {exc}")
            except VendorError as exc:
                exc.add_note(
                    f"{EXCHANGE_FEES.name}: not a refusal, so the step fails and nothing of "
                    "this run was written; the next run asks again"
                )
                raise
        return answers, client.request_count


@dg.asset(
    name=EXCHANGE_FEES.name,
    description=EXCHANGE_FEES.description,
    partitions_def=DAILY,
    backfill_policy=DAILY_BACKFILL,
    pool=vendor_pool({"binance_account"}),
    group_name="binance",
    kinds=LAKE_KINDS,
    required_resource_keys={"dataset", "binance_account"},
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY,
            asset=KEY,
            blocking=True,
            description="Per day. ERROR: not exactly one row per symbol, one rate without the "
            "other, a null row without a note, a rate beyond 100 bps, or a file that does not "
            "match its MANIFEST. WARN: no fee that day (the note says why).",
        )
    ],
)
def exchange_fees(context: dg.AssetExecutionContext) -> Iterator[Any]:
    days = range_days(context)
    dataset, account = context.resources.dataset, context.resources.binance_account
    symbols = list(dict.fromkeys(m.perp for m in run_symbols(context, dataset.symbols)))
    lake, today, now = dataset.lake(), clock.today_utc(), clock.now_utc()
    credentials = account.has_credentials
    answers: dict[str, CommissionRate | VendorRefused] = {}
    requests, range_metadata = 0, {}
    if today in days and not credentials:
        skipped = f"{NO_CREDENTIALS}: no fee was fetched"
        context.log.warning(
            f"{EXCHANGE_FEES.name}: {KEY_SETTING} and {SECRET_SETTING} are not both set; "
            f"{skipped}. Set both to take the daily fee snapshot."
        )
        range_metadata["skipped"] = skipped
    elif today in days:
        answers, requests = _fetch_today(context, symbols)
        refused = sorted(s for s, a in answers.items() if isinstance(a, VendorRefused))
        if refused:
            range_metadata["refused"] = ", ".join(refused)
        if symbols and len(refused) == len(symbols):
            context.log.error(
                f"{EXCHANGE_FEES.name}: Binance refused every symbol ({', '.join(refused)}); "
                f"no fee snapshot today. Check {KEY_SETTING}, {SECRET_SETTING} and the host "
                "clock (each row's note has Binance's answer)"
            )
    url = account.futures_base_url + COMMISSION_RATE
    base = {"env": dataset.env, "origin": url, "host": urlsplit(url).netloc,
            "endpoint": COMMISSION_RATE,
            "written_at": now.isoformat(timespec="seconds")}  # fmt: skip
    done: list[SymbolDays] = []
    for symbol in symbols:
        stored = _stored(lake, symbol, days, dataset.env)
        plan = plan_symbol(symbol, days, stored, today, now, answers.get(symbol), credentials)
        for day, (row, extra) in plan.write.items():
            provenance = {**base, "source": "vendor" if extra["snapshot"] else "none",
                          "closed": day_bounds(day)[1] <= now, **extra}  # fmt: skip
            lake.write_day(EXCHANGE_FEES.name, symbol, day, fee_frame([row]), provenance)
        if today in plan.metadata and "skipped" in range_metadata:
            plan.metadata[today]["skipped"] = range_metadata["skipped"]
        done.append(SymbolDays(symbol, plan.metadata))
    context.log.info(
        f"{EXCHANGE_FEES.name}: {len(symbols)} symbol(s) x {len(days)} day(s), "
        f"{requests} request(s)"
    )
    yield from record_days(
        context,
        EXCHANGE_FEES,
        lake,
        days,
        done,
        configured=dataset.lake_symbols(EXCHANGE_FEES),
        range_metadata={"run_http_requests": requests, **range_metadata},
        evaluate=lambda _symbol, frame, errors: fee_verdicts(frame, errors),
    )
