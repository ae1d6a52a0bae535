"""Offline checks of docker/helm/values.yaml, the values for Dagster's official Helm chart.

No cluster and no chart here (README "Running on a cluster" says what that leaves open).
What can be checked is checked against the real thing, not a copy of it:
- the run queue and pools the chart writes into dagster.yaml, through Dagster's own config
  schemas (so a misspelled key or a wrong type is refused, as the daemon would);
- every BTC_ASSETS_ variable the values name is a setting the project declares;
- the code server the chart starts (the Dockerfile's command) starts and answers gRPC.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster._core.run_coordinator import QueuedRunCoordinator
from pydantic import AliasChoices, BaseModel

from btc_assets_tests.deployment_harness import BIN, _spawn, _stop, _wait_for_port, free_port

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "docker" / "helm" / "values.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _values() -> dict[str, Any]:
    loaded = yaml.safe_load(VALUES.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def _instance_sections(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml sections the chart renders from the values we set, as its templates
    helpers/instance/_run-coordinator.tpl and _concurrency.tpl do (read in the chart's
    source, not rendered here): camelCase to snake_case, and no run coordinator `config:`
    when the queuedRunCoordinator values are empty."""
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    queued = {k: v for k, v in coordinator["config"]["queuedRunCoordinator"].items() if v}
    rendered: dict[str, Any] = {
        "module": "dagster.core.run_coordinator",
        "class": coordinator["type"],
    }
    if queued:
        rendered["config"] = {"max_concurrent_runs": queued.get("maxConcurrentRuns")}
    pools, runs = values["concurrency"]["pools"], values["concurrency"]["runs"]
    return {
        "run_coordinator": rendered,
        "concurrency": {
            "pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]},
            "runs": {
                "max_concurrent_runs": runs["maxConcurrentRuns"],
                "tag_concurrency_limits": runs["tagConcurrencyLimits"],
            },
        },
    }


def _instance_errors(sections: dict[str, Any], home: Path) -> list[str]:
    """What Dagster refuses: the instance schema, then the instance itself loaded from a
    dagster.yaml holding these sections (it refuses run limits set in both the run
    coordinator and `concurrency`, which neither schema alone sees)."""
    errors = validate_config(dagster_instance_config_schema(), sections).errors or []
    if errors:
        return [error.message for error in errors]
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(sections))
    try:
        instance = dg.DagsterInstance.from_config(str(home))
    except Exception as exc:  # Dagster raises several types for a refused instance
        return [str(exc)]
    with instance:
        assert type(instance.run_coordinator).__name__ == QueuedRunCoordinator.__name__
    return []


def _settings_names() -> set[str]:
    """The environment variables the settings modules declare: the validation aliases of
    their pydantic models' fields (what `_var(NAME, ...)` sets)."""
    names: set[str] = set()
    for path in sorted((ROOT / "btc_assets").glob("settings*.py")):
        module = importlib.import_module(f"btc_assets.{path.stem}")
        for model in vars(module).values():
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                continue
            if model.__module__ != module.__name__:
                continue
            for field in model.model_fields.values():
                alias = field.validation_alias
                choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
                names.update(choice for choice in choices if isinstance(choice, str))
    return names


