from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from btc_assets import clock

if TYPE_CHECKING:
    from btc_assets_tests.emulators import GcsEmulator

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# The tests assert the documented defaults (cron, freshness slack, warehouse, ...), and the
# module-level ``defs`` reads the settings when a test module imports it, before any fixture
# runs. So the project's own variables are cleared here, at collection, whatever the user
# has exported; a test that needs one sets it with monkeypatch. Test-infra switches stay.
PROJECT_VARIABLES = re.compile(
    r"^(BTC_ASSETS_|BINANCE_|COINGLASS_|TELEGRAM_|BIGQUERY_|GCS_STAGING_|COINAPI_|FRED_"
    r"|ALPHAVANTAGE_|CRYPTOQUANT_)"
    r"|^(WAREHOUSE|GOOGLE_CLOUD_PROJECT)$"
)
TEST_SWITCHES = {"BTC_ASSETS_FORCE_BQEMULATOR"}
for _name in [n for n in os.environ if PROJECT_VARIABLES.match(n) and n not in TEST_SWITCHES]:
    del os.environ[_name]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Pin the project's clock (``btc_assets.clock``) to an instant, for the code under test
    and the sandbox alike. It keeps ticking from there: rate limiters wait on real time."""

    def pin(at: datetime) -> None:
        offset = at.timestamp() - time.time()
        monkeypatch.setattr(clock, "epoch_seconds", lambda: time.time() + offset)

    return pin


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """The session's one GCS emulator (generation preconditions enforced, gcs_lake.py), with
    STORAGE_EMULATOR_HOST set and the lake bucket made: the lake and staging tests share it,
    since the variable can name only one."""
    from btc_assets_tests.gcs_lake import gcs_lake_emulator

    with gcs_lake_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator
