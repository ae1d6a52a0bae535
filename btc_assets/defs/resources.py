"""Dagster resources: configuration in, plain clients out.

Vendor clients know nothing of Dagster; these resources hold their configuration (secrets
through ``dg.EnvVar`` when a vendor needs them) and build them. The sandbox is chosen here,
by transport, so no client or asset branches on it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from urllib.parse import urlsplit

import dagster as dg
import httpx
from pydantic import Field

from btc_assets.core.tables import Table
from btc_assets.lake import Lake
from btc_assets.settings import RATE_BUDGET_SETTING
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.binance_archive import ArchiveClient
from btc_assets.vendors.binance_signed import BinanceAccountClient
from btc_assets.vendors.coinglass import CoinGlassClient
from btc_assets.vendors.hosts import LIVE_BINANCE_ARCHIVE_URL
from btc_assets.vendors.shared_budget import WindowStore, open_window_store
from btc_assets.vendors.telegram import TelegramClient

# The Dagster concurrency pool of each vendor resource (limits: dagster.yaml). A feed's own
# vendor comes before Binance: every raw feed also asks Binance once, to check the basket.
VENDOR_POOLS = {
    "coinglass": "vendor_coinglass",
    "coinapi": "vendor_coinapi",
    "fred": "vendor_fred",
    "alphavantage": "vendor_alphavantage",
    "cryptoquant": "vendor_cryptoquant",
    "binance": "vendor_binance",
    "binance_account": "vendor_binance",  # the same fapi host and weight count
    "telegram": "vendor_telegram",
}


def vendor_pool(resource_keys: Iterable[str]) -> str | None:
    """The pool of the vendor an asset mostly calls, from the resources it requires."""
    keys = set(resource_keys)
    return next((pool for key, pool in VENDOR_POOLS.items() if key in keys), None)


@functools.cache
def shared_budget_store(url: str) -> WindowStore | None:
    """One store per URL and process: every client of a step shares its connection."""
    return open_window_store(url)


def rate_budget_config(url: str) -> str | dg.EnvVar:
    """What the resources are configured with: the URL itself, unless it holds a password,
    which must not show in the UI's resource config: then the variable it came from."""
    return dg.EnvVar(RATE_BUDGET_SETTING) if urlsplit(url).password else url


class SymbolConfig(dg.Config):
    """One basket member: its USD-M perpetual, its spot pair and its CoinGlass names."""

    perp: str  # the member's name everywhere but in spot tables, e.g. 1000PEPEUSDT
    # Its spot pair, the name spot tables store it under (1000PEPEUSDT's is PEPEUSDT); None
    # for a perp without one (BTCDOMUSDT): it has no spot tables, its spot inputs are empty.
    spot: str | None
    coin: str  # CoinGlass coin-level endpoints (OI, funding, aggregated volumes), e.g. PEPE
    coinglass_pair: str  # CoinGlass pair endpoints (price, pair taker volume)

    def lake_symbol(self, table: Table) -> str | None:
        return self.spot if table.market == "spot" else self.perp


class DatasetResource(dg.ConfigurableResource):
    """Where the dataset lives and what it covers."""

    lake_root: str
    reports_root: str
    symbols: list[SymbolConfig]
    env: str = "sandbox"  # recorded with every day written; days of another env are not read
    tail_days: int = 2
    # An incomplete day is reused once this many re-fetches returned the very same data.
    gap_confirmations: int = 2
    symbol_workers: int = 1  # basket members an asset works on at once (settings: by cores)
    # The stream collector's staging area: today's 1m klines come from it when it is whole.
    stream_root: str | None = None
    stream_grace_seconds: int = 30  # a candle closed this long ago must be staged
    # published table -> the series it stores (FRED ids, tickers, the CryptoQuant asset)
    series: dict[str, list[str]] = Field(default_factory=dict)

    def lake(self) -> Lake:
        return Lake(self.lake_root)

    def lake_symbols(self, table: Table) -> list[str]:
        """The names ``table`` stores: the basket's, in basket order, once each; a
        published table's series."""
        if table.published:
            return list(self.series.get(table.name, []))
        names = (s.lake_symbol(table) for s in self.symbols)
        return list(dict.fromkeys(n for n in names if n is not None))

    def reusable(self, day: date, today: date) -> bool:
        """Days inside the tail window are always re-fetched: vendors revise recent data."""
        return (today - day).days > self.tail_days


class SandboxResource(dg.ConfigurableResource):
    """The offline vendor: when enabled, every vendor client talks to it in-process."""

    enabled: bool = False
    seed: int = 7
    faults: str = ""  # JSON fault plan, see btc_assets.sandbox.faults
    # The CoinGlass plan's 15m history depth the sandbox models (None: unlimited).
    coinglass_history_days: int | None = None
    latency_ms: int = 0  # waited before every sandbox answer, like a network round trip
    # A file every request is appended to ("epoch host path pid"), for rate measurements.
    request_log: str | None = None

    def transport(self) -> httpx.BaseTransport | None:
        if not self.enabled:
            return None
        from btc_assets.sandbox.transport import SandboxTransport

        return SandboxTransport(
            seed=self.seed,
            faults=self.faults,
            coinglass_history_days=self.coinglass_history_days,
            latency_seconds=self.latency_ms / 1000,
            request_log=self.request_log,
        )


