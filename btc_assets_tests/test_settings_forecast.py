"""The forecasting sources' series settings: ``NAME:delay=DUR:stale=DUR`` lists, read and
checked by ``load_settings`` with errors that name the variable and the entry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from btc_assets.settings import SettingsError, load_settings
from btc_assets.settings_forecast import (
    ALPHAVANTAGE_SYMBOLS_SETTING,
    CRYPTOQUANT_FIELDS_SETTING,
    FRED_SERIES_SETTING,
    ForecastSettings,
    SeriesSetting,
    duration,
    metric_of,
)
from btc_assets.vendors.cryptoquant_catalogue import CATALOGUE

H, D = timedelta(hours=1), timedelta(days=1)


def _read(monkeypatch: pytest.MonkeyPatch, **env: str) -> ForecastSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings().forecast


def test_defaults() -> None:
    """Staleness is counted from the start of the described date: a FRED value before a
    Thursday holiday is next followed ~6.25 days later, hence 7 d (settings_forecast)."""
    forecast = load_settings().forecast
    assert forecast.fred_series == (
        SeriesSetting("DGS10", timedelta(0), 7 * D),
        SeriesSetting("DTWEXBGS", timedelta(0), 12 * D),  # published weekly
    )
    assert forecast.alphavantage_symbols == (
        SeriesSetting("SPY", 2 * H, 6 * D),
        SeriesSetting("UUP", 2 * H, 6 * D),
    )
    assert [s.name for s in forecast.cryptoquant_fields] == [
        "netflow_total", "reserve", "inflow_total", "outflow_total", "exchange_whale_ratio",
    ]  # fmt: skip
    assert {(s.delay, s.max_staleness) for s in forecast.cryptoquant_fields} == {(3 * H, 3 * D)}
    assert forecast.cryptoquant_exchange == "all_exchange"
    assert forecast.alphavantage_daily_limit == 25 and forecast.alphavantage_outputsize == "compact"
    # the same defaults whether built by load_settings or by the dataclass itself
    defaults = ForecastSettings()
    assert (defaults.fred_series, defaults.alphavantage_symbols, defaults.cryptoquant_fields) == (
        forecast.fred_series, forecast.alphavantage_symbols, forecast.cryptoquant_fields,
    )  # fmt: skip


def test_each_list_parses_names_delays_and_staleness(monkeypatch: pytest.MonkeyPatch) -> None:
    forecast = _read(
        monkeypatch,
        **{
            FRED_SERIES_SETTING: " dgs10 : stale=4d , DTWEXBGS:delay=90m:stale=20d,VIXCLS",
            ALPHAVANTAGE_SYMBOLS_SETTING: "SPY:delay=3h,qqq:stale=1.5d",
            CRYPTOQUANT_FIELDS_SETTING: "netflow_total:delay=6h:stale=2d,reserve_usd,mpi",
        },
    )
    assert forecast.fred_series == (
        SeriesSetting("DGS10", timedelta(0), 4 * D),  # ids upper-cased, blanks stripped
        SeriesSetting("DTWEXBGS", timedelta(minutes=90), 20 * D),
        SeriesSetting("VIXCLS", timedelta(0), 7 * D),
    )
    assert forecast.alphavantage_symbols == (
        SeriesSetting("SPY", 3 * H, 6 * D),
        SeriesSetting("QQQ", 2 * H, timedelta(hours=36)),
    )
    assert forecast.cryptoquant_fields == (
        SeriesSetting("netflow_total", 6 * H, 2 * D),
        SeriesSetting("reserve_usd", 3 * H, 3 * D),
        SeriesSetting("mpi", 3 * H, 3 * D),
    )
    # one request per endpoint, in catalogue order, whatever the fields' order
    assert [str(m) for m in forecast.cryptoquant_metrics()] == ["netflow", "reserve", "mpi"]
    (spy,) = [s for s in forecast.alphavantage_symbols if s.name == "SPY"]
    assert spy.delay == 3 * H


def test_a_zero_delay_is_allowed() -> None:
    assert duration("0m") == timedelta(0) and duration(" 2d ") == 2 * D
    assert duration("0.5h") == timedelta(minutes=30)


BAD = [
    (CRYPTOQUANT_FIELDS_SETTING, "netflow_total,netflow", "'netflow' is not a CryptoQuant field"),
    (CRYPTOQUANT_FIELDS_SETTING, "Reserve", "'Reserve' is not a CryptoQuant field"),
    (FRED_SERIES_SETTING, "DGS10:delay=2hours", "'DGS10:delay=2hours': '2hours' is not a duration"),
    (FRED_SERIES_SETTING, "DGS10:stale=", "'DGS10:stale=': '' is not a duration"),
    (ALPHAVANTAGE_SYMBOLS_SETTING, "SPY:delay=-1h", "'SPY:delay=-1h': '-1h' is not a duration"),
    (FRED_SERIES_SETTING, "DGS10:stale=0d", "'DGS10:stale=0d': 'stale=0d' is not delay=DUR or"),
    (ALPHAVANTAGE_SYMBOLS_SETTING, "SPY:lag=1h", "'SPY:lag=1h': 'lag=1h' is not delay=DUR"),
    (FRED_SERIES_SETTING, "DGS10,DTWEXBGS,dgs10", "DGS10 is listed twice"),
    (CRYPTOQUANT_FIELDS_SETTING, "reserve,reserve:delay=1h", "reserve is listed twice"),
    (FRED_SERIES_SETTING, "DGS10,,DTWEXBGS", "'' does not start with a series name"),
    (ALPHAVANTAGE_SYMBOLS_SETTING, "SPY,:delay=1h", "':delay=1h' does not start with a series"),
    (FRED_SERIES_SETTING, "DGS10,", "'' does not start with a series name"),
    (ALPHAVANTAGE_SYMBOLS_SETTING, "S&P500", "'S&P500' does not start with a series name"),
]  # fmt: skip


@pytest.mark.parametrize(("variable", "value", "said"), BAD, ids=lambda x: str(x)[:30])
def test_a_bad_entry_names_the_variable_and_the_entry(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"{variable}={value!r}: "), message
    assert f"{variable}: {said}" in message, message  # the reason names it again, and the entry
    assert "expected " in message and "DUR" in message  # what a good value looks like
    assert "\n" not in message


def test_an_empty_list_is_refused_not_defaulted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FRED_SERIES_SETTING, "")
    with pytest.raises(SettingsError, match=f"{FRED_SERIES_SETTING}='': set but empty"):
        load_settings()


def test_every_bad_list_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FRED_SERIES_SETTING, "DGS10:stale=0d")
    monkeypatch.setenv(CRYPTOQUANT_FIELDS_SETTING, "netflow")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert FRED_SERIES_SETTING in str(err.value) and CRYPTOQUANT_FIELDS_SETTING in str(err.value)


def test_joined_series_prefixes_and_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    forecast = _read(
        monkeypatch,
        **{
            FRED_SERIES_SETTING: "DGS10,DTWEXBGS",
            ALPHAVANTAGE_SYMBOLS_SETTING: "SPY:stale=4d",
            CRYPTOQUANT_FIELDS_SETTING: "netflow_total,exchange_whale_ratio,mpi",
            "BTC_ASSETS_CRYPTOQUANT_EXCHANGE": "binance",
        },
    )
    joined = forecast.joined_series()
    assert [(j.prefix, j.table, j.symbol, j.values) for j in joined] == [
        ("fred_dgs10_", "fred_series", "DGS10", ("value",)),
        ("fred_dtwexbgs_", "fred_series", "DTWEXBGS", ("value",)),
        ("av_spy_", "alphavantage_daily", "SPY", ("close", "ret_1d")),
        ("cq_netflow_total_", "cryptoquant_flows", "BTC", ("value",)),
        ("cq_exchange_whale_ratio_", "cryptoquant_flows", "BTC", ("value",)),
        ("cq_mpi_", "cryptoquant_flows", "BTC", ("value",)),
    ]
    assert [j.max_staleness_hours for j in joined] == [168, 288, 96, 72, 72, 72]
    onchain = [(j.metric, j.exchange, j.field) for j in joined if j.table == "cryptoquant_flows"]
    assert onchain == [
        ("netflow", "binance", "netflow_total"),
        ("whale_ratio", "binance", "exchange_whale_ratio"),
        ("mpi", "none", "mpi"),  # not per exchange
    ]
    assert not CATALOGUE[metric_of("mpi")].per_exchange
    # every prefixed column of every series, none twice
    columns = [c for j in joined for c in j.columns()]
    assert len(columns) == len(set(columns))
    assert {"fred_dgs10_value", "fred_dgs10_source", "av_spy_close", "av_spy_ret_1d",
            "av_spy_available_at", "cq_mpi_null_reason"} <= set(columns)  # fmt: skip
