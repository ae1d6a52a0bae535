"""Telegram alerts: the notifier that sends new, serious alerts once, and the ledger that
remembers what was sent (no Dagster; the sensor in ``defs`` calls :func:`notify`)."""

from btc_assets.alerts.ledger import AlertLedger, LedgerError
from btc_assets.alerts.notify import (
    DEFAULT_MAX_AGE,
    DEFAULT_MIN_SEVERITY,
    NotifyResult,
    format_alert,
    notify,
    select_due,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MIN_SEVERITY",
    "AlertLedger",
    "LedgerError",
    "NotifyResult",
    "format_alert",
    "notify",
    "select_due",
]
