"""A version promoted while the service runs is served within a few polls, without a restart;
a corrupt or incompatible one is refused, reported, counted once, and the old one serves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from btc_assets.model.registry import REGRESSOR
from btc_assets_tests.test_service.conftest import (
    FEATURES,
    SYMBOL,
    Running,
    flip_bytes,
    save,
    train,
)
from btc_assets_tests.test_service.test_predict import ROW


def _version(service: Running) -> str:
    return service.client.post("/predict", json={"instances": [ROW]}).json()["model_version"]


def _failures(service: Running) -> float:
    text = service.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "btc_assets_model_reload_failures_total":
                return sample.value
    raise AssertionError("no btc_assets_model_reload_failures_total")


def test_a_new_version_is_served_without_a_restart(
    serve: Callable[..., Running], ready_lake: str, lake: Path
) -> None:
    service = serve()
    assert _version(service) == ready_lake
    newer = save(lake, train(seed=5), note="retrained")
    service.wait_for(lambda: _version(service) == newer)
    latest = service.client.get("/predict/latest", params={"symbol": SYMBOL})
    assert latest.json()["model_version"] == newer == latest.headers["x-model-version"]
    ready = service.client.get("/health/ready").json()
    assert ready["model_version"] == newer and ready["last_refusal"] is None
    assert _failures(service) == 0


def _refused(service: Running, version: str, words: str, previous: str) -> None:
    service.wait_for(lambda: service.client.get("/health/ready").json()["last_refusal"])
    ready = service.client.get("/health/ready")
    assert ready.status_code == 200  # the previous model still serves: still ready
    refusal = ready.json()["last_refusal"]
    assert refusal["version"] == version
    assert words in refusal["reason"], refusal["reason"]
    assert _version(service) == previous
    assert _failures(service) == 1
    time.sleep(5 * service.config.reload_seconds)  # the bad pointer is not retried each poll
    assert _failures(service) == 1


def test_a_corrupt_model_file_is_refused_and_the_old_one_serves(
    serve: Callable[..., Running], ready_lake: str, lake: Path
) -> None:
    service = serve()
    bad = save(lake, train(seed=6), note="corrupt",
               corrupt=lambda folder: flip_bytes(folder / REGRESSOR))  # fmt: skip
    _refused(service, bad, "regressor.ubj: sha256 mismatch", ready_lake)
    good = save(lake, train(seed=7), note="fixed")  # a new pointer: tried, and served
    service.wait_for(lambda: _version(service) == good)
    assert service.client.get("/health/ready").json()["last_refusal"]["version"] == bad


def test_boosters_whose_features_differ_from_the_card_are_refused(
    serve: Callable[..., Running], ready_lake: str, lake: Path
) -> None:
    service = serve()
    other = tuple(f"{name}_v2" for name in FEATURES)
    bad = save(lake, train(other), features=FEATURES, note="mismatch")
    _refused(service, bad, "are not the card's", ready_lake)


def test_a_model_refused_at_start_leaves_the_service_not_ready(
    serve: Callable[..., Running], lake: Path
) -> None:
    bad = save(lake, train(), corrupt=lambda folder: (folder / REGRESSOR).write_bytes(b"x"))
    service = serve()
    ready = service.client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["reasons"][0].startswith(f"no model loaded: version {bad} of baseline_1h")
    assert _failures(service) == 1


def test_a_malformed_pointer_is_reported_once_and_the_model_keeps_serving(
    serve: Callable[..., Running], ready_lake: str, lake: Path
) -> None:
    service = serve()
    (lake / "models" / "baseline_1h" / "CURRENT").write_text("../elsewhere\n")
    service.wait_for(lambda: service.client.get("/health/ready").json()["last_refusal"])
    refusal = service.client.get("/health/ready").json()["last_refusal"]
    assert refusal["version"] is None and "bad version '../elsewhere'" in refusal["reason"]
    assert _version(service) == ready_lake
    time.sleep(3 * service.config.reload_seconds)
    assert _failures(service) == 1
