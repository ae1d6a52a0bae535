"""The basket (BTC_ASSETS_SYMBOLS), its older one-symbol form, the CoinGlass history depth and
the sandbox's latency: read, defaulted, and carried into the resources."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from btc_assets.core.symbols import SymbolSpec
from btc_assets.defs.definitions import build_resources
from btc_assets.defs.resources import SandboxResource
from btc_assets.settings import SettingsError, load_settings


def test_default_basket_is_btcusdt_alone() -> None:
    settings = load_settings()
    assert settings.symbols == (SymbolSpec("BTCUSDT", "BTCUSDT", "BTC", "BTCUSDT"),)
    assert (settings.symbol, settings.coin) == ("BTCUSDT", "BTC")
    assert settings.coinglass_history_days is None
    assert (settings.sandbox_coinglass_history_days, settings.sandbox_latency_ms) == (None, 0)


def test_a_basket_keeps_its_order_and_symbol_is_its_first_perp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "BTC_ASSETS_SYMBOLS", " ETHUSDT, BTCUSDT,1000PEPEUSDT:coin=PEPE ,BTCDOMUSDT:spot=-"
    )
    settings = load_settings()
    assert [s.perp for s in settings.symbols] == [
        "ETHUSDT", "BTCUSDT", "1000PEPEUSDT", "BTCDOMUSDT",
    ]  # fmt: skip
    assert settings.symbols[2] == SymbolSpec("1000PEPEUSDT", "PEPEUSDT", "PEPE", "1000PEPEUSDT")
    assert settings.symbols[3].spot is None
    assert (settings.symbol, settings.coin) == ("ETHUSDT", "ETH")


def test_the_older_one_symbol_variable_still_works_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTC_ASSETS_SYMBOL", "solusdt")  # it always upper-cased
    settings = load_settings()
    assert settings.symbols == (SymbolSpec("SOLUSDT", "SOLUSDT", "SOL", "SOLUSDT"),)
    assert settings.symbol == "SOLUSDT"


def test_both_symbol_variables_at_once_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BTC_ASSETS_SYMBOL", "ETHUSDT")
    monkeypatch.setenv("BTC_ASSETS_SYMBOLS", "BTCUSDT,ETHUSDT")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    both = "BTC_ASSETS_SYMBOL='ETHUSDT' and BTC_ASSETS_SYMBOLS='BTCUSDT,ETHUSDT'"
    assert message.startswith(both)
    assert "unset it" in message and "\n" not in message


def test_history_days_empty_means_unlimited_and_a_number_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BTC_ASSETS_COINGLASS_HISTORY_DAYS", "")
    monkeypatch.setenv("BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS", " ")
    settings = load_settings()
    assert (settings.coinglass_history_days, settings.sandbox_coinglass_history_days) == (
        None, None,
    )  # fmt: skip
    monkeypatch.setenv("BTC_ASSETS_COINGLASS_HISTORY_DAYS", "180")
    monkeypatch.setenv("BTC_ASSETS_SANDBOX_COINGLASS_HISTORY_DAYS", "90")
    monkeypatch.setenv("BTC_ASSETS_SANDBOX_LATENCY_MS", "250")
    settings = load_settings()
    assert (settings.coinglass_history_days, settings.sandbox_coinglass_history_days) == (180, 90)
    assert settings.sandbox_latency_ms == 250


def test_sandbox_depth_and_latency_reach_the_sandbox_transport(tmp_path: Path) -> None:
    settings = replace(
        load_settings(), data_dir=tmp_path, sandbox_coinglass_history_days=90,
        sandbox_latency_ms=250,
    )  # fmt: skip
    sandbox = build_resources(settings)["sandbox"]
    assert isinstance(sandbox, SandboxResource)
    assert (sandbox.coinglass_history_days, sandbox.latency_ms) == (90, 250)
    transport = sandbox.transport()
    assert transport.state.coinglass_history_days == 90  # type: ignore[union-attr]
    assert transport.latency_seconds == 0.25  # type: ignore[union-attr]
