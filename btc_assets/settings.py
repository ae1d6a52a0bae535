"""The one place that reads non-secret environment variables.

Secrets (API keys, tokens) never pass through here: they are read by resources through
``dg.EnvVar`` so they stay out of run config, logs and metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from btc_assets import clock
from btc_assets.vendors.hosts import (
    LIVE_BINANCE_FUTURES_URL,
    LIVE_BINANCE_SPOT_URL,
    LIVE_COINGLASS_URL,
    LIVE_TELEGRAM_URL,
)

Environment = Literal["sandbox", "live"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The in-process sandbox answers on any host; these names make logs read well.
SANDBOX_BINANCE_SPOT_URL = "http://sandbox.binance.invalid"
SANDBOX_BINANCE_FUTURES_URL = "http://sandbox.fapi.binance.invalid"
SANDBOX_COINGLASS_URL = "http://sandbox.coinglass.invalid"
SANDBOX_TELEGRAM_URL = "http://sandbox.telegram.invalid"


def coin_of(symbol: str) -> str:
    """The coin-level symbol CoinGlass aggregates over: BTCUSDT -> BTC."""
    for quote in ("USDT", "USDC", "BUSD", "USD"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)]
    return symbol


class SettingsError(ValueError):
    """An environment variable has a value the project cannot use."""


Warehouse = Literal["duckdb", "bigquery"]


@dataclass(frozen=True)
class WarehouseSettings:
    """Where loads go: the embedded DuckDB catalog (default) or BigQuery, staged on GCS.

    Credentials are not here: Google's clients read them themselves (Application Default
    Credentials: GOOGLE_APPLICATION_CREDENTIALS or ``gcloud auth application-default login``).
    """

    kind: Warehouse = "duckdb"
    bigquery_project: str | None = None
    bigquery_dataset: str = "btc_assets"
    bigquery_location: str = "US"
    bigquery_api_endpoint: str | None = None  # a local emulator; unset in production
    gcs_bucket: str | None = None  # unset: load from the local day file, no staging
    gcs_prefix: str = "raw"


@dataclass(frozen=True)
class Settings:
    env: Environment
    symbol: str
    start_date: date
    data_dir: Path
    tail_days: int
    binance_spot_base_url: str
    binance_futures_base_url: str
    coinglass_base_url: str
    coinglass_exchange: str
    coinglass_exchange_list: str
    coinglass_requests_per_minute: int
    telegram_base_url: str
    tail_refresh_cron: str
    live_interval_seconds: int
    freshness_slack_minutes: int
    automation_on: bool
    sandbox_seed: int
    sandbox_faults: str
    warehouse: WarehouseSettings

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def is_sandbox(self) -> bool:
        return self.env == "sandbox"

    @property
    def coin(self) -> str:
        return coin_of(self.symbol)


def _get(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None else value.strip()


def _base_url(name: str, default: str) -> str:
    value = _get(name, default)
    if not value:
        raise SettingsError(f"{name} is set but empty: give the vendor's base URL, e.g. {default}")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def _whole(name: str, default: str) -> int:
    raw = _get(name, default)
    if not raw.isdigit():
        raise SettingsError(f"{name}={raw!r} is not a whole number")
    return int(raw)


def _warehouse_settings() -> WarehouseSettings:
    kind = _get("WAREHOUSE", "duckdb").lower()
    if kind not in ("duckdb", "bigquery"):
        raise SettingsError(f"WAREHOUSE={kind!r}: expected 'duckdb' or 'bigquery'")
    endpoint = _get("BIGQUERY_API_ENDPOINT", "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SettingsError(f"BIGQUERY_API_ENDPOINT={endpoint!r} is not an http(s) URL")
    # GOOGLE_CLOUD_PROJECT is the name Google's own tools use; BIGQUERY_PROJECT wins.
    project = _get("BIGQUERY_PROJECT", "") or _get("GOOGLE_CLOUD_PROJECT", "")
    return WarehouseSettings(
        kind=kind,  # type: ignore[arg-type]
        bigquery_project=project or None,
        bigquery_dataset=_get("BIGQUERY_DATASET", "btc_assets"),
        bigquery_location=_get("BIGQUERY_LOCATION", "US"),
        bigquery_api_endpoint=endpoint.rstrip("/") or None,
        gcs_bucket=_get("GCS_STAGING_BUCKET", "").removeprefix("gs://").strip("/") or None,
        gcs_prefix=_get("GCS_STAGING_PREFIX", "raw").strip("/"),
    )


def load_settings() -> Settings:
    env = _get("BTC_ASSETS_ENV", "sandbox")
    if env not in ("sandbox", "live"):
        raise SettingsError(f"BTC_ASSETS_ENV={env!r}: expected 'sandbox' or 'live'")
    live = env == "live"
    symbol = _get("BTC_ASSETS_SYMBOL", "BTCUSDT").upper()
    if not symbol.isalnum():
        raise SettingsError(f"BTC_ASSETS_SYMBOL={symbol!r} is not a Binance symbol")
    start_raw = _get("BTC_ASSETS_START_DATE", "2020-01-01")
    try:
        start_date = date.fromisoformat(start_raw)
    except ValueError as exc:
        raise SettingsError(f"BTC_ASSETS_START_DATE={start_raw!r} is not YYYY-MM-DD") from exc
    if start_date > clock.today_utc():
        raise SettingsError(f"BTC_ASSETS_START_DATE={start_raw} is in the future")
    tail_raw = _get("BTC_ASSETS_TAIL_DAYS", "2")
    if not tail_raw.isdigit():
        raise SettingsError(f"BTC_ASSETS_TAIL_DAYS={tail_raw!r} is not a whole number")
    return Settings(
        env=env,  # type: ignore[arg-type]
        symbol=symbol,
        start_date=start_date,
        data_dir=Path(_get("BTC_ASSETS_DATA_DIR", str(PROJECT_ROOT / "data"))).resolve(),
        tail_days=int(tail_raw),
        binance_spot_base_url=_base_url(
            "BINANCE_SPOT_BASE_URL", LIVE_BINANCE_SPOT_URL if live else SANDBOX_BINANCE_SPOT_URL
        ),
        binance_futures_base_url=_base_url(
            "BINANCE_FUTURES_BASE_URL",
            LIVE_BINANCE_FUTURES_URL if live else SANDBOX_BINANCE_FUTURES_URL,
        ),
        coinglass_base_url=_base_url(
            "COINGLASS_BASE_URL", LIVE_COINGLASS_URL if live else SANDBOX_COINGLASS_URL
        ),
        coinglass_exchange=_get("COINGLASS_EXCHANGE", "Binance"),
        coinglass_exchange_list=_get("COINGLASS_EXCHANGE_LIST", "Binance,OKX,Bybit"),
        # 15m history needs the Standard plan or above (300 requests/minute).
        coinglass_requests_per_minute=int(_get("COINGLASS_REQUESTS_PER_MINUTE", "300")),
        telegram_base_url=_base_url(
            "TELEGRAM_BASE_URL", LIVE_TELEGRAM_URL if live else SANDBOX_TELEGRAM_URL
        ),
        tail_refresh_cron=_get("BTC_ASSETS_TAIL_REFRESH_CRON", "30 0 * * *"),
        live_interval_seconds=_whole("BTC_ASSETS_LIVE_INTERVAL_SECONDS", "900"),
        freshness_slack_minutes=_whole("BTC_ASSETS_FRESHNESS_SLACK_MINUTES", "20"),
        automation_on=_get("BTC_ASSETS_AUTOMATION", "off").lower() in ("1", "on", "true", "yes"),
        sandbox_seed=int(_get("BTC_ASSETS_SANDBOX_SEED", "7")),
        sandbox_faults=_get("BTC_ASSETS_SANDBOX_FAULTS", ""),
        warehouse=_warehouse_settings(),
    )
