"""The signal thresholds, the whale watch and the alert delivery rules: one resource each,
built from ``SignalSettings`` (``BTC_ASSETS_SIGNAL_*``, ``BTC_ASSETS_WHALE_*``,
``BTC_ASSETS_ALERT_*``), so the launchpad shows and can override them per run."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from btc_assets.alerts.ledger import AlertLedger
from btc_assets.core.signals import SignalThresholds
from btc_assets.settings_signals import SignalSettings


class SignalsResource(dg.ConfigurableResource):
    """Thresholds of ``signals`` (definitions in ``core/signals.py``)."""

    cascade_ratio: float = 5.0
    cascade_ratio_high: float = 10.0
    cascade_min_move: float = 0.005
    cascade_min_oi_drop: float = 0.01
    funding_z: float = 3.0
    funding_z_high: float = 5.0
    oi_shock: float = 0.03
    oi_shock_high: float = 0.06

    def thresholds(self) -> SignalThresholds:
        return SignalThresholds(**_named(self, type(self).model_fields))


class WhaleWatchResource(dg.ConfigurableResource):
    """Which Hyperliquid positions become alerts (USD notional)."""

    min_notional_usd: float = 1_000_000.0
    high_notional_usd: float = 10_000_000.0


class AlertDeliveryResource(dg.ConfigurableResource):
    """What the notifier sends and where it remembers what it sent (``ledger_path``, one
    SQLite file per env under the data folder's ``state/``)."""

    ledger_path: str
    max_age_minutes: int = 360
    min_severity: str = "high"

    @property
    def max_age(self) -> timedelta:
        return timedelta(minutes=self.max_age_minutes)

    def ledger(self) -> AlertLedger:
        return AlertLedger(Path(self.ledger_path))


def signals_resource(settings: SignalSettings) -> SignalsResource:
    return SignalsResource(**_named(settings, SignalsResource.model_fields))


def _named(source: object, names: Iterable[str]) -> dict[str, Any]:
    """The thresholds go by the same names in the settings, the resource and the core."""
    return {name: getattr(source, name) for name in names}


def whale_watch_resource(settings: SignalSettings) -> WhaleWatchResource:
    return WhaleWatchResource(
        min_notional_usd=settings.whale_min_notional_usd,
        high_notional_usd=settings.whale_high_notional_usd,
    )


def alert_delivery_resource(
    settings: SignalSettings, state_dir: Path, env: str
) -> AlertDeliveryResource:
    return AlertDeliveryResource(
        ledger_path=str(state_dir / f"alerts_sent_{env}.sqlite"),
        max_age_minutes=settings.alert_max_age_minutes,
        min_severity=settings.alert_min_severity,
    )