class BinanceResource(dg.ConfigurableResource):
    spot_base_url: str
    futures_base_url: str
    archive_base_url: str = LIVE_BINANCE_ARCHIVE_URL
    use_archive: bool = True  # history from data.binance.vision; REST for the tail
    timeout_seconds: float = 10.0
    max_retries: int = 5
    max_wait_seconds: float = 120.0  # one request's retries, wire time plus waits
    spot_weight_limit: int = 6000
    futures_weight_limit: int = 2400
    # Where the weight counts live, shared by every run (memory://: this process only).
    rate_budget_url: str = "memory://"
    sandbox: SandboxResource

    def client(self) -> BinanceClient:
        return BinanceClient(
            spot_base_url=self.spot_base_url,
            futures_base_url=self.futures_base_url,
            transport=self.sandbox.transport(),
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
            spot_weight_limit=self.spot_weight_limit,
            futures_weight_limit=self.futures_weight_limit,
            budget_store=shared_budget_store(self.rate_budget_url),
        )

    def archive_client(self) -> ArchiveClient:
        return ArchiveClient(
            self.archive_base_url,
            transport=self.sandbox.transport(),
            max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
        )


class BinanceAccountResource(dg.ConfigurableResource):
    """Binance's signed USD-M endpoints (the account's fees). Key and secret come only from
    ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` (``dg.EnvVar``) in live; None when unset, and
    the assets that need them skip with a warning instead of failing the run."""

    futures_base_url: str
    api_key: str | None = None
    api_secret: str | None = None
    recv_window_ms: int = 5000
    timeout_seconds: float = 10.0
    max_retries: int = 5
    max_wait_seconds: float = 120.0  # one request's retries, wire time plus waits
    rate_budget_url: str = "memory://"  # the fapi weight count BinanceResource shares
    sandbox: SandboxResource

    @property
    def has_credentials(self) -> bool:
        return bool((self.api_key or "").strip() and (self.api_secret or "").strip())

    def client(self) -> BinanceAccountClient:
        return BinanceAccountClient(
            self.futures_base_url,
            self.api_key,
            self.api_secret,
            transport=self.sandbox.transport(),
            recv_window_ms=self.recv_window_ms,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
            budget_store=shared_budget_store(self.rate_budget_url),
        )


class CoinGlassResource(dg.ConfigurableResource):
    """CoinGlass v4. The key comes only from ``COINGLASS_API_KEY`` (``dg.EnvVar``) in live."""

    base_url: str
    api_key: str | None = None
    exchange: str = "Binance"
    exchange_list: str = "Binance,OKX,Bybit"
    requests_per_minute: int = 300
    timeout_seconds: float = 10.0
    max_retries: int = 5
    max_wait_seconds: float = 120.0  # one request's retries, wire time plus waits
    debug: bool = False
    # The plan's 15m history depth in days (None: unlimited); older bars are not asked for.
    history_days: int | None = None
    rate_budget_url: str = "memory://"  # the requests-per-minute count, shared by every run
    sandbox: SandboxResource

    def client(self) -> CoinGlassClient:
        return CoinGlassClient(
            self.base_url,
            self.api_key,
            transport=self.sandbox.transport(),
            requests_per_minute=self.requests_per_minute,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            max_wait_seconds=self.max_wait_seconds,
            debug=self.debug,
            history_days=self.history_days,
            budget_store=shared_budget_store(self.rate_budget_url),
        )


class QualityGatesResource(dg.ConfigurableResource):
    """The feature table's gates and the QA report window: the one place to tune them."""

    max_gap_pct: float = 0.5  # missing bars, % of expected per day
    max_imputed_pct: float = 5.0  # filled values, % of the day's bars, per feature
    warmup_days: int = 30  # look-back windows fill up after this many days from the start
    price_tolerance_bp: float = 5.0  # CoinGlass close vs Binance perp close
    qa_report_days: int = 180


class TelegramResource(dg.ConfigurableResource):
    """Alert delivery. Token and chat come only from ``TELEGRAM_BOT_TOKEN`` /
    ``TELEGRAM_CHAT_ID`` (``dg.EnvVar``) in live; the token is never logged."""

    base_url: str
    token: str | None = None
    chat_id: str | None = None
    sandbox: SandboxResource

    def client(self) -> TelegramClient:
        return TelegramClient(
            self.base_url, self.token, self.chat_id, transport=self.sandbox.transport()
        )
