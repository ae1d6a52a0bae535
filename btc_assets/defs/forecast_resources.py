"""Resources of the forecasting sources: CoinAPI, FRED, Alpha Vantage, CryptoQuant.

Each holds its vendor's configuration, its key from ``dg.EnvVar`` in live (None when the
variable is unset: the feed then records its days as not served, naming the variable,
instead of failing every run), and builds the plain client. The sandbox is chosen by
transport, as for Binance and CoinGlass.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from btc_assets.core.forecast_schema import JoinedSeries
from btc_assets.defs.resources import SandboxResource, shared_budget_store
from btc_assets.settings_forecast import ForecastSettings, SeriesSetting, metric_of
from btc_assets.vendors.alphavantage import AlphaVantageClient
from btc_assets.vendors.coinapi import CoinApiClient
from btc_assets.vendors.cryptoquant import CryptoQuantClient, Metric
from btc_assets.vendors.daily_budget import DailyBudget
from btc_assets.vendors.fred import FredClient


class _VendorResource(dg.ConfigurableResource):
    base_url: str
    api_key: str | None = None
    timeout_seconds: float = 10.0
    max_retries: int = 5
    max_wait_seconds: float = 120.0  # one request's retries, wire time plus waits
    # Where the per-minute counts live, shared by every run (memory://: this process only).
    rate_budget_url: str = "memory://"
    sandbox: SandboxResource

    @property
    def has_key(self) -> bool:
        return bool((self.api_key or "").strip())


class CoinApiResource(_VendorResource):
    """CoinAPI. The key comes only from ``COINAPI_API_KEY``."""

    key_setting: str = "COINAPI_API_KEY"

    def client(self) -> CoinApiClient:
        return CoinApiClient(
            self.base_url, self.api_key, transport=self.sandbox.transport(),
            timeout=self.timeout_seconds, max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
        )  # fmt: skip


class FredResource(_VendorResource):
    """FRED. The key comes only from ``FRED_API_KEY``."""

    key_setting: str = "FRED_API_KEY"

    def client(self) -> FredClient:
        return FredClient(
            self.base_url, self.api_key, transport=self.sandbox.transport(),
            timeout=self.timeout_seconds, max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
            budget_store=shared_budget_store(self.rate_budget_url),
        )  # fmt: skip


class AlphaVantageResource(_VendorResource):
    """Alpha Vantage. The key comes only from ``ALPHAVANTAGE_API_KEY``. ``daily_limit``
    requests a day are shared by every process through ``budget_file``."""

    key_setting: str = "ALPHAVANTAGE_API_KEY"
    daily_limit: int = 25
    outputsize: str = "compact"
    budget_file: str | None = None
    requests_per_minute: int | None = 5

    def client(self) -> AlphaVantageClient:
        budget = DailyBudget(
            self.daily_limit,
            path=Path(self.budget_file) if self.budget_file else None,
            name="alphavantage",
        )
        return AlphaVantageClient(
            self.base_url, self.api_key, transport=self.sandbox.transport(),
            timeout=self.timeout_seconds, max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds, daily_budget=budget,
            outputsize=self.outputsize,  # type: ignore[arg-type]
            requests_per_minute=self.requests_per_minute,
            budget_store=shared_budget_store(self.rate_budget_url),
        )  # fmt: skip


class CryptoQuantResource(_VendorResource):
    """CryptoQuant. The token comes only from ``CRYPTOQUANT_API_KEY``."""

    key_setting: str = "CRYPTOQUANT_API_KEY"
    exchange: str = "all_exchange"

    def client(self) -> CryptoQuantClient:
        return CryptoQuantClient(
            self.base_url, self.api_key, transport=self.sandbox.transport(),
            timeout=self.timeout_seconds, max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
            budget_store=shared_budget_store(self.rate_budget_url),
        )  # fmt: skip


class SeriesConfig(dg.Config):
    """One published series: its name and publication rules (``settings_forecast``)."""

    name: str
    delay_minutes: float
    max_staleness_hours: float


class ForecastResource(dg.ConfigurableResource):
    """Which published series are fetched and joined, with their publication rules, and
    the forecasting gates (the one place to tune them)."""

    fred: list[SeriesConfig]
    alphavantage: list[SeriesConfig]
    cryptoquant: list[SeriesConfig]
    cryptoquant_exchange: str = "all_exchange"
    # features_1h's sources check (WARN): a day whose share of null values of a series,
    # or of bars where CoinAPI disagrees with Binance, is above these.
    max_series_null_pct: float = 10.0
    max_coinapi_divergence_bp: float = 10.0
    max_coinapi_divergent_pct: float = 1.0
    monitoring_days: int = 30  # the window of the JSON monitoring summaries

    def settings(self) -> ForecastSettings:
        def setting(c: SeriesConfig) -> SeriesSetting:
            return SeriesSetting(
                c.name, timedelta(minutes=c.delay_minutes), timedelta(hours=c.max_staleness_hours)
            )

        return ForecastSettings(
            fred_series=tuple(setting(c) for c in self.fred),
            alphavantage_symbols=tuple(setting(c) for c in self.alphavantage),
            cryptoquant_fields=tuple(setting(c) for c in self.cryptoquant),
            cryptoquant_exchange=self.cryptoquant_exchange,
        )

    def fred_series(self) -> tuple[SeriesSetting, ...]:
        return self.settings().fred_series

    def alphavantage_series(self) -> tuple[SeriesSetting, ...]:
        return self.settings().alphavantage_symbols

    def cryptoquant_member(self) -> CryptoQuantMember:
        return CryptoQuantMember(self.settings())

    def joined_series(self) -> tuple[JoinedSeries, ...]:
        return self.settings().joined_series()


class CryptoQuantMember:
    """What the CryptoQuant feed fetches: each endpoint of the configured fields, with the
    latest delay among its fields (every field of an endpoint comes in one answer)."""

    def __init__(self, settings: ForecastSettings) -> None:
        delays: dict[Metric, SeriesSetting] = {}
        for s in settings.cryptoquant_fields:
            metric = metric_of(s.name)
            if metric not in delays or s.delay > delays[metric].delay:
                delays[metric] = s
        self.metrics: list[tuple[Metric, SeriesSetting]] = [
            (m, delays[m]) for m in settings.cryptoquant_metrics()
        ]


def forecast_resource(settings: ForecastSettings) -> ForecastResource:
    def config(s: SeriesSetting) -> SeriesConfig:
        return SeriesConfig(
            name=s.name,
            delay_minutes=s.delay.total_seconds() / 60,
            max_staleness_hours=s.max_staleness.total_seconds() / 3600,
        )

    return ForecastResource(
        fred=[config(s) for s in settings.fred_series],
        alphavantage=[config(s) for s in settings.alphavantage_symbols],
        cryptoquant=[config(s) for s in settings.cryptoquant_fields],
        cryptoquant_exchange=settings.cryptoquant_exchange,
    )
