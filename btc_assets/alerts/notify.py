"""Send the alert history's new, serious alerts to Telegram, each exactly once.

A sensor reads the recent rows of the alert tables (``ALERT_SCHEMA``: signals, whale alerts)
every minute and calls :func:`notify`. Of those rows, the due ones (:func:`select_due`) are
at or above ``min_severity`` and happened in the last ``max_age``: a backfill of old days
writes old alerts, and they must not page anyone now. Each due alert is claimed in the
:class:`~btc_assets.alerts.ledger.AlertLedger`, formatted (:func:`format_alert`), sent
through ``send`` (the sensor passes ``TelegramClient.send_message``) and marked sent; a send
that fails releases its claim, so the next tick tries again.

When the failure is about the destination rather than the message (a 429 beyond the
client's own flood-control budget, Telegram down, a wrong token or chat), every further send
would fail the same way, so the batch stops: the rest stay unclaimed for the next tick
instead of hammering Telegram. Messages are plain text (no parse mode), so no alert content
can break Telegram's markup parser; errors and texts pass through the vendors' redaction.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from btc_assets.alerts.ledger import AlertLedger
from btc_assets.core.market_schema import ALERT_SCHEMA, SEVERITIES, severity_rank
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorRateLimited,
    VendorUnavailable,
    redact,
)
from btc_assets.vendors.telegram import (
    TelegramChatMigrated,
    TelegramChatNotFound,
    TelegramForbidden,
    TelegramUnauthorized,
    truncate,
)

log = logging.getLogger("btc_assets.alerts")

DEFAULT_MAX_AGE = timedelta(hours=6)
DEFAULT_MIN_SEVERITY = "high"
MAX_TEXT = 3500  # UTF-16 units; Telegram's limit is 4096, keep room to spare
MAX_DETAIL_ITEMS = 8  # generic detail fields shown; the full JSON stays in the lake
# Failures of the channel, not of one message: the next send would fail alike.
STOPS_THE_BATCH = (
    VendorRateLimited,
    VendorUnavailable,
    VendorConfigError,
    TelegramUnauthorized,
    TelegramChatNotFound,
    TelegramChatMigrated,
    TelegramForbidden,
)
SEVERITY_MARKS = {"high": "🔴", "medium": "🟠", "low": "🟡"}
KIND_WORDS = {
    "liquidation_cascade": "liquidation cascade",
    "funding_anomaly": "funding-rate anomaly",
    "oi_shock": "open-interest shock",
    "whale_position": "whale position",
    "whale_alert": "whale trade",
}
# Detail fields never shown, whatever a producer put there.
_SECRET_FIELD = re.compile(r"(?i)token|secret|passw|api[_-]?key|chat_?id|credential|auth|sign")
# Whale fields (CoinGlass Hyperliquid names first, then plain ones a producer may use).
_WHALE_FIELDS = {
    "side": ("side",),
    "size": ("position_size", "size"),
    "entry": ("entry_price", "entry"),
    "leverage": ("leverage",),
    "liquidation": ("liq_price", "liquidation_price"),
    "notional": ("position_value_usd", "notional_usd", "notional"),
    "action": ("position_action", "action"),
    "wallet": ("user", "wallet", "address"),
    "coin": ("symbol", "coin"),
}
_ACTIONS = {1: "opened", 2: "closed", "1": "opened", "2": "closed"}


@dataclass
class NotifyResult:
    """What one call did. Keys are dedupe keys; error texts are redacted."""

    sent: list[str] = field(default_factory=list)
    skipped_already_sent: int = 0  # due, but the ledger says sent
    in_flight: int = 0  # due, but another sender holds a fresh claim
    too_old: int = 0  # severe enough, older than max_age (a backfill)
    in_future: int = 0  # ts after now: a clock skew or a bad row, never sent early
    below_severity: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    deferred: int = 0  # due, not tried: the batch stopped or reached max_sends
    stopped: str | None = None  # why the batch stopped early


def select_due(
    alerts: pl.DataFrame,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    min_severity: str = DEFAULT_MIN_SEVERITY,
) -> pl.DataFrame:
    """The alerts to send now: severity >= ``min_severity``, ``ts`` in ``(now - max_age,
    now]``, one row per ``dedupe_key`` (its earliest), sorted by ``ts`` then key."""
    classified = _classify(alerts, now, max_age, min_severity)
    return classified.filter(pl.col("_reason") == "due").drop("_reason")


def notify(
    alerts: pl.DataFrame,
    ledger: AlertLedger,
    send: Callable[[str], Any],
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    min_severity: str = DEFAULT_MIN_SEVERITY,
    *,
    max_sends: int | None = None,
) -> NotifyResult:
    """Send each due alert of ``alerts`` once (see the module docstring); ``send(text)``
    delivers one message and may return Telegram's Message (its ``message_id`` is kept).

    ``max_sends`` caps the messages tried in this call (the rest are ``deferred``, oldest
    first next time): the client spaces messages out to Telegram's per-chat rate, so a large
    batch would otherwise hold a sensor tick for minutes."""
    if max_sends is not None and max_sends < 1:
        raise ValueError(f"notify: max_sends must be at least 1, got {max_sends}")
    classified = _classify(alerts, now, max_age, min_severity)
    counts = dict(classified.group_by("_reason").len().iter_rows())
    result = NotifyResult(
        too_old=counts.get("too_old", 0),
        in_future=counts.get("in_future", 0),
        below_severity=counts.get("below_severity", 0),
    )
    due = classified.filter(pl.col("_reason") == "due")
    for row in due.iter_rows(named=True):
        key = row["dedupe_key"]
        tried = len(result.sent) + len(result.failed)
        if result.stopped is not None or (max_sends is not None and tried >= max_sends):
            result.deferred += 1
            continue
        if not ledger.claim(key, kind=row["kind"], symbol=row["symbol"], ts=row["ts"]):
            if ledger.status(key) == "sent":
                result.skipped_already_sent += 1
            else:
                result.in_flight += 1
            continue
        try:
            answer = send(format_alert(row))
        except Exception as err:
            ledger.release(key)
            result.failed[key] = _error_text(err)
            log.warning("alert %s not sent (claim released): %s", key, result.failed[key])
            if isinstance(err, STOPS_THE_BATCH):
                result.stopped = f"{type(err).__name__}: {result.failed[key]}"
            continue
        except BaseException:  # interrupted: let the next tick have it at once
            ledger.release(key)
            raise
        message_id = answer.get("message_id") if isinstance(answer, Mapping) else None
        ledger.mark_sent(key, message_id if isinstance(message_id, int) else None)
        result.sent.append(key)
        log.info("alert %s sent (%s %s %s)", key, row["severity"], row["symbol"], row["kind"])
    if result.stopped is not None:
        log.warning(
            "alert batch stopped after a channel failure; %d due alert(s) left for the next "
            "tick", result.deferred,
        )  # fmt: skip
    elif result.deferred:
        log.info("alert batch capped at %d message(s); %d left for the next tick",
                 max_sends, result.deferred)  # fmt: skip
    return result


def format_alert(row: Mapping[str, Any]) -> str:
    """One alert as a plain-text Telegram message: severity, symbol, kind in words, time
    (UTC), value against threshold, the details that matter (a whale's side, size, entry,
    leverage, liquidation price, notional) and the dedupe key. Never longer than
    :data:`MAX_TEXT`; detail fields that look like secrets are left out."""
    severity = str(row.get("severity") or "?")
    kind = str(row.get("kind") or "alert")
    head = f"{SEVERITY_MARKS.get(severity, '⚪')} {severity.upper()} · {row.get('symbol') or '?'}"
    lines = [f"{head} · {KIND_WORDS.get(kind, kind.replace('_', ' '))}"]
    ts = row.get("ts")
    if isinstance(ts, datetime):
        lines.append(ts.strftime("%Y-%m-%d %H:%M:%S UTC"))
    lines.append(f"value {_number(row.get('value'))} (threshold {_number(row.get('threshold'))})")
    details = _details(row)
    whale = _whale_line(details)
    if whale:
        lines.append(whale)
    lines += _detail_lines(details)
    lines.append(f"id: {_clip(str(row.get('dedupe_key') or '?'), 200)}")
    text, _ = truncate(redact("\n".join(lines)), MAX_TEXT)
    return text


# --- selection ----------------------------------------------------------------------------


def _classify(
    alerts: pl.DataFrame, now: datetime, max_age: timedelta, min_severity: str
) -> pl.DataFrame:
    """``alerts`` deduplicated and sorted, with ``_reason``: due, below_severity, in_future
    or too_old. Bad input raises naming the column or the alert."""
    if now.tzinfo is None:
        raise ValueError(f"notify: now={now!r} has no time zone; pass a UTC time")
    if max_age <= timedelta(0):
        raise ValueError(f"notify: max_age must be positive, got {max_age}")
    floor = severity_rank(min_severity)
    missing = [c for c in ALERT_SCHEMA if c not in alerts.columns]
    if missing:
        raise ValueError(f"notify: alerts lack column(s) {missing} of ALERT_SCHEMA")
    ts_type = alerts.schema["ts"]
    if not isinstance(ts_type, pl.Datetime) or ts_type.time_zone is None:
        raise ValueError(f"notify: alerts column 'ts' is {ts_type}, expected a UTC Datetime")
    unkeyed = alerts.filter(pl.col("dedupe_key").is_null() | (pl.col("dedupe_key") == ""))
    if unkeyed.height:
        first = unkeyed.row(0, named=True)
        raise ValueError(
            f"notify: {unkeyed.height} alert(s) without dedupe_key, first {first['kind']} "
            f"{first['symbol']} at {first['ts']}"
        )
    unknown = alerts.filter(~pl.col("severity").is_in(SEVERITIES) | pl.col("severity").is_null())
    if unknown.height:
        first = unknown.row(0, named=True)
        raise ValueError(
            f"notify: alert {first['dedupe_key']} has severity {first['severity']!r}; "
            f"expected one of {list(SEVERITIES)}"
        )
    ranks = {name: severity_rank(name) for name in SEVERITIES}
    ts = pl.col("ts").dt.convert_time_zone("UTC")
    return (
        alerts.with_columns(ts.alias("ts"))
        .sort(["ts", "dedupe_key"], nulls_last=True, maintain_order=True)
        .unique(subset="dedupe_key", keep="first", maintain_order=True)
        .with_columns(
            pl.when(pl.col("severity").replace_strict(ranks, return_dtype=pl.Int8) < floor)
            .then(pl.lit("below_severity"))
            .when(pl.col("ts") > now)
            .then(pl.lit("in_future"))
            .when(pl.col("ts").is_null() | (pl.col("ts") <= now - max_age))
            .then(pl.lit("too_old"))
            .otherwise(pl.lit("due"))
            .alias("_reason")
        )
    )


# --- formatting ---------------------------------------------------------------------------


def _details(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("details")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        log.warning("alert %s: details are not JSON; sent without them", row.get("dedupe_key"))
        return {}
    if not isinstance(parsed, dict):
        log.warning("alert %s: details are not a JSON object; sent without them",
                    row.get("dedupe_key"))  # fmt: skip
        return {}
    return {k: v for k, v in parsed.items() if not _SECRET_FIELD.search(str(k))}


def _pick(details: dict[str, Any], name: str) -> Any:
    """The first of the whale field ``name``'s spellings present in ``details``; removed so
    the generic lines do not repeat it."""
    for spelling in _WHALE_FIELDS[name]:
        if details.get(spelling) is not None:
            return details.pop(spelling)
    return None


def _whale_line(details: dict[str, Any]) -> str:
    whale_names = {s for name in ("size", "entry", "liquidation", "notional")
                   for s in _WHALE_FIELDS[name]}  # fmt: skip
    if not whale_names & details.keys():
        return ""
    side, size = _pick(details, "side"), _as_float(_pick(details, "size"))
    if side is None and size is not None and size != 0:
        side = "short" if size < 0 else "long"  # CoinGlass: a negative size is a short
    action = _pick(details, "action")
    coin = _pick(details, "coin")
    parts = [" ".join(str(p) for p in (_ACTIONS.get(action, action), side) if p is not None)]
    if size is not None:
        parts.append(f"size {_number(abs(size))}{f' {coin}' if coin else ''}")
    for name, label in (("entry", "entry"), ("liquidation", "liquidation price")):
        value = _pick(details, name)
        if value is not None:
            parts.append(f"{label} {_number(value)}")
    leverage = _pick(details, "leverage")
    if leverage is not None:
        parts.append(f"leverage {_number(leverage)}x")
    notional = _pick(details, "notional")
    if notional is not None:
        parts.append(f"notional ${_number(notional)}")
    wallet = _pick(details, "wallet")
    if isinstance(wallet, str) and wallet:
        parts.append(f"wallet {wallet[:6]}…{wallet[-4:]}" if len(wallet) > 12 else wallet)
    return " · ".join(p for p in parts if p)


def _detail_lines(details: dict[str, Any]) -> list[str]:
    shown = sorted(details.items())[:MAX_DETAIL_ITEMS]
    lines = [f"{_clip(str(k), 40)}: {_clip(_value_text(v), 80)}" for k, v in shown]
    if len(details) > MAX_DETAIL_ITEMS:
        lines.append(f"(+{len(details) - MAX_DETAIL_ITEMS} more in the alert's details)")
    return lines


def _value_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(value: Any) -> str:
    """Readable at a glance: 7.40M, 61,234.5, 3.42, 0.0123."""
    number = _as_float(value)
    if number is None:
        return "n/a" if value is None else _clip(str(value), 40)
    size = abs(number)
    if size >= 1e9:
        return f"{number / 1e9:.2f}B"
    if size >= 1e6:
        return f"{number / 1e6:.2f}M"
    if size >= 1000:
        return f"{number:,.2f}".rstrip("0").rstrip(".")
    return f"{number:.4g}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(err: BaseException) -> str:
    """The error as the result and the log show it: redacted, one line, bounded."""
    text = " ".join(redact(str(err) or type(err).__name__).split())
    return _clip(text, 500)
