"""Bad input gets a clear error naming what is wrong, and the lake keeps what it had."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.assets.binance import binance_assets as raw_assets
from btc_assets.defs.partitions import PartitionError, partition_days
from btc_assets.settings import SettingsError, load_settings
from btc_assets_tests.test_assets.helpers import failure_text, lake_digest, resources, run_range

RAW = ["binance_spot_klines_1m", "binance_perp_klines_1m", "binance_funding_rate"]


@pytest.fixture
def seeded_lake(tmp_path: Path, instance: dg.DagsterInstance) -> Path:
    """A lake holding one good day, so every bad run below has something to spoil."""
    assert run_range(instance, resources(tmp_path), "2024-03-01", "2024-03-01").success
    return tmp_path


def test_partition_before_start_date(seeded_lake: Path, instance: dg.DagsterInstance) -> None:
    """Dagster refuses the range before any step runs; our own guard names the start date."""
    before = lake_digest(seeded_lake / "lake")
    result = run_range(instance, resources(seeded_lake), "2019-12-30", "2019-12-31")
    assert not result.success
    assert "partition 2019-12-30 is before the start date 2020-01-01" in failure_text(result)
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2019-12-31"):
        dg.materialize(
            raw_assets,
            instance=instance,
            resources=resources(seeded_lake),
            partition_key="2019-12-31",
        )
    with pytest.raises(PartitionError, match="before the start date 2020-01-01"):
        partition_days(["2020-01-02", "2019-12-31"], date(2020, 1, 1))
    assert lake_digest(seeded_lake / "lake") == before


def test_unknown_symbol_names_the_symbol(seeded_lake: Path, instance: dg.DagsterInstance) -> None:
    before = lake_digest(seeded_lake / "lake")
    result = run_range(
        instance,
        resources(seeded_lake, symbols="BTCUSDT,NOTACOINUSDT,MATICUSDT"),
        "2024-03-01",
        "2024-03-01",
        selection=RAW,
        force=True,
    )
    assert not result.success
    text = failure_text(result)
    # exchangeInfo, before any fetch: every problem at once, and the setting to fix.
    assert "BTC_ASSETS_SYMBOLS" in text and "NOTACOINUSDT" in text
    assert "MATICUSDT" in text and "SETTLING" in text  # delisted
    assert lake_digest(seeded_lake / "lake") == before


def test_missing_base_url_is_a_clear_error(seeded_lake: Path, instance: dg.DagsterInstance) -> None:
    before = lake_digest(seeded_lake / "lake")
    res = resources(seeded_lake, binance_spot_base_url="")
    result = run_range(instance, res, "2024-03-01", "2024-03-01", selection=RAW[:1], force=True)
    assert not result.success
    assert "base URL" in failure_text(result) or "base_url" in failure_text(result)
    assert lake_digest(seeded_lake / "lake") == before


def test_empty_base_url_env_var_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_SPOT_BASE_URL", "")
    with pytest.raises(SettingsError, match="BINANCE_SPOT_BASE_URL"):
        load_settings()


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTC_ASSETS_ENV", "production")
    with pytest.raises(SettingsError, match="BTC_ASSETS_ENV"):
        load_settings()
