"""``btc-assets verify`` on the model: promoted versions verify, load and trace to their data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from btc_assets.artifacts import ArtifactStore
from btc_assets.model.dataset import DATASET_NAME
from btc_assets.ops.verify_model import verify_model
from btc_assets.settings import load_settings
from btc_assets_tests.test_service.conftest import NAME, save, train


def _settings(data: Path):  # type: ignore[no-untyped-def]
    return replace(load_settings(), data_dir=data, env="sandbox")


def _with_dataset(lake: Path) -> str:
    store = ArtifactStore(lake, "datasets")
    dataset = store.commit(DATASET_NAME, {"train.parquet": b"rows", "dataset.json": b"{}"})
    store.promote(DATASET_NAME, dataset.version)
    return dataset.version


def test_a_young_lake_has_no_model_and_no_problem(tmp_path: Path) -> None:
    lines, problems = verify_model(_settings(tmp_path))
    assert problems == []
    assert lines == [
        f"dataset {DATASET_NAME}: none promoted yet",
        f"model {NAME}: none promoted yet (materialize the train_model job)",
    ]


def test_a_model_whose_dataset_changed_or_vanished_is_a_problem(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    _with_dataset(lake)
    version = save(lake, train())  # its card names a dataset that is not there
    lines, problems = verify_model(_settings(tmp_path))
    assert f"model {NAME}: {version} loads" in lines[1]
    assert problems == [f"model {NAME} {version}: its card names no dataset version"]


def test_a_corrupt_model_is_named(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    save(lake, train(), corrupt=lambda d: (d / "regressor.ubj").write_bytes(b"junk"))
    _, problems = verify_model(_settings(tmp_path))
    assert len(problems) == 1 and "regressor.ubj" in problems[0] and "mismatch" in problems[0]


def test_a_model_of_the_other_env_is_a_problem(tmp_path: Path) -> None:
    save(tmp_path / "lake", train(), env="live")
    _, problems = verify_model(_settings(tmp_path))
    assert any("trained in env live, this is sandbox" in p for p in problems)
