"""The signal, whale-watch, heatmap and alert variables: declared and checked here, read by
``settings.load_settings`` (the one entry point), seen by the rest of the code as
:class:`SignalSettings`.

Thresholds keep the units the definitions use (``core/signals.py``): ratios, z-scores and
log changes as fractions (``0.005`` is 0.5 %), notionals in USD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from btc_assets.core.market_schema import SEVERITIES

Severity = Literal["low", "medium", "high"]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True)
class SignalSettings:
    """Signal thresholds (``core.signals.SignalThresholds`` has their definitions), the
    Hyperliquid whale watch, and who gets told what.

    ``alert_max_age_minutes``: an alert older than this when first seen by the notifier is
    never sent (a backfill of old days must not spam the chat); ``alert_min_severity`` is
    the least severe alert sent to Telegram.
    """

    cascade_ratio: float = 5.0
    cascade_ratio_high: float = 10.0
    cascade_min_move: float = 0.005
    cascade_min_oi_drop: float = 0.01
    funding_z: float = 3.0
    funding_z_high: float = 5.0
    oi_shock: float = 0.03
    oi_shock_high: float = 0.06
    whale_poll_seconds: int = 300
    whale_min_notional_usd: float = 1_000_000.0
    whale_high_notional_usd: float = 10_000_000.0
    alert_max_age_minutes: int = 360
    alert_min_severity: Severity = "high"


def _var(name: str, default: Any, expected: str) -> Any:
    return Field(default, validation_alias=name, description=expected)


_RATIO = "a number > 0 (a multiple of the trailing 24 h hourly mean of liquidations)"
_Z = "a number > 0 (standard deviations from the trailing 30-day mean)"
_LOG = "a fraction in (0, 1) (a log change over 1 h; 0.03 = 3 %)"


class SignalEnvironment(BaseSettings):
    """The variables as read from the environment (``settings.load_settings`` turns a
    validation error into one ``SettingsError`` line naming each bad variable)."""

    model_config = SettingsConfigDict(
        case_sensitive=True, str_strip_whitespace=True, extra="ignore", frozen=True
    )

    cascade_ratio: Positive = _var("BTC_ASSETS_SIGNAL_CASCADE_RATIO", 5.0, _RATIO)
    cascade_ratio_high: Positive = _var(
        "BTC_ASSETS_SIGNAL_CASCADE_RATIO_HIGH", 10.0, _RATIO + ", >= the medium one"
    )
    cascade_min_move: Fraction = _var(
        "BTC_ASSETS_SIGNAL_CASCADE_MIN_MOVE", 0.005,
        "a fraction in (0, 1) (the 1 h log price move a cascade needs; 0.005 = 0.5 %)",
    )  # fmt: skip
    cascade_min_oi_drop: Fraction = _var(
        "BTC_ASSETS_SIGNAL_CASCADE_MIN_OI_DROP", 0.01,
        "a fraction in (0, 1) (the 1 h log fall of open interest a cascade needs; 0.01 = 1 %)",
    )  # fmt: skip
    funding_z: Positive = _var("BTC_ASSETS_SIGNAL_FUNDING_Z", 3.0, _Z)
    funding_z_high: Positive = _var(
        "BTC_ASSETS_SIGNAL_FUNDING_Z_HIGH", 5.0, _Z + ", >= the medium one"
    )
    oi_shock: Fraction = _var("BTC_ASSETS_SIGNAL_OI_SHOCK", 0.03, _LOG)
    oi_shock_high: Fraction = _var(
        "BTC_ASSETS_SIGNAL_OI_SHOCK_HIGH", 0.06, _LOG + ", >= the medium one"
    )
    whale_poll_seconds: Annotated[int, Field(ge=30, le=86_400)] = _var(
        "BTC_ASSETS_WHALE_POLL_SECONDS", 300,
        "a whole number of seconds in [30, 86400] (how often the whale sensor asks CoinGlass)",
    )  # fmt: skip
    whale_min_notional_usd: Positive = _var(
        "BTC_ASSETS_WHALE_MIN_NOTIONAL_USD", 1_000_000.0,
        "a number of USD > 0 (a whale position at or above it becomes an alert)",
    )  # fmt: skip
    whale_high_notional_usd: Positive = _var(
        "BTC_ASSETS_WHALE_HIGH_NOTIONAL_USD", 10_000_000.0,
        "a number of USD > 0, >= the minimum (a whale alert at or above it is high severity)",
    )  # fmt: skip
    alert_max_age_minutes: Annotated[int, Field(gt=0)] = _var(
        "BTC_ASSETS_ALERT_MAX_AGE_MINUTES", 360,
        "a whole number of minutes > 0 (older alerts are never sent to Telegram)",
    )  # fmt: skip
    alert_min_severity: Annotated[Severity, BeforeValidator(_lower)] = _var(
        "BTC_ASSETS_ALERT_MIN_SEVERITY", "high",
        f"one of {', '.join(SEVERITIES)} (the least severe alert sent to Telegram)",
    )  # fmt: skip

    @field_validator("*", mode="before")
    @classmethod
    def _set_but_empty(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "":
            raise ValueError("set but empty (unset it for the default)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> SignalEnvironment:
        pairs = (
            ("BTC_ASSETS_SIGNAL_CASCADE_RATIO", self.cascade_ratio, self.cascade_ratio_high),
            ("BTC_ASSETS_SIGNAL_FUNDING_Z", self.funding_z, self.funding_z_high),
            ("BTC_ASSETS_SIGNAL_OI_SHOCK", self.oi_shock, self.oi_shock_high),
            ("BTC_ASSETS_WHALE_MIN_NOTIONAL_USD", self.whale_min_notional_usd,
             self.whale_high_notional_usd),
        )  # fmt: skip
        for name, medium, high in pairs:
            high_name = (
                name.replace("MIN_NOTIONAL", "HIGH_NOTIONAL")
                if "WHALE" in name
                else (f"{name}_HIGH")
            )
            if high < medium:
                raise ValueError(
                    f"{high_name}={high:g} is below {name}={medium:g}: the high threshold must "
                    "be at least the medium one"
                )
        return self

    def settings(self) -> SignalSettings:
        return SignalSettings(**self.model_dump())
