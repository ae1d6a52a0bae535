"""What the rest of the code sees of the settings: plain frozen dataclasses and the names
and defaults they are built from. No environment is read here (``settings.py`` does that);
tests build and ``replace`` these directly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from btc_assets.core.symbols import SymbolSpec, coin_of, symbol_spec
from btc_assets.core.tables import DEFAULT_INTERVALS, bar_intervals
from btc_assets.settings_forecast import ForecastSettings
from btc_assets.settings_signals import SignalSettings
from btc_assets.vendors.hosts import (
    LIVE_BINANCE_FUTURES_STREAM_URL as LIVE_FUTURES_STREAM_URL,
)
from btc_assets.vendors.hosts import (
    LIVE_BINANCE_SPOT_STREAM_URL as LIVE_SPOT_STREAM_URL,
)

Environment = Literal["sandbox", "live"]
# Each member in flight holds its range of rows (a year of 1m bars is ~250 MB at its peak),
# and beyond the cores threads add memory faster than speed on the vendor-free sandbox.
DEFAULT_SYMBOL_WORKERS = max(1, min(4, os.cpu_count() or 1))
Warehouse = Literal["duckdb", "bigquery"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The in-process sandbox answers on any host; these names make logs read well.
SANDBOX_BINANCE_SPOT_URL = "http://sandbox.binance.invalid"
SANDBOX_BINANCE_FUTURES_URL = "http://sandbox.fapi.binance.invalid"
SANDBOX_BINANCE_ARCHIVE_URL = "http://sandbox.data.binance.invalid"
SANDBOX_COINGLASS_URL = "http://sandbox.coinglass.invalid"
SANDBOX_TELEGRAM_URL = "http://sandbox.telegram.invalid"
SANDBOX_BINANCE_SPOT_STREAM_URL = "ws://sandbox.stream.binance.invalid"
SANDBOX_BINANCE_FUTURES_STREAM_URL = "ws://sandbox.fstream.binance.invalid/market"

SANDBOX_FAULTS_SETTING = "BTC_ASSETS_SANDBOX_FAULTS"
SYMBOLS_SETTING = "BTC_ASSETS_SYMBOLS"
LEGACY_SYMBOL_SETTING = "BTC_ASSETS_SYMBOL"  # the one-symbol form, before the basket
DEFAULT_SYMBOLS = "BTCUSDT"


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
class StreamSettings:
    """The websocket collector (``btc-assets stream``) and how the live job uses its staging.

    ``grace_seconds``: a candle closed longer ago than this must be staged for the live job
    to build today from the staging area instead of REST. ``trigger_minutes``: the live
    sensor asks for a run once every stream has moved this many closed minutes (or crossed
    a 15-minute boundary). ``max_connection_hours``: connections are replaced before
    Binance's 24 h limit.
    """

    spot_url: str = LIVE_SPOT_STREAM_URL
    futures_url: str = LIVE_FUTURES_STREAM_URL
    metrics_port: int = 9108
    trigger_minutes: int = 5
    grace_seconds: int = 30
    max_connection_hours: float = 23.0
    keep_days: int = 3
    sandbox_faults: str = ""


@dataclass(frozen=True)
class ModelSettings:
    """The training dataset and the baseline model (``assets/model.py``).

    ``window_days``: days of ``features_1h`` the dataset covers, ending with the newest day
    built (a launchpad config can override it, or set explicit dates). ``split``: the train,
    validation and test shares of the timeline. ``embargo_hours``: extra hours dropped
    between splits beyond the 1 h label purge. ``min_edge_pct``: how much lower than the best
    naive baseline's the model's validation RMSE must be for its check to pass.
    """

    name: str = "baseline_1h"
    window_days: int = 730
    split: tuple[float, float, float] = (0.70, 0.15, 0.15)
    embargo_hours: int = 0
    min_edge_pct: float = 1.0
    seed: int = 7


@dataclass(frozen=True)
class ServeSettings:
    """``btc-assets serve``: where it listens, and when it calls itself ready.

    ``max_feature_age_minutes``: ``/health/ready`` fails when the newest usable features row
    of any symbol closed longer ago. ``reload_seconds``: how often the model pointer and the
    newest features are looked at again (a new version is picked up without a restart).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_feature_age_minutes: int = 120
    reload_seconds: float = 5.0


@dataclass(frozen=True)
class Settings:
    env: Environment
    symbol: str
    start_date: date
    data_dir: Path
    tail_days: int
    binance_spot_base_url: str
    binance_futures_base_url: str
    binance_archive_base_url: str
    binance_archive: bool
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
    vendor_max_wait_seconds: float = 120.0
    gap_confirmations: int = 2
    # Basket members an asset works on at once (threads: vendor waits, zstd, sha256, fsync).
    symbol_workers: int = DEFAULT_SYMBOL_WORKERS
    # Bar intervals built from the 1m klines, shortest first; always holds 15m (bars_15m).
    bar_intervals: tuple[str, ...] = bar_intervals(DEFAULT_INTERVALS)
    # The basket (BTC_ASSETS_SYMBOLS). ``symbol`` above is its first perp, kept while the
    # callers move to ``symbols``.
    symbols: tuple[SymbolSpec, ...] = (symbol_spec(DEFAULT_SYMBOLS),)
    # How far back (days from now) the CoinGlass plan serves 15m history; None: no limit.
    coinglass_history_days: int | None = None
    # The sandbox's model of that limit, and the wait it adds to every request.
    sandbox_coinglass_history_days: int | None = None
    sandbox_latency_ms: int = 0
    # BTC_ASSETS_LAKE_URL: a folder or gs://bucket/prefix; None: data_dir/lake.
    lake_url: str | None = None
    # A range backfill of the daily assets runs as runs of at most this many days; None: one.
    backfill_days_per_run: int | None = None
    # The store vendor rate budgets count in, shared by every run (vendors/shared_budget.py);
    # None: a SQLite file under data_dir/state (rate_budget_store_url).
    rate_budget_url: str | None = None
    # The sandbox appends one line per request here (rate measurements); None: no log.
    sandbox_request_log: Path | None = None
    stream: StreamSettings = field(default_factory=StreamSettings)
    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    signals: SignalSettings = field(default_factory=SignalSettings)

    @property
    def lake_dir(self) -> Path:
        """The lake's folder when it is local (the default: BTC_ASSETS_DATA_DIR/lake)."""
        return (
            Path(self.lake_url)
            if self.lake_url and not self.lake_on_gcs
            else (self.data_dir / "lake")
        )

    @property
    def lake_on_gcs(self) -> bool:
        return bool(self.lake_url and self.lake_url.startswith("gs://"))

    @property
    def lake_location(self) -> Path | str:
        """Where the lake is: ``gs://bucket/prefix`` (BTC_ASSETS_LAKE_URL) or its folder."""
        return self.lake_url if self.lake_on_gcs and self.lake_url else self.lake_dir

    @property
    def stream_dir(self) -> Path:
        """The collector's staging area (``stream/staging.py`` owns its layout)."""
        return self.data_dir / "stream"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def rate_budget_store_url(self) -> str:
        """BTC_ASSETS_RATE_BUDGET_URL, or by default a SQLite file of this data folder."""
        default = f"sqlite://{self.data_dir / 'state' / 'rate_budgets.sqlite'}"
        return self.rate_budget_url or default

    @property
    def is_sandbox(self) -> bool:
        return self.env == "sandbox"

    @property
    def coin(self) -> str:
        return coin_of(self.symbol)
