"""One deployment (throwaway Postgres, code server, daemon, webserver) for the whole folder.

Starting and stopping it costs ~40 s, so the tests here share it. Each asserts only on what
its own runs did, so their order does not matter. The instance is the shipped
docker/dagster.yaml except a 2 s run-monitoring poll (30 s would only lengthen the waits);
automation is off, so a test switches on the sensors it needs, as a user does in the UI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from btc_assets_tests.deployment_harness import Deployment, deployment, fresh_database

MONITOR_POLL = 2
LIVE_INTERVAL = 5


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root: Path = tmp_path_factory.mktemp("deployment")
    env = {"BTC_ASSETS_LIVE_INTERVAL_SECONDS": str(LIVE_INTERVAL)}
    overrides = {"run_monitoring": {"poll_interval_seconds": MONITOR_POLL}}
    with (
        fresh_database() as url,
        deployment(root, url, env=env, instance_overrides=overrides) as running,
    ):
        yield running
