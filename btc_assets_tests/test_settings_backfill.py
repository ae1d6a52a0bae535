"""The settings of backfills that spread: runs of at most N days, the store the vendor rate
budgets share, and the sandbox's request log; each bad value names its variable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.defs.definitions import build_resources
from btc_assets.defs.resources import BinanceResource, CoinGlassResource, SandboxResource
from btc_assets.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("value", "days"), [(None, None), ("", None), ("0", None), ("1", 1), (" 15 ", 15)]
)
def test_days_per_run(monkeypatch: pytest.MonkeyPatch, value: str | None, days: int | None) -> None:
    if value is not None:
        monkeypatch.setenv("BTC_ASSETS_BACKFILL_DAYS_PER_RUN", value)
    assert load_settings().backfill_days_per_run == days


@pytest.mark.parametrize("value", ["-1", "two", "1.5", "15d"])
def test_bad_days_per_run_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BTC_ASSETS_BACKFILL_DAYS_PER_RUN", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(f"BTC_ASSETS_BACKFILL_DAYS_PER_RUN={value!r}: expected")
    assert "a whole number of days >= 1" in str(err.value)


def test_the_budget_store_defaults_to_the_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    assert settings.rate_budget_url is None
    assert settings.rate_budget_store_url == f"sqlite://{tmp_path}/data/state/rate_budgets.sqlite"
    # Tests and tools that move the data folder move the store with it.
    moved = replace(settings, data_dir=tmp_path / "elsewhere")
    assert moved.rate_budget_store_url == f"sqlite://{tmp_path}/elsewhere/state/rate_budgets.sqlite"


@pytest.mark.parametrize(
    "url", ["sqlite:///var/lib/budgets.sqlite", "postgresql://budgets@db:5432/rate", "memory://"]
)
def test_a_store_url_is_taken(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("BTC_ASSETS_RATE_BUDGET_URL", url)
    assert load_settings().rate_budget_store_url == url


@pytest.mark.parametrize(
    "url",
    ["redis://u:hunter2@cache/0", "sqlite://budgets.sqlite", "postgresql://u:hunter2@/nodb", "x"],
)
def test_a_bad_store_url_names_the_variable_not_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("BTC_ASSETS_RATE_BUDGET_URL", url)
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert text.startswith("BTC_ASSETS_RATE_BUDGET_URL=") and "expected sqlite:///" in text
    assert "hunter2" not in text


def test_resources_share_the_store_and_hide_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = replace(load_settings(), env="sandbox", data_dir=tmp_path)
    res = build_resources(settings)
    expected = f"sqlite://{tmp_path}/state/rate_budgets.sqlite"
    for key in ("binance", "binance_account", "coinglass", "fred", "alphavantage", "cryptoquant"):
        assert res[key].rate_budget_url == expected, key  # type: ignore[attr-defined]
    # A password must not reach the resource config the UI shows: the variable is named.
    url = "postgresql://u:hunter2@db:5432/rate"
    monkeypatch.setenv("BTC_ASSETS_RATE_BUDGET_URL", url)
    res = build_resources(replace(load_settings(), env="sandbox", data_dir=tmp_path))
    coinglass = res["coinglass"]
    assert isinstance(coinglass, CoinGlassResource)
    assert coinglass.rate_budget_url == dg.EnvVar("BTC_ASSETS_RATE_BUDGET_URL")
    binance = res["binance"]
    assert isinstance(binance, BinanceResource) and "hunter2" not in repr(binance)


def test_the_sandbox_request_log_reaches_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings().sandbox_request_log is None
    monkeypatch.setenv("BTC_ASSETS_SANDBOX_REQUEST_LOG", str(tmp_path / "requests.log"))
    settings = replace(load_settings(), env="sandbox", data_dir=tmp_path)
    assert settings.sandbox_request_log == tmp_path / "requests.log"
    sandbox = build_resources(settings)["sandbox"]
    assert isinstance(sandbox, SandboxResource)
    assert sandbox.request_log == str(tmp_path / "requests.log")
    transport = sandbox.transport()
    assert transport is not None and transport.request_log == str(tmp_path / "requests.log")  # type: ignore[attr-defined]
