"""``training_dataset`` and ``baseline_model`` end to end on the sandbox: splits in the lake,
the model traceable to its dataset, byte-identical re-runs, the naive-baseline check warning
on the sandbox's random walk, a bad features day left out, and a look-ahead refused.

The lake of every table over ``DAYS`` is built once (``built``); tests that change it work
on a copy with a fresh instance.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from btc_assets.assets.model import BEATS_NAIVE, NO_LOOKAHEAD
from btc_assets.defs.definitions import all_assets
from btc_assets.lake import Lake
from btc_assets.model.dataset import DATASET_NAME, dataset_store, load_dataset
from btc_assets.model.registry import load_model, model_store
from btc_assets.model.splits import SPLITS
from btc_assets.ops.verify_model import verify_model
from btc_assets.settings import load_settings
from btc_assets_tests.test_assets.helpers import as_day, evaluations, resources, run_range

SYMBOL = "BTCUSDT"
FEATURES = "features_1h"
DAYS = ["2024-03-04", "2024-03-13"]  # ten closed days: 240 hourly rows
MODEL = "baseline_1h"
MODEL_ASSETS = [a for a in all_assets if a.key.path[-1] in ("training_dataset", "baseline_model")]


def home(root: Path) -> str:
    (root / "home").mkdir(parents=True, exist_ok=True)
    return str(root / "home")


def train(
    instance: dg.DagsterInstance, res: dict[str, object], **window: Any
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        MODEL_ASSETS,
        instance=instance,
        resources=res,
        run_config={"ops": {"training_dataset": {"config": window}}} if window else None,
        raise_on_error=False,
    )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in evaluations(result)}


def metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == name]
    mat = event.event_specific_data.materialization  # type: ignore[union-attr]
    return {k: v.value for k, v in mat.metadata.items()}


@dataclass
class Built:
    root: Path
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("model")
    with dg.instance_for_test(temp_dir=home(root)) as instance:
        res = resources(root)
        assert run_range(instance, res, DAYS[0], DAYS[-1]).success
        result = train(instance, res)
        assert result.success
        yield Built(root, instance, result)


def _copy(built: Built, target: Path) -> Path:
    shutil.copytree(built.root / "lake", target / "lake")
    return target


def test_the_dataset_is_purged_time_ordered_splits_of_the_whole_window(built: Built) -> None:
    meta = metadata(built.result, "training_dataset")
    assert meta["window"] == f"{DAYS[0]}..{DAYS[-1]}"  # where the data begins, not 730 days
    stored = load_dataset(dataset_store(built.root / "lake").read_current(DATASET_NAME))  # type: ignore[arg-type]
    frames = stored.frames
    # 240 bars; the newest has no next bar; one hour purged before validation and before test
    assert sum(f.height for f in frames.values()) == 240 - 1 - 2
    assert [meta[f"rows_{s}"] for s in SPLITS] == [frames[s].height for s in SPLITS]
    for earlier, later in (("train", "validation"), ("validation", "test")):
        assert frames[earlier]["ts"].max() + timedelta(hours=1) < frames[later]["ts"].min()
    assert "close" in stored.features and "ret_1h" in stored.features
    assert not any(f.endswith(("_available_at", "_event_time", "_source")) for f in
                   stored.features)  # fmt: skip
    # the target is the next bar's log return, recomputed from the stored features
    lake = Lake(built.root / "lake")
    days = [as_day(DAYS[0]) + timedelta(days=n) for n in range(10)]
    bars = lake.read_days(FEATURES, SYMBOL, days).frame.collect().sort("ts")
    expected = bars.select("ts", (pl.col("close").shift(-1) / pl.col("close")).log().alias("t"))
    joined = frames["train"].join(expected, on="ts")
    assert joined.height == frames["train"].height
    assert (joined["target"] - joined["t"]).abs().max() < 1e-12
    assert checks(built.result)[NO_LOOKAHEAD].passed


def test_the_model_is_traceable_to_the_exact_dataset(built: Built) -> None:
    lake_root = built.root / "lake"
    model = load_model(model_store(lake_root), MODEL)
    dataset = dataset_store(lake_root).read_current(DATASET_NAME)
    assert dataset is not None
    manifest = (dataset.directory / "MANIFEST.tsv").read_bytes()
    assert model.card["dataset_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert model.card["dataset_version"] == dataset.version
    assert model.card["window"] == {"start": DAYS[0], "end": DAYS[-1]}
    assert model.card["env"] == "sandbox"
    meta = metadata(built.result, "baseline_model")
    assert meta["version"] == model.version and meta["dataset_sha256"] == dataset.sha256
    assert "data:image/png;base64," in meta["feature_importance"]
    assert set(model.card["metrics"]) == {"train", "validation", "test"}


def test_the_sandbox_random_walk_gets_an_honest_warning(built: Built) -> None:
    verdict = checks(built.result)[BEATS_NAIVE]
    assert verdict.severity == dg.AssetCheckSeverity.WARN
    assert not verdict.passed, verdict.description
    assert "no edge over the naive baselines" in (verdict.description or "")
    assert verdict.metadata["diebold_mariano"].value < 1.96  # type: ignore[union-attr]


def test_a_rerun_over_the_same_days_is_byte_identical(built: Built, tmp_path: Path) -> None:
    data = _copy(built, tmp_path)
    before = {p: p.read_bytes() for p in (data / "lake" / "models").rglob("*") if p.is_file()}
    with dg.instance_for_test(temp_dir=home(tmp_path)) as instance:
        res = resources(data)
        assert run_range(instance, res, DAYS[0], DAYS[-1], [FEATURES]).success
        again = train(instance, res)
    assert again.success
    version = metadata(built.result, "baseline_model")["version"]
    assert metadata(again, "baseline_model")["version"] == version
    after = {p: p.read_bytes() for p in (data / "lake" / "models").rglob("*") if p.is_file()}
    assert after == before


def test_a_features_day_that_does_not_verify_is_left_out_and_named(
    built: Built, tmp_path: Path
) -> None:
    data = _copy(built, tmp_path)
    lake = Lake(data / "lake")
    bad = as_day("2024-03-08")
    path = lake.day_file(FEATURES, SYMBOL, bad)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with dg.instance_for_test(temp_dir=home(tmp_path)) as instance:
        result = train(instance, resources(data))
    assert result.success
    meta = metadata(result, "training_dataset")
    assert meta["days_left_out_count"] == 1
    [(name, why)] = meta["days_left_out"].items()
    assert name == f"{SYMBOL} {bad}" and "does not verify" in why and str(path) in why
    stored = load_dataset(dataset_store(data / "lake").read_current(DATASET_NAME))  # type: ignore[arg-type]
    every = pl.concat(stored.frames.values())
    assert every.filter(pl.col("ts").dt.date() == bad).height <= 1  # 00:00 closes day bad-1
    assert every.filter((pl.col("ts").dt.date() == bad) & (pl.col("ts").dt.hour() > 0)).is_empty()


def test_a_lookahead_row_is_refused_and_the_previous_model_keeps_serving(
    built: Built, tmp_path: Path
) -> None:
    data = _copy(built, tmp_path)
    lake = Lake(data / "lake")
    stores = dataset_store(data / "lake"), model_store(data / "lake")
    current = [s.current(n) for s, n in zip(stores, (DATASET_NAME, MODEL), strict=True)]
    day = as_day("2024-03-06")
    frame = lake.read_days(FEATURES, SYMBOL, [day]).frame.collect()
    column = next(c for c in frame.columns if c.endswith("_available_at"))
    leaked = frame.with_columns(
        pl.when(pl.col("ts").dt.hour() == 12)
        .then(pl.col("ts") + timedelta(minutes=5))
        .otherwise(pl.col(column))
        .alias(column)
    )
    provenance = json.loads(json.dumps(lake.verify_day(FEATURES, SYMBOL, day).provenance))
    lake.write_day(FEATURES, SYMBOL, day, leaked, provenance)  # as a buggy writer would
    with dg.instance_for_test(temp_dir=home(tmp_path)) as instance:
        result = train(instance, resources(data))
    verdict = checks(result)[NO_LOOKAHEAD]
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.ERROR
    assert column in (verdict.description or "")
    # blocking: the model is not trained on it, and nothing readers use moved
    assert not [e for e in result.get_asset_materialization_events()
                if e.asset_key.path[-1] == "baseline_model"]  # fmt: skip
    assert [s.current(n) for s, n in zip(stores, (DATASET_NAME, MODEL), strict=True)] == current


def test_a_launchpad_window_overrides_the_setting(built: Built, tmp_path: Path) -> None:
    data = _copy(built, tmp_path)
    with dg.instance_for_test(temp_dir=home(tmp_path)) as instance:
        result = train(instance, resources(data), start="2024-03-06", end="2024-03-12")
        assert result.success
        assert metadata(result, "training_dataset")["window"] == "2024-03-06..2024-03-12"
        bad = train(instance, resources(data), start="2024-03-12", end="2024-03-06")
    assert not bad.success
    assert "start 2024-03-12 is after end 2024-03-06" in str(
        [e.event_specific_data for e in bad.all_events if e.is_step_failure]
    )


def test_verify_traces_the_promoted_model_to_its_dataset(built: Built, tmp_path: Path) -> None:
    data = _copy(built, tmp_path)
    settings = replace(load_settings(), data_dir=data, env="sandbox")
    lines, problems = verify_model(settings)
    assert problems == [] and " loads " in lines[1]
    dataset = dataset_store(data / "lake").read_current(DATASET_NAME)
    assert dataset is not None
    (dataset.directory / "train.parquet").write_bytes(b"rewritten")
    _, problems = verify_model(settings)
    assert any("train.parquet" in p and "mismatch" in p for p in problems), problems
