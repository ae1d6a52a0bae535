"""Hyperliquid whale positions and whale-alert events as alert-history rows.

A position is identified by ``(coin, user, side, create_time)``: the same position seen at
every poll, and its "open" event in the whale-alert feed, give one ``dedupe_key``
(``whale_position:...``), so it is alerted once. A "close" event is its own alert
(``whale_close:...``). The row's ``ts`` is when the watch first saw it (``seen_at``), so
a notifier's age limit measures how late the news is, not how old the position; the
position's own open time is in ``details.create_time``.

``value`` is the notional in USD; severity ``high`` at or above ``high_notional``, else
``medium`` at or above ``min_notional``; below it nothing. Only coins of the basket are kept
(``coins`` maps each to its perp); the others are counted by the caller.
Events carry no leverage: ``details.leverage`` is null with ``leverage_missing`` saying why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from btc_assets.core.market_schema import ALERT_SCHEMA

POSITION, CLOSE = "whale_position", "whale_close"


def _key(kind: str, coin: str, user: str, side: str, created: datetime) -> str:
    return f"{kind}:{coin}:{user.lower()}:{side}:{int(created.timestamp() * 1000)}"


def _round(value: Any) -> Any:
    return float(f"{value:.8g}") if isinstance(value, float) else value


def _details(row: Mapping[str, Any], fields: tuple[str, ...], **extra: Any) -> str:
    shown = {name: _round(row.get(name)) for name in fields}
    shown["create_time"] = row["create_time"].isoformat() if row.get("create_time") else None
    shown.update(extra)
    return json.dumps(shown, sort_keys=True, separators=(",", ":"))


_POSITION_FIELDS = ("coin", "user", "side", "position_size", "entry_price", "mark_price",
                    "liq_price", "leverage", "margin_mode", "position_value_usd",
                    "unrealized_pnl")  # fmt: skip
_EVENT_FIELDS = ("coin", "user", "side", "position_size", "entry_price", "liq_price",
                 "position_value_usd", "action")  # fmt: skip


def whale_alert_rows(
    positions: pl.DataFrame,
    events: pl.DataFrame,
    coins: Mapping[str, str],
    seen_at: datetime,
    min_notional: float,
    high_notional: float,
) -> pl.DataFrame:
    """Alert rows (ALERT_SCHEMA) of the positions and events at or above ``min_notional``
    whose coin is in ``coins``; one row per ``dedupe_key`` (a position beats its own open
    event: it carries the leverage)."""
    rows: dict[str, dict[str, Any]] = {}

    def add(row: Mapping[str, Any], kind: str, details: str) -> None:
        notional = row.get("position_value_usd")
        coin = row.get("coin")
        if coin not in coins or notional is None or notional < min_notional:
            return
        key = _key(kind, coin, row["user"], row["side"], row["create_time"])
        high = notional >= high_notional
        rows.setdefault(key, {
            "ts": seen_at, "symbol": coins[coin], "kind": kind,
            "severity": "high" if high else "medium", "value": float(notional),
            "threshold": float(high_notional if high else min_notional),
            "details": details, "dedupe_key": key,
        })  # fmt: skip

    for row in positions.iter_rows(named=True):
        add(row, POSITION, _details(row, _POSITION_FIELDS, source="whale-position"))
    for row in events.iter_rows(named=True):
        kind = CLOSE if row.get("action") == "close" else POSITION
        extra = {"source": "whale-alert", "leverage": None,
                 "leverage_missing": "the whale-alert feed does not give leverage"}  # fmt: skip
        add(row, kind, _details(row, _EVENT_FIELDS, **extra))
    frame = pl.DataFrame(list(rows.values()), schema=ALERT_SCHEMA)
    return frame.sort("symbol", "ts", "dedupe_key")
