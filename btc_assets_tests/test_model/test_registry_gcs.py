"""Models and datasets in a ``gs://`` lake, as on a cluster: the trainer (one pod) commits and
promotes into GCS, the service (another pod, its own session) serves what ``CURRENT`` names
through the same code as on a laptop (``registry.load_model``, ``ModelHolder``), reloads a
new promotion without a restart, and refuses a damaged one while the old one keeps serving.
The GCS is the emulator with GCS's generation preconditions (gcs_preconditions.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from btc_assets.lake import parquet_bytes
from btc_assets.model.dataset import CARD as DATASET_CARD
from btc_assets.model.dataset import DATASET_NAME, dataset_store, load_dataset
from btc_assets.model.registry import REGRESSOR, ModelRefused, load_model, model_store
from btc_assets.model.splits import SPLITS
from btc_assets.ops.verify_model import verify_model
from btc_assets.service.config import ServiceConfig
from btc_assets.service.models import ModelHolder
from btc_assets.settings import load_settings
from btc_assets_tests.gcs_lake import blob, fresh_url
from btc_assets_tests.test_service.conftest import (
    DAY,
    FEATURES,
    NAME,
    POLL,
    SYMBOL,
    Boosters,
    Clock,
    features_day,
    row_inputs,
    running,
    save,
    train,
    write_day,
)

pytestmark = pytest.mark.usefixtures("gcs_server")


def _predicted(boosters: Boosters) -> dict[str, float]:
    x = row_inputs(features_day(DAY))
    return {
        "ret_1h_next": float(boosters.regressor.inplace_predict(x)[0]),
        "p_up": float(boosters.classifier.inplace_predict(x)[0]),
    }


def test_a_model_trained_into_gcs_is_served_by_another_process_and_reloaded() -> None:
    lake = fresh_url()
    write_day(lake, DAY - timedelta(days=1), seed=2)  # type: ignore[arg-type]
    write_day(lake, DAY)  # type: ignore[arg-type]
    first = train()
    version = save(lake, first)  # type: ignore[arg-type]
    assert blob(f"{lake}/models/{NAME}/CURRENT").download_as_bytes() == f"{version}\n".encode()

    config = ServiceConfig(lake_root=lake, model_name=NAME, symbols=(SYMBOL,), env="sandbox",  # type: ignore[arg-type]
                           reload_seconds=POLL)  # fmt: skip
    clock = Clock()
    with running(config, clock) as service:
        latest = service.client.get("/predict/latest", params={"symbol": SYMBOL})
        body = latest.json()
        assert latest.status_code == 200, body
        assert body["model_version"] == version == latest.headers["x-model-version"]
        assert body["features_day"] == DAY.isoformat()
        assert body["prediction"] == _predicted(first)

        # the trainer promotes a retrained version: served within a few polls, no restart
        second = train(seed=5)
        newer = save(lake, second, note="retrained")  # type: ignore[arg-type]
        assert newer != version

        def serving() -> str:
            return service.client.get("/health/ready").json()["model_version"]

        service.wait_for(lambda: serving() == newer)
        latest = service.client.get("/predict/latest", params={"symbol": SYMBOL}).json()
        assert latest["prediction"] == _predicted(second)

        # a version whose booster object was damaged, pointed at by hand: refused, named
        bad = save(lake, train(seed=9), promote=False)  # type: ignore[arg-type]
        regressor = f"{lake}/models/{NAME}/{bad}/{REGRESSOR}"
        blob(regressor).upload_from_string(b"not a booster")
        blob(f"{lake}/models/{NAME}/CURRENT").upload_from_string(f"{bad}\n")
        service.wait_for(
            lambda: service.client.get("/health/ready").json()["last_refusal"] is not None
        )
        refusal = service.client.get("/health/ready").json()["last_refusal"]
        assert refusal["version"] == bad and regressor in refusal["reason"], refusal
        assert serving() == newer  # the old model keeps serving


def test_load_model_reads_back_the_exact_boosters_from_a_fresh_session() -> None:
    lake = fresh_url()
    boosters = train(seed=3)
    version = save(lake, boosters)  # type: ignore[arg-type]
    loaded = load_model(model_store(lake), NAME)  # a new GcsStorage: what another pod opens
    assert loaded.version == version and loaded.features == FEATURES
    assert bytes(loaded.regressor.save_raw("ubj")) == bytes(boosters.regressor.save_raw("ubj"))
    x = row_inputs(features_day(DAY))
    np.testing.assert_array_equal(
        loaded.classifier.inplace_predict(x), boosters.classifier.inplace_predict(x)
    )
    holder = ModelHolder(model_store(lake), NAME, "sandbox")
    assert holder.poll() and holder.current is not None and holder.current.version == version
    assert not holder.poll()  # the same pointer: nothing reloaded


def test_a_damaged_model_on_gcs_is_refused_naming_the_object() -> None:
    lake = fresh_url()
    version = save(lake, train(), promote=False)  # type: ignore[arg-type]
    store = model_store(lake)
    card = store.location(NAME, version, "card.json")
    blob(str(card)).upload_from_string(b'{"format": 1}')
    with pytest.raises(ModelRefused, match=r"card\.json: size mismatch") as info:
        load_model(store, NAME, version)
    assert str(card) in str(info.value)
    with pytest.raises(ModelRefused, match="no version of model"):
        load_model(store, NAME)  # nothing promoted
    holder = ModelHolder(store, NAME, "sandbox")
    blob(f"{lake}/models/{NAME}/CURRENT").upload_from_string(f"{version}\n")
    assert not holder.poll() and holder.current is None
    assert holder.last_refusal is not None and str(card) in holder.last_refusal.reason


def _split(n: int, offset: int) -> pl.DataFrame:
    start = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=offset)
    return pl.DataFrame(
        {
            "symbol": [SYMBOL] * n,
            "ts": pl.Series([start + timedelta(hours=h) for h in range(n)]).cast(
                pl.Datetime("ms", "UTC")
            ),
            "close": np.linspace(43000, 43100, n),
            "target": np.linspace(-0.01, 0.01, n),
        }
    )


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_a_dataset_round_trips_with_the_same_version_on_both_backends(
    where: str, tmp_path: Path
) -> None:
    frames = {split: _split(10, 20 * i) for i, split in enumerate(SPLITS)}
    files = {f"{split}.parquet": parquet_bytes(frame) for split, frame in frames.items()}
    files[DATASET_CARD] = json.dumps({"features": ["close"], "env": "sandbox"}).encode()
    store = dataset_store(fresh_url() if where == "gcs" else tmp_path / "lake")
    artifact = store.commit(DATASET_NAME, files)
    store.promote(DATASET_NAME, artifact.version)
    stored = load_dataset(dataset_store(store.storage.root).read_current(DATASET_NAME))  # type: ignore[arg-type]
    assert stored.version == artifact.version and stored.features == ("close",)
    for split in SPLITS:
        assert stored.frames[split].equals(frames[split])
    # the version is the content's: the same on a laptop and in the bucket
    local = dataset_store(tmp_path / "other").commit(DATASET_NAME, files)
    assert (local.version, local.sha256) == (artifact.version, artifact.sha256)


def test_verify_checks_the_model_and_dataset_in_the_gcs_lake(tmp_path: Path) -> None:
    """``btc-assets verify`` with BTC_ASSETS_LAKE_URL=gs://...: it looks in the bucket (the
    local data folder is empty) and names the damaged object."""
    lake = fresh_url()
    settings = replace(load_settings(), data_dir=tmp_path, lake_url=lake, env="sandbox")
    datasets = dataset_store(lake)
    dataset = datasets.commit(DATASET_NAME, {"train.parquet": b"rows", DATASET_CARD: b"{}"})
    datasets.promote(DATASET_NAME, dataset.version)
    version = save(lake, train())  # type: ignore[arg-type]
    lines, problems = verify_model(settings)
    assert lines[0] == f"dataset {DATASET_NAME}: {dataset.version} verifies"
    assert lines[1].startswith(f"model {NAME}: {version} loads (6 features, env sandbox")
    assert problems == [f"model {NAME} {version}: its card names no dataset version"]
    train_file = str(dataset.path("train.parquet"))
    blob(train_file).upload_from_string(b"ROWS")
    _, problems = verify_model(settings)
    assert any(train_file in p and "mismatch" in p for p in problems), problems
    assert not (tmp_path / "lake").exists()
