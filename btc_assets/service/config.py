"""What the service needs to run, as one plain value (``ops/serve.py`` builds it from the
settings; tests build it directly). Nothing here reads the environment or imports Dagster."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from btc_assets import clock
from btc_assets.core.tables import FEATURES_1H_NAME

# (symbol, days) -> the days of features_1h whose quality gate failed for that symbol, each
# with its reason. Built from the Dagster instance by ops/serve.py; the service only calls it.
Gate = Callable[[str, list[date]], Mapping[date, str]]
# (table, symbol, days) -> the same for any lake table (its asset key is the table name): the
# market-data routes ask it for the table they serve.
TableGate = Callable[[str, str, list[date]], Mapping[date, str]]


def open_gate(symbol: str, days: list[date]) -> dict[date, str]:
    """The gate when no Dagster instance is available: blocks nothing (said as "unchecked")."""
    return {}


@dataclass(frozen=True)
class ServiceConfig:
    """``gate`` None: no instance to ask, nothing is blocked and responses say
    ``"gate": "unchecked"``. ``now``: the clock ages are measured with (tests pin it).
    ``table_gate``: the same for every table the market-data routes serve (None: unchecked);
    its answers are kept ``reload_seconds``. ``max_replay_days``: the longest /replay range;
    ``max_alert_lookback_days``: how far back /signals and /whales/alerts may reach."""

    lake_root: Path | str  # a folder or gs://bucket/prefix
    model_name: str
    symbols: tuple[str, ...]
    env: str
    max_feature_age: timedelta = timedelta(minutes=120)
    reload_seconds: float = 5.0
    gate: Gate | None = None
    now: Callable[[], datetime] = field(default=clock.now_utc)
    features_table: str = FEATURES_1H_NAME
    # How many of the newest days present are looked at for a usable row, newest first.
    lookback_days: int = 2
    max_instances: int = 1000
    table_gate: TableGate | None = None
    max_replay_days: int = 92
    max_alert_lookback_days: int = 31

    @property
    def gate_state(self) -> str:
        return "unchecked" if self.gate is None else "checked"

    def gate_or_open(self) -> Gate:
        return open_gate if self.gate is None else self.gate

    @property
    def market_gate_state(self) -> str:
        return "unchecked" if self.table_gate is None else "checked"
