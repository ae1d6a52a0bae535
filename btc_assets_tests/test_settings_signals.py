"""The signal, whale-watch and alert variables: defaults, and bad values named."""

from __future__ import annotations

import pytest

from btc_assets.settings import SettingsError, load_settings
from btc_assets.settings_signals import SignalSettings


def test_defaults_are_the_documented_thresholds() -> None:
    assert load_settings().signals == SignalSettings()
    assert SignalSettings().whale_min_notional_usd == 1_000_000.0


def test_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTC_ASSETS_SIGNAL_CASCADE_RATIO", "4")
    monkeypatch.setenv("BTC_ASSETS_ALERT_MIN_SEVERITY", "Medium")
    monkeypatch.setenv("BTC_ASSETS_WHALE_POLL_SECONDS", "60")
    signals = load_settings().signals
    assert (signals.cascade_ratio, signals.alert_min_severity) == (4.0, "medium")
    assert signals.whale_poll_seconds == 60


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("BTC_ASSETS_SIGNAL_OI_SHOCK", "3", "a fraction in (0, 1)"),
        ("BTC_ASSETS_SIGNAL_FUNDING_Z", "nan", "a number > 0"),
        ("BTC_ASSETS_SIGNAL_CASCADE_RATIO", "-1", "a number > 0"),
        ("BTC_ASSETS_ALERT_MIN_SEVERITY", "urgent", "one of low, medium, high"),
        ("BTC_ASSETS_WHALE_POLL_SECONDS", "5", "[30, 86400]"),
        ("BTC_ASSETS_ALERT_MAX_AGE_MINUTES", "", "set but empty"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert name in str(caught.value) and said in str(caught.value)


def test_a_high_threshold_below_its_medium_one_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTC_ASSETS_WHALE_MIN_NOTIONAL_USD", "5000000")
    monkeypatch.setenv("BTC_ASSETS_WHALE_HIGH_NOTIONAL_USD", "2000000")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "BTC_ASSETS_WHALE_HIGH_NOTIONAL_USD=2e+06" in text
    assert "BTC_ASSETS_WHALE_MIN_NOTIONAL_USD=5e+06" in text
