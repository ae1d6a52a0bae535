"""``btc-assets serve``: settings -> ServiceConfig, the gate read from the Dagster instance,
clear usage errors, and the command itself on a loopback port. The service stays Dagster-free."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.defs import checks
from btc_assets.ops import serve as ops_serve
from btc_assets.ops.cli import main
from btc_assets.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
KEY = dg.AssetKey("features_1h")
BAD_DAY = "2024-03-10"


def test_settings_map_to_the_service_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BTC_ASSETS_SYMBOLS", "BTCUSDT,ETHUSDT")
    monkeypatch.setenv("BTC_ASSETS_MODEL_NAME", "other_model")
    monkeypatch.setenv("BTC_ASSETS_SERVE_MAX_FEATURE_AGE_MINUTES", "30")
    monkeypatch.setenv("BTC_ASSETS_SERVE_RELOAD_SECONDS", "2.5")
    config = ops_serve.service_config(load_settings(), None)
    assert config.lake_root == tmp_path / "lake"
    assert config.symbols == ("BTCUSDT", "ETHUSDT")
    assert config.model_name == "other_model" and config.env == "sandbox"
    assert config.max_feature_age == timedelta(minutes=30) and config.reload_seconds == 2.5
    assert config.gate_state == "unchecked" and config.features_table == "features_1h"


def test_a_bad_setting_or_port_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BTC_ASSETS_SERVE_PORT", "99999")
    assert main(["serve"]) == 2
    assert "BTC_ASSETS_SERVE_PORT" in capsys.readouterr().err
    monkeypatch.delenv("BTC_ASSETS_SERVE_PORT")
    assert main(["serve", "--port", "0"]) == 2
    assert "--port 0: expected a TCP port 1-65535" in capsys.readouterr().err


def test_no_instance_means_an_unchecked_gate_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with caplog.at_level(logging.WARNING, logger="btc_assets.service"):
        assert ops_serve.dagster_gate() is None
    (record,) = caplog.records
    assert "no Dagster instance" in record.getMessage() and "unchecked" in record.getMessage()


@dg.asset(
    key=KEY,
    partitions_def=dg.DailyPartitionsDefinition(start_date="2024-03-09", end_offset=1),
    check_specs=[dg.AssetCheckSpec("quality", asset=KEY, blocking=True)],
)
def features_probe(context: dg.AssetExecutionContext) -> Iterator[object]:
    day = context.partition_key
    yield dg.MaterializeResult()
    yield checks.day_evaluation(
        KEY, "quality", date.fromisoformat(day), passed=day != BAD_DAY,
        severity=dg.AssetCheckSeverity.ERROR, description=f"coverage on {day}", metadata={},
    )  # fmt: skip
    yield from checks.check_outputs(context)


def test_the_gate_reads_failed_quality_days_from_the_instance(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    for day in ("2024-03-09", BAD_DAY):
        assert dg.materialize([features_probe], instance=instance, partition_key=day).success
    monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(lambda: instance))
    gate = ops_serve.dagster_gate()
    assert gate is not None
    days = [date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 11)]
    blocked = gate("BTCUSDT", days)
    assert list(blocked) == [date(2024, 3, 10)]
    assert "features_1h.quality failed" in blocked[date(2024, 3, 10)]
    assert "coverage on 2024-03-10" in blocked[date(2024, 3, 10)]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_btc_assets_serve_starts_without_a_model(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BTC_ASSETS_", "DAGSTER"))}
    env.update(BTC_ASSETS_DATA_DIR=str(tmp_path), BTC_ASSETS_SERVE_RELOAD_SECONDS="0.5")
    command = [sys.executable, "-m", "btc_assets.ops.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, live = _get(f"http://127.0.0.1:{port}/health/live")
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "btc-assets serve did not answer"
                time.sleep(0.2)
        assert (status, live) == (200, {"status": "live", "model_version": None})
        status, ready = _get(f"http://127.0.0.1:{port}/health/ready")
        assert status == 503
        assert ready["reasons"][0] == "no model promoted yet: materialize baseline_model"
        assert ready["gate"] == "unchecked"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # a clean shutdown; uvicorn then re-raises the signal it stopped on
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert "no Dagster instance" in err


def test_the_service_imports_neither_dagster_nor_the_settings() -> None:
    code = (
        "import sys, btc_assets.service.app\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'"
        " or m.startswith(('btc_assets.settings', 'btc_assets.defs', 'btc_assets.assets'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