def test_values_parse_and_launch_runs_as_kubernetes_jobs() -> None:
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "btc-assets-secrets"} in launcher["envSecrets"]
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    annotations = values["serviceAccount"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    env = _user_deployment(values)["env"]
    assert env["BTC_ASSETS_ENV"] == "live"
    assert env["BTC_ASSETS_LAKE_URL"].startswith("gs://")
    assert env["WAREHOUSE"] == "bigquery"


def test_no_secret_value_is_in_the_values() -> None:
    env = _user_deployment(_values())["env"]
    secrets = {"COINGLASS_API_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET",
               "TELEGRAM_BOT_TOKEN", "BTC_ASSETS_RATE_BUDGET_URL"}  # fmt: skip
    assert not secrets & set(env)


def test_run_queue_and_pools_are_valid_dagster_instance_config(tmp_path: Path) -> None:
    sections = _instance_sections(_values())
    assert "config" not in sections["run_coordinator"]  # the limits are in concurrency.runs
    runs = sections["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 3
    assert runs["tag_concurrency_limits"] == [{"key": "dagster/backfill", "limit": 2}]
    assert sections["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    assert _instance_errors(sections, tmp_path / "home") == []
    # ... the same limits as the compose deployment's instance.
    compose = yaml.safe_load((ROOT / "docker" / "dagster.yaml").read_text())
    assert compose["concurrency"] == sections["concurrency"]


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("concurrency", "runs"), {"max_concurent_runs": 2}),
        (("concurrency", "runs"), {"max_concurrent_runs": "two"}),
        (("concurrency", "pools"), {"default_limt": 1}),
        # the limits in both places: the chart fails, and so does the instance
        (("run_coordinator", "config"), {"max_concurrent_runs": 2}),
    ],
)
def test_a_misspelled_key_a_wrong_type_or_a_double_limit_is_refused(
    tmp_path: Path, path: tuple[str, str], bad: Any
) -> None:
    sections = _instance_sections(_values())
    sections[path[0]][path[1]] = bad
    assert _instance_errors(sections, tmp_path / "home"), f"{path} = {bad!r} was accepted"


def test_every_btc_assets_variable_in_the_values_is_a_setting() -> None:
    named = set(re.findall(r"\bBTC_ASSETS_[A-Z0-9_]+\b", VALUES.read_text()))
    declared = _settings_names()
    assert "BTC_ASSETS_ENV" in declared  # the parse itself finds the settings
    assert "BTC_ASSETS_LAKE_URL" in named
    assert sorted(named - declared) == []


def test_every_other_env_name_is_a_setting_or_a_known_secret() -> None:
    secrets = {"COINGLASS_API_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET",
               "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"}  # fmt: skip
    env = _user_deployment(_values())["env"]
    assert sorted(set(env) - _settings_names() - secrets) == []


def test_code_server_command_matches_the_dockerfile() -> None:
    deployment = _user_deployment(_values())
    cmd = re.search(r"^CMD (\[.*?\])", DOCKERFILE.read_text(), re.S | re.M)
    assert cmd is not None
    dockerfile_cmd = yaml.safe_load(cmd.group(1).replace("\\\n", " "))
    assert dockerfile_cmd[:3] == ["dagster", "code-server", "start"]
    # The chart supplies the -h/-p pair itself, from `port`.
    port = dockerfile_cmd[dockerfile_cmd.index("-p") + 1]
    assert int(port) == deployment["port"]
    rest = [a for i, a in enumerate(dockerfile_cmd[3:]) if a not in {"-h", "-p"}
            and dockerfile_cmd[3:][i - 1] not in {"-h", "-p"}]  # fmt: skip
    assert rest == deployment["codeServerArgs"]


def test_the_code_server_entry_point_starts_and_answers(tmp_path: Path) -> None:
    args = _user_deployment(_values())["codeServerArgs"]
    port = free_port()
    (tmp_path / "home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "BTC_ASSETS_ENV": "sandbox",
        "BTC_ASSETS_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "code_server.log"
    command = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port)]
    process = _spawn([*command, *args], env, log)
    try:
        _wait_for_port(port, 180, process, log)
        check = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)]
        # The port opens before the definitions are loaded; the health check answers SERVING
        # only once they are, so it is retried for a while.
        deadline = time.monotonic() + 180
        done = subprocess.run(check, env=env, capture_output=True, timeout=60)
        while done.returncode != 0 and time.monotonic() < deadline:
            time.sleep(2)
            done = subprocess.run(check, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr + log.read_bytes()[-2000:]
    finally:
        _stop(process)
