"""The one place that reads non-secret environment variables, and checks every one of them.

Secrets (API keys, the Telegram token and chat id) never pass through here: they are read by
resources through ``dg.EnvVar`` so they stay out of run config, logs and metadata.

Each variable is declared once, in :class:`_Environment` (pydantic-settings): its name, type,
default and what it expects. ``load_settings()`` reads and checks them all before anything
uses one, and a bad value stops it with a :class:`SettingsError` on one line that names the
variable, the value and what is expected::

    COINGLASS_REQUESTS_PER_MINUTE='abc': expected a whole number > 0 (the CoinGlass plan's
    requests a minute)

The checks each kind of value gets are in ``settings_values.py``; the basket's syntax
(``BTC_ASSETS_SYMBOLS``) is ``core/symbols.py``'s. The rest of the code sees
:class:`Settings`, a plain frozen dataclass (tests ``replace`` it).
The sandbox fault plan's JSON is checked by the Dagster layer, which may load the sandbox
(``defs.definitions``); live mode never does.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    WebsocketUrl,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from btc_assets.core.bars import BINANCE_INTERVALS
from btc_assets.core.symbols import SymbolSpec, parse_symbols, symbol_spec
from btc_assets.core.symbols import coin_of as coin_of  # re-exported: assets import it here
from btc_assets.core.tables import DEFAULT_INTERVALS, FEATURE_INTERVAL, bar_intervals
from btc_assets.settings_forecast import (
    ALPHAVANTAGE_SYMBOLS_SETTING,
    CRYPTOQUANT_FIELDS_SETTING,
    DEFAULT_ALPHAVANTAGE_SYMBOLS,
    DEFAULT_CRYPTOQUANT_FIELDS,
    DEFAULT_FRED_SERIES,
    FRED_SERIES_SETTING,
    SANDBOX_ALPHAVANTAGE_URL,
    SANDBOX_COINAPI_URL,
    SANDBOX_CRYPTOQUANT_URL,
    SANDBOX_FRED_URL,
    ForecastSettings,
    parse_series,
)

# The dataclasses and names the rest of the code imports from here (settings_model.py).
from btc_assets.settings_model import (
    DEFAULT_SYMBOL_WORKERS,
    DEFAULT_SYMBOLS,
    LEGACY_SYMBOL_SETTING,
    PROJECT_ROOT,
    SANDBOX_BINANCE_ARCHIVE_URL,
    SANDBOX_BINANCE_FUTURES_STREAM_URL,
    SANDBOX_BINANCE_FUTURES_URL,
    SANDBOX_BINANCE_SPOT_STREAM_URL,
    SANDBOX_BINANCE_SPOT_URL,
    SANDBOX_COINGLASS_URL,
    SANDBOX_FAULTS_SETTING,
    SANDBOX_TELEGRAM_URL,
    SYMBOLS_SETTING,
    Environment,
    ModelSettings,
    ServeSettings,
    Settings,
    StreamSettings,
    Warehouse,
    WarehouseSettings,
)
from btc_assets.settings_signals import SignalEnvironment
from btc_assets.settings_values import (
    BucketName,
    Cron,
    FolderPrefix,
    LakeUrl,
    NameList,
    NonEmpty,
    OptionalDays,
    OptionalSymbol,
    OptionalText,
    OptionalUrl,
    PastDate,
    SymbolList,
    Url,
    WholeAboveZero,
    WholeFromZero,
    blank_is_none,
    lower,
)
from btc_assets.vendors.hosts import (
    LIVE_ALPHAVANTAGE_URL,
    LIVE_BINANCE_ARCHIVE_URL,
    LIVE_BINANCE_FUTURES_URL,
    LIVE_BINANCE_SPOT_URL,
    LIVE_COINAPI_URL,
    LIVE_COINGLASS_URL,
    LIVE_CRYPTOQUANT_URL,
    LIVE_FRED_URL,
    LIVE_TELEGRAM_URL,
)
from btc_assets.vendors.hosts import (
    LIVE_BINANCE_FUTURES_STREAM_URL as LIVE_FUTURES_STREAM_URL,
)
from btc_assets.vendors.hosts import (
    LIVE_BINANCE_SPOT_STREAM_URL as LIVE_SPOT_STREAM_URL,
)
from btc_assets.vendors.shared_budget import WindowStoreError, check_store_url, shown_url

_SHOWN_VALUE = 80  # characters of a bad value an error repeats (a fault plan can be long)


class SettingsError(ValueError):
    """An environment variable has a value the project cannot use; ``str()`` names it."""


def _intervals(value: str) -> str:
    """A comma list of distinct Binance intervals, returned shortest first with 15m added (the
    feature table's input: it is built whether listed or not, so listing only 1h is fine)."""
    entries = [entry.strip() for entry in value.split(",")]
    for entry in entries:
        if not entry:
            raise ValueError("an empty entry in the list")
        if entry not in BINANCE_INTERVALS:
            raise ValueError(f"{entry!r} is not one of {', '.join(BINANCE_INTERVALS)}")
    repeated = sorted({entry for entry in entries if entries.count(entry) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed twice")
    return ",".join(bar_intervals(entries))


def _series(vendor: str, setting: str) -> Any:
    def check(value: str) -> str:
        parse_series(vendor, value, setting)
        return value

    return check


SERIES = (
    "{} separated by commas, each optionally with :delay=DUR and :stale=DUR (DUR like 30m, "
    "6h, 5d), e.g. {}:stale=5d"
)


def _split(value: str) -> str:
    try:
        shares = [float(x) for x in value.split(",")]
    except ValueError:
        raise ValueError("not numbers separated by commas") from None
    if len(shares) != 3 or any(not 0 < x < 1 for x in shares) or abs(sum(shares) - 1) > 1e-9:
        raise ValueError("not three shares in (0, 1) adding up to 1")
    return value


def _var(name: str, default: Any, expected: str) -> Any:
    return Field(default, validation_alias=name, description=expected)


BACKFILL_DAYS_SETTING = "BTC_ASSETS_BACKFILL_DAYS_PER_RUN"
RATE_BUDGET_SETTING = "BTC_ASSETS_RATE_BUDGET_URL"
RATE_BUDGET_EXPECTED = (
    "sqlite:///ABSOLUTE/PATH (one machine), postgresql://USER@HOST:5432/DB (a cluster) or "
    "memory:// (each process counts alone); unset: sqlite under BTC_ASSETS_DATA_DIR/state"
)


URL = "an http(s) URL with a host, e.g. {}"
EMPTY_MEANS_NONE = frozenset(
    {"bigquery_project", "google_cloud_project", "bigquery_api_endpoint", "gcs_bucket",
     "gcs_prefix", "sandbox_faults", "coinglass_history_days",
     "sandbox_coinglass_history_days", "sandbox_stream_faults", "backfill_days_per_run",
     "rate_budget_url", "sandbox_request_log", "lake_url"}
)  # fmt: skip


class _Environment(BaseSettings):
    """The project's variables as read from the environment (secrets are not among them).

    URLs default to None here: their default depends on BTC_ASSETS_ENV (live host or the
    sandbox's), filled in by :func:`load_settings`.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, str_strip_whitespace=True, extra="ignore", frozen=True
    )

    env: Environment = _var("BTC_ASSETS_ENV", "sandbox", "'sandbox' or 'live'")
    # Unset here means "not given": the basket's default applies (see load_settings).
    symbols: SymbolList = _var(
        SYMBOLS_SETTING, None,
        "USD-M perpetuals separated by commas, each optionally with :spot=PAIR (or spot=-), "
        ":coin=COIN, :pair=PAIR, e.g. BTCUSDT,ETHUSDT,1000PEPEUSDT:spot=PEPEUSDT:coin=PEPE",
    )  # fmt: skip
    symbol: OptionalSymbol = _var(
        LEGACY_SYMBOL_SETTING, None,
        f"a Binance symbol, letters and digits, e.g. BTCUSDT (or use {SYMBOLS_SETTING})",
    )  # fmt: skip
    start_date: PastDate = _var(
        "BTC_ASSETS_START_DATE", date(2020, 1, 1), "a UTC date YYYY-MM-DD, not after today"
    )
    data_dir: Path = _var("BTC_ASSETS_DATA_DIR", PROJECT_ROOT / "data", "a folder path")
    lake_url: LakeUrl = _var(
        "BTC_ASSETS_LAKE_URL", None,
        "a folder path or gs://BUCKET/PREFIX (the Parquet lake; unset: BTC_ASSETS_DATA_DIR/lake)",
    )  # fmt: skip
    tail_days: WholeAboveZero = _var(
        "BTC_ASSETS_TAIL_DAYS", 2, "a whole number of days > 0 (recent days always re-fetched)"
    )
    symbol_workers: WholeAboveZero = _var(
        "BTC_ASSETS_SYMBOL_WORKERS", DEFAULT_SYMBOL_WORKERS,
        "a whole number > 0 (basket members each asset works on at once)",
    )  # fmt: skip
    gap_confirmations: WholeAboveZero = _var(
        "BTC_ASSETS_GAP_CONFIRMATIONS",
        2,
        "a whole number > 0 (re-fetches with the same answer before a gap is kept)",
    )
    binance_spot_base_url: Url | None = _var(
        "BINANCE_SPOT_BASE_URL", None, URL.format(LIVE_BINANCE_SPOT_URL)
    )
    binance_futures_base_url: Url | None = _var(
        "BINANCE_FUTURES_BASE_URL", None, URL.format(LIVE_BINANCE_FUTURES_URL)
    )
    binance_archive_base_url: Url | None = _var(
        "BINANCE_ARCHIVE_BASE_URL", None, URL.format(LIVE_BINANCE_ARCHIVE_URL)
    )
    binance_archive: bool = _var(
        "BTC_ASSETS_BINANCE_ARCHIVE", True,
        "on or off (also true/false, yes/no, 1/0): history from data.binance.vision, REST "
        "for the tail",
    )  # fmt: skip
    coinglass_base_url: Url | None = _var(
        "COINGLASS_BASE_URL", None, URL.format(LIVE_COINGLASS_URL)
    )
    telegram_base_url: Url | None = _var("TELEGRAM_BASE_URL", None, URL.format(LIVE_TELEGRAM_URL))
    coinglass_exchange: NonEmpty = _var(
        "COINGLASS_EXCHANGE", "Binance", "an exchange name as CoinGlass spells it, e.g. Binance"
    )
    coinglass_exchange_list: NameList = _var(
        "COINGLASS_EXCHANGE_LIST", "Binance,OKX,Bybit",
        "exchange names separated by commas, e.g. Binance,OKX,Bybit",
    )  # fmt: skip
    # 15m history needs the Standard plan or above (300 requests/minute).
    coinglass_requests_per_minute: WholeAboveZero = _var(
        "COINGLASS_REQUESTS_PER_MINUTE", 300,
        "a whole number > 0 (the requests a minute the CoinGlass plan allows)",
    )  # fmt: skip
    vendor_max_wait_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = _var(
        "BTC_ASSETS_VENDOR_MAX_WAIT_SECONDS", 120.0,
        "a number of seconds > 0 (the longest a vendor call waits on a rate limit)",
    )  # fmt: skip
    tail_refresh_cron: Cron = _var(
        "BTC_ASSETS_TAIL_REFRESH_CRON", "30 0 * * *",
        "a cron expression of 5 fields (minute hour day month weekday), e.g. '30 0 * * *'",
    )  # fmt: skip
    live_interval_seconds: WholeAboveZero = _var(
        "BTC_ASSETS_LIVE_INTERVAL_SECONDS", 900, "a whole number of seconds > 0"
    )
    freshness_slack_minutes: WholeFromZero = _var(
        "BTC_ASSETS_FRESHNESS_SLACK_MINUTES", 20, "a whole number of minutes >= 0"
    )
    automation_on: bool = _var(
        "BTC_ASSETS_AUTOMATION", False, "on or off (also true/false, yes/no, 1/0)"
    )
    sandbox_seed: WholeFromZero = _var(
        "BTC_ASSETS_SANDBOX_SEED", 7, "a whole number >= 0 (the synthetic market's seed)"
    )
    sandbox_faults: str = _var(
        SANDBOX_FAULTS_SETTING, "", "a JSON fault plan (see btc_assets/sandbox/faults.py)"
    )
    bar_intervals: Annotated[str, AfterValidator(_intervals)] = _var(
        "BTC_ASSETS_INTERVALS", ",".join(DEFAULT_INTERVALS),
        f"distinct Binance intervals separated by commas, from {', '.join(BINANCE_INTERVALS)}; "
        f"{FEATURE_INTERVAL} and 1h are always built (the feature tables read them), e.g. "
        "15m,1h,4h,1d",
    )  # fmt: skip
    sandbox_coinglass_history_days: OptionalDays = _var(
        "BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS", None,
        "a whole number of days >= 1 (the 15m history the sandbox's CoinGlass serves), "
        "or empty for no limit",
    )  # fmt: skip
    binance_spot_stream_url: WebsocketUrl | None = _var(
        "BINANCE_SPOT_STREAM_URL",
        None,
        URL.format(LIVE_SPOT_STREAM_URL).replace("http(s)", "ws(s)"),
    )
    binance_futures_stream_url: WebsocketUrl | None = _var(
        "BINANCE_FUTURES_STREAM_URL", None,
        URL.format(LIVE_FUTURES_STREAM_URL).replace("http(s)", "ws(s)"),
    )  # fmt: skip
    stream_metrics_port: Annotated[int, Field(ge=0, le=65535)] = _var(
        "BTC_ASSETS_STREAM_METRICS_PORT", 9108, "a TCP port 1-65535, or 0 for no metrics server"
    )
    stream_trigger_minutes: WholeAboveZero = _var(
        "BTC_ASSETS_STREAM_TRIGGER_MINUTES", 5,
        "a whole number of minutes > 0 (closed minutes the stream moves before a live run)",
    )  # fmt: skip
    stream_grace_seconds: WholeFromZero = _var(
        "BTC_ASSETS_STREAM_GRACE_SECONDS", 30,
        "a whole number of seconds >= 0 (how late a closed candle may reach the staging)",
    )  # fmt: skip
    stream_max_connection_hours: Annotated[float, Field(gt=0, le=24)] = _var(
        "BTC_ASSETS_STREAM_MAX_CONNECTION_HOURS", 23.0,
        "a number of hours in (0, 24] (a connection is replaced after it; Binance cuts at 24)",
    )  # fmt: skip
    stream_keep_days: WholeAboveZero = _var(
        "BTC_ASSETS_STREAM_KEEP_DAYS", 3, "a whole number of days > 0 (staging kept)"
    )
    sandbox_stream_faults: str = _var(
        "BTC_ASSETS_SANDBOX_STREAM_FAULTS", "",
        "a JSON object of stream faults (see btc_assets/sandbox/binance_stream.py)",
    )  # fmt: skip
    sandbox_latency_ms: WholeFromZero = _var(
        "BTC_ASSETS_SANDBOX_LATENCY_MS", 0,
        "a whole number of milliseconds >= 0 (the wait the sandbox adds to every request)",
    )  # fmt: skip
    # Standard keeps 90 days of 15m history, Professional 180 (vendor-apis.md 4.1).
    coinglass_history_days: OptionalDays = _var(
        "BTC_ASSETS_COINGLASS_HISTORY_DAYS", None,
        "a whole number of days >= 1 (how far back the CoinGlass plan serves 15m bars, "
        "e.g. 90 on Standard, 180 on Professional), or empty for no limit",
    )  # fmt: skip
    coinapi_base_url: Url | None = _var("COINAPI_BASE_URL", None, URL.format(LIVE_COINAPI_URL))
    fred_base_url: Url | None = _var("FRED_BASE_URL", None, URL.format(LIVE_FRED_URL))
    alphavantage_base_url: Url | None = _var(
        "ALPHAVANTAGE_BASE_URL", None, URL.format(LIVE_ALPHAVANTAGE_URL)
    )
    cryptoquant_base_url: Url | None = _var(
        "CRYPTOQUANT_BASE_URL", None, URL.format(LIVE_CRYPTOQUANT_URL)
    )
    fred_series: Annotated[str, AfterValidator(_series("fred", FRED_SERIES_SETTING))] = _var(
        FRED_SERIES_SETTING, DEFAULT_FRED_SERIES, SERIES.format("FRED series ids", "DGS10")
    )
    alphavantage_symbols: Annotated[
        str, AfterValidator(_series("alphavantage", ALPHAVANTAGE_SYMBOLS_SETTING))
    ] = _var(
        ALPHAVANTAGE_SYMBOLS_SETTING, DEFAULT_ALPHAVANTAGE_SYMBOLS,
        SERIES.format("equity or ETF tickers", "SPY"),
    )  # fmt: skip
    cryptoquant_fields: Annotated[
        str, AfterValidator(_series("cryptoquant", CRYPTOQUANT_FIELDS_SETTING))
    ] = _var(
        CRYPTOQUANT_FIELDS_SETTING, DEFAULT_CRYPTOQUANT_FIELDS,
        SERIES.format("CryptoQuant BTC fields", "netflow_total"),
    )  # fmt: skip
    cryptoquant_exchange: NonEmpty = _var(
        "BTC_ASSETS_CRYPTOQUANT_EXCHANGE", "all_exchange",
        "a CryptoQuant exchange, e.g. all_exchange or binance",
    )  # fmt: skip
    alphavantage_daily_limit: WholeAboveZero = _var(
        "ALPHAVANTAGE_DAILY_LIMIT", 25,
        "a whole number > 0 (the key's requests per day: 25 on a free key)",
    )  # fmt: skip
    alphavantage_outputsize: Literal["compact", "full"] = _var(
        "ALPHAVANTAGE_OUTPUTSIZE", "compact",
        "'compact' (the latest 100 sessions, free) or 'full' (all history, premium)",
    )  # fmt: skip
    model_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = _var(
        "BTC_ASSETS_MODEL_NAME", "baseline_1h", "a model name: letters, digits, '_', '.', '-'"
    )
    training_window_days: Annotated[int, Field(ge=7)] = _var(
        "BTC_ASSETS_TRAINING_WINDOW_DAYS", 730,
        "a whole number of days >= 7 (features_1h days the training dataset covers)",
    )  # fmt: skip
    training_split: Annotated[str, AfterValidator(_split)] = _var(
        "BTC_ASSETS_TRAINING_SPLIT", "0.70,0.15,0.15",
        "three shares in (0, 1) adding up to 1: train,validation,test, e.g. 0.7,0.15,0.15",
    )  # fmt: skip
    training_embargo_hours: WholeFromZero = _var(
        "BTC_ASSETS_TRAINING_EMBARGO_HOURS", 0,
        "a whole number of hours >= 0 (dropped between splits beyond the 1 h label purge)",
    )  # fmt: skip
    model_min_edge_pct: Annotated[float, Field(ge=0, lt=100)] = _var(
        "BTC_ASSETS_MODEL_MIN_EDGE_PCT", 1.0,
        "a percentage in [0, 100) (how much lower than the best naive baseline's the model's "
        "validation RMSE must be)",
    )  # fmt: skip
    serve_host: NonEmpty = _var("BTC_ASSETS_SERVE_HOST", "127.0.0.1", "a host or IP to bind")
    serve_port: Annotated[int, Field(ge=1, le=65535)] = _var(
        "BTC_ASSETS_SERVE_PORT", 8000, "a TCP port 1-65535"
    )
    serve_max_feature_age_minutes: WholeAboveZero = _var(
        "BTC_ASSETS_SERVE_MAX_FEATURE_AGE_MINUTES", 120,
        "a whole number of minutes > 0 (older newest features: /health/ready fails)",
    )  # fmt: skip
    serve_reload_seconds: Annotated[float, Field(gt=0, le=3600)] = _var(
        "BTC_ASSETS_SERVE_RELOAD_SECONDS", 5.0,
        "a number of seconds in (0, 3600] (how often the model and features are looked at)",
    )  # fmt: skip
    warehouse: Annotated[Warehouse, BeforeValidator(lower)] = _var(
        "WAREHOUSE", "duckdb", "'duckdb' or 'bigquery'"
    )
    bigquery_project: OptionalText = _var("BIGQUERY_PROJECT", None, "a Google Cloud project id")
    # The name Google's own tools use; BIGQUERY_PROJECT wins.
    google_cloud_project: OptionalText = _var(
        "GOOGLE_CLOUD_PROJECT", None, "a Google Cloud project id"
    )
    bigquery_dataset: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,1024}$")] = _var(
        "BIGQUERY_DATASET", "btc_assets", "a BigQuery dataset name: letters, digits, underscores"
    )
    bigquery_location: NonEmpty = _var(
        "BIGQUERY_LOCATION", "US", "a BigQuery location, e.g. US or EU"
    )
    bigquery_api_endpoint: OptionalUrl = _var(
        "BIGQUERY_API_ENDPOINT", None,
        "unset, or an emulator's http(s) URL, e.g. http://127.0.0.1:9050",
    )  # fmt: skip
    gcs_bucket: BucketName = _var(
        "GCS_STAGING_BUCKET", None,
        "unset, or a GCS bucket name (lowercase letters, digits, '-', '_', '.'), e.g. my-landing",
    )  # fmt: skip
    gcs_prefix: FolderPrefix = _var(
        "GCS_STAGING_PREFIX", "raw", "a folder prefix inside the bucket, e.g. raw, or empty"
    )
    # Backfills that spread (defs/partitions.py) and the budgets they share (vendors/).
    backfill_days_per_run: Annotated[
        Annotated[int, Field(ge=0)] | None, BeforeValidator(blank_is_none)
    ] = _var(
        BACKFILL_DAYS_SETTING, None,
        "a whole number of days >= 1 (a range backfill runs as runs of at most that many "
        "days), or 0 or empty for one run over the whole range",
    )  # fmt: skip
    # Checked in load_settings, not here: pydantic's errors would repeat a password.
    rate_budget_url: OptionalText = _var(RATE_BUDGET_SETTING, None, RATE_BUDGET_EXPECTED)
    sandbox_request_log: Annotated[Path | None, BeforeValidator(blank_is_none)] = _var(
        "BTC_ASSETS_SANDBOX_REQUEST_LOG", None,
        "a file path (the sandbox appends 'epoch host path pid' per request), or empty",
    )  # fmt: skip

    @field_validator("*", mode="before")
    @classmethod
    def _set_but_empty(cls, value: Any, info: ValidationInfo) -> Any:
        """``export X=`` is a mistake rather than a way to ask for the default, except where
        empty means "none" (no project, no emulator, no bucket, no faults, no prefix)."""
        if value == "" and info.field_name not in EMPTY_MEANS_NONE:
            raise ValueError("set but empty (unset it for the default)")
        return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE else f"{text[:_SHOWN_VALUE]}...'"


def _settings_error(
    exc: ValidationError, declared: type[BaseSettings] | None = None
) -> SettingsError:
    """One line: every bad variable, its value and what it expects."""
    fields = (declared or _Environment).model_fields.values()
    expected = {field.validation_alias: field.description for field in fields}
    problems = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across variables: its message names them
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        name = str(error["loc"][0])
        reason = (
            error["msg"].removeprefix("Value error, ") if error["type"] == "value_error" else ""
        )
        said = f"{reason}; " if reason else ""
        problems.append(f"{name}={_shown(error['input'])}: {said}expected {expected.get(name)}")
    return SettingsError(" | ".join(problems))


def _rate_budget_url(read: _Environment) -> str | None:
    """The vendor budgets' shared store (None: the data folder's); a bad URL is named
    without its password."""
    if read.rate_budget_url is None:
        return None
    try:
        return check_store_url(read.rate_budget_url)
    except WindowStoreError as exc:
        shown = _shown(shown_url(read.rate_budget_url))
        raise SettingsError(
            f"{RATE_BUDGET_SETTING}={shown}: {exc}; expected {RATE_BUDGET_EXPECTED}"
        ) from None


def _lake_url(value: str | None) -> str | None:
    """gs:// as given (checked); a folder made absolute, like BTC_ASSETS_DATA_DIR."""
    if value is None or value.startswith("gs://"):
        return value
    return str(Path(value).resolve())


def _url(value: HttpUrl | None, default: str) -> str:
    return default if value is None else str(value).rstrip("/")


def _basket(read: _Environment) -> tuple[SymbolSpec, ...]:
    """BTC_ASSETS_SYMBOLS, or the one symbol of the older BTC_ASSETS_SYMBOL; not both."""
    if read.symbols is not None and read.symbol is not None:
        raise SettingsError(
            f"{LEGACY_SYMBOL_SETTING}={read.symbol!r} and {SYMBOLS_SETTING}="
            f"{_shown(read.symbols)} are both set: {LEGACY_SYMBOL_SETTING} is the older "
            f"one-symbol form of {SYMBOLS_SETTING}; unset it"
        )
    if read.symbol is not None:
        return (symbol_spec(read.symbol),)
    return parse_symbols(read.symbols or DEFAULT_SYMBOLS)


def _forecast(read: _Environment, live: bool) -> ForecastSettings:
    return ForecastSettings(
        coinapi_base_url=_url(
            read.coinapi_base_url, LIVE_COINAPI_URL if live else SANDBOX_COINAPI_URL
        ),
        fred_base_url=_url(read.fred_base_url, LIVE_FRED_URL if live else SANDBOX_FRED_URL),
        alphavantage_base_url=_url(
            read.alphavantage_base_url, LIVE_ALPHAVANTAGE_URL if live else SANDBOX_ALPHAVANTAGE_URL
        ),
        cryptoquant_base_url=_url(
            read.cryptoquant_base_url, LIVE_CRYPTOQUANT_URL if live else SANDBOX_CRYPTOQUANT_URL
        ),
        fred_series=parse_series("fred", read.fred_series, FRED_SERIES_SETTING),
        alphavantage_symbols=parse_series(
            "alphavantage", read.alphavantage_symbols, ALPHAVANTAGE_SYMBOLS_SETTING
        ),
        cryptoquant_fields=parse_series(
            "cryptoquant", read.cryptoquant_fields, CRYPTOQUANT_FIELDS_SETTING
        ),
        cryptoquant_exchange=read.cryptoquant_exchange,
        alphavantage_daily_limit=read.alphavantage_daily_limit,
        alphavantage_outputsize=read.alphavantage_outputsize,
    )


def load_settings() -> Settings:
    """Read and check every variable; raise :class:`SettingsError` naming each bad one."""
    try:
        read = _Environment()
    except ValidationError as exc:
        raise _settings_error(exc) from None
    try:
        signals = SignalEnvironment().settings()
    except ValidationError as exc:
        raise _settings_error(exc, SignalEnvironment) from None
    live = read.env == "live"
    project = read.bigquery_project or read.google_cloud_project
    endpoint = read.bigquery_api_endpoint
    symbols = _basket(read)
    return Settings(
        env=read.env,
        symbol=symbols[0].perp,
        symbols=symbols,
        coinglass_history_days=read.coinglass_history_days,
        sandbox_coinglass_history_days=read.sandbox_coinglass_history_days,
        sandbox_latency_ms=read.sandbox_latency_ms,
        start_date=read.start_date,
        data_dir=Path(read.data_dir).resolve(),
        lake_url=_lake_url(read.lake_url),
        tail_days=read.tail_days,
        binance_spot_base_url=_url(
            read.binance_spot_base_url,
            LIVE_BINANCE_SPOT_URL if live else SANDBOX_BINANCE_SPOT_URL,
        ),
        binance_futures_base_url=_url(
            read.binance_futures_base_url,
            LIVE_BINANCE_FUTURES_URL if live else SANDBOX_BINANCE_FUTURES_URL,
        ),
        binance_archive_base_url=_url(
            read.binance_archive_base_url,
            LIVE_BINANCE_ARCHIVE_URL if live else SANDBOX_BINANCE_ARCHIVE_URL,
        ),
        binance_archive=read.binance_archive,
        coinglass_base_url=_url(
            read.coinglass_base_url, LIVE_COINGLASS_URL if live else SANDBOX_COINGLASS_URL
        ),
        coinglass_exchange=read.coinglass_exchange,
        coinglass_exchange_list=read.coinglass_exchange_list,
        coinglass_requests_per_minute=read.coinglass_requests_per_minute,
        telegram_base_url=_url(
            read.telegram_base_url, LIVE_TELEGRAM_URL if live else SANDBOX_TELEGRAM_URL
        ),
        tail_refresh_cron=read.tail_refresh_cron,
        live_interval_seconds=read.live_interval_seconds,
        freshness_slack_minutes=read.freshness_slack_minutes,
        automation_on=read.automation_on,
        sandbox_seed=read.sandbox_seed,
        sandbox_faults=read.sandbox_faults,
        vendor_max_wait_seconds=read.vendor_max_wait_seconds,
        gap_confirmations=read.gap_confirmations,
        symbol_workers=read.symbol_workers,
        stream=StreamSettings(
            spot_url=_url(
                read.binance_spot_stream_url,
                LIVE_SPOT_STREAM_URL if live else SANDBOX_BINANCE_SPOT_STREAM_URL,
            ),
            futures_url=_url(
                read.binance_futures_stream_url,
                LIVE_FUTURES_STREAM_URL if live else SANDBOX_BINANCE_FUTURES_STREAM_URL,
            ),
            metrics_port=read.stream_metrics_port,
            trigger_minutes=read.stream_trigger_minutes,
            grace_seconds=read.stream_grace_seconds,
            max_connection_hours=read.stream_max_connection_hours,
            keep_days=read.stream_keep_days,
            sandbox_faults=read.sandbox_stream_faults,
        ),
        bar_intervals=tuple(read.bar_intervals.split(",")),
        forecast=_forecast(read, live),
        model=ModelSettings(
            name=read.model_name,
            window_days=read.training_window_days,
            split=tuple(float(x) for x in read.training_split.split(",")),  # type: ignore[arg-type]
            embargo_hours=read.training_embargo_hours,
            min_edge_pct=read.model_min_edge_pct,
        ),
        signals=signals,
        serve=ServeSettings(
            host=read.serve_host,
            port=read.serve_port,
            max_feature_age_minutes=read.serve_max_feature_age_minutes,
            reload_seconds=read.serve_reload_seconds,
        ),
        warehouse=WarehouseSettings(
            kind=read.warehouse,
            bigquery_project=project,
            bigquery_dataset=read.bigquery_dataset,
            bigquery_location=read.bigquery_location,
            bigquery_api_endpoint=str(endpoint).rstrip("/") if endpoint else None,
            gcs_bucket=read.gcs_bucket,
            gcs_prefix=read.gcs_prefix,
        ),
        backfill_days_per_run=read.backfill_days_per_run or None,
        rate_budget_url=_rate_budget_url(read),
        sandbox_request_log=(
            Path(read.sandbox_request_log).resolve() if read.sandbox_request_log else None
        ),
    )
