"""The baseline trainer on synthetic hourly frames: it finds a planted signal, admits when there
is none, never selects on the test split, repeats itself byte for byte, and refuses bad input
naming the culprit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from btc_assets.model.train import (
    TrainedBaseline,
    TrainingParams,
    booster_bytes,
    importance_png,
    load_booster,
    predict,
    train_baseline,
)

FEATURES = ("f1", "f2", "f3", "hour", "ret_1h", "weekend")
START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
Splits3 = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


def hourly_frame(n: int = 3000, seed: int = 11, signal: bool = True) -> pl.DataFrame:
    """f1, f2, f3 ~ N(0, 1%); with ``signal`` the target is 0.8 f1 - 0.5 f2 plus small noise,
    without it an independent random walk. f3 is noise with nulls, ``hour`` an Int64 with
    nulls, ``weekend`` a Boolean: the dtypes the feature tables hold."""
    rng = np.random.default_rng(seed)
    f1, f2, f3 = rng.normal(0.0, 0.01, (3, n))
    noise = rng.normal(0.0, 0.001 if signal else 0.01, n)
    target = 0.8 * f1 - 0.5 * f2 + noise if signal else noise
    hours = np.arange(n)
    return pl.DataFrame(
        {
            "symbol": "BTCUSDT",
            "ts": pl.Series(START_MS + 3_600_000 * (hours + 1)).cast(pl.Datetime("ms", "UTC")),
            "f1": f1,
            "f2": f2,
            "f3": pl.Series(np.where(rng.random(n) < 0.05, np.nan, f3)).fill_nan(None),
            "hour": pl.Series(hours % 24).cast(pl.Int64),
            "ret_1h": np.concatenate([[0.0], target[:-1]]),
            "weekend": (hours // 24) % 7 >= 5,
            "target": target,
        }
    ).with_columns(
        pl.when(pl.col("hour") == 3).then(None).otherwise(pl.col("hour")).alias("hour"),
        (pl.col("target") > 0).alias("target_up"),
    )


def split(frame: pl.DataFrame) -> Splits3:
    """70/15/15 in time, one row purged at each boundary."""
    n = frame.height
    a, b = int(n * 0.70), int(n * 0.85)
    return frame[:a], frame[a + 1 : b], frame[b + 1 :]


def _nan_safe(value: object) -> object:
    """Metrics with NaN (the zero baseline's IC) made comparable with ``==``."""
    if isinstance(value, dict):
        return {k: _nan_safe(v) for k, v in value.items()}
    return "nan" if isinstance(value, float) and np.isnan(value) else value


@pytest.fixture(scope="module")
def planted() -> TrainedBaseline:
    return train_baseline(*split(hourly_frame()), FEATURES)


def test_recovers_a_planted_signal(planted: TrainedBaseline) -> None:
    for name in ("validation", "test"):
        m = planted.metrics[name]
        assert m["model"]["rmse"] < 0.6 * m["zero"]["rmse"], name
        assert m["model"]["ic"] > 0.8, name
        assert m["model"]["directional_accuracy"] > 0.8, name
        assert m["classifier"]["directional_accuracy"] > 0.8, name
        assert m["classifier"]["log_loss"] < m["up_prior"]["log_loss"], name
    share = planted.importance
    assert share["f1"] > share["f3"] and share["f2"] > share["f3"]
    assert sum(share.values()) == pytest.approx(1.0)
    assert set(share) == set(FEATURES)


def test_metrics_cover_every_split_model_and_figure(planted: TrainedBaseline) -> None:
    assert set(planted.metrics) == {"train", "validation", "test"}
    splits = split(hourly_frame())
    rows = {k: len(f) for k, f in zip(("train", "validation", "test"), splits, strict=True)}
    for name, by_model in planted.metrics.items():
        assert set(by_model) == {"model", "zero", "last_return", "classifier", "up_prior"}
        for model in ("model", "zero", "last_return"):
            assert {"rmse", "mae", "directional_accuracy", "ic", "rows"} <= set(by_model[model])
        assert {"directional_accuracy", "log_loss", "rows"} <= set(by_model["classifier"])
        assert all(m["rows"] == rows[name] for m in by_model.values())


def test_boosters_are_cut_at_their_best_round(planted: TrainedBaseline) -> None:
    params = planted.params
    for name, booster in (("regressor", planted.regressor), ("classifier", planted.classifier)):
        best = planted.best_iteration[name]
        assert 0 <= best < params.max_rounds
        assert booster.num_boosted_rounds() == best + 1
        assert tuple(booster.feature_names or ()) == FEATURES


def test_admits_there_is_nothing_to_learn_from_a_random_walk() -> None:
    frame = hourly_frame(signal=False, seed=5).with_columns(pl.col("target_up").cast(pl.Int8))
    trained = train_baseline(*split(frame), FEATURES)
    m = trained.metrics["validation"]
    assert m["model"]["rmse"] / m["zero"]["rmse"] > 0.97


def test_the_test_split_never_selects_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    train, validation, test = split(hourly_frame())
    other_test = split(hourly_frame(seed=99))[2]  # same hours, other values
    seen: list[list[tuple[int, str]]] = []
    real_train = xgb.train

    def spy(*args: object, **kwargs: object) -> xgb.Booster:
        evals = kwargs.get("evals") or []
        seen.append([(m.num_row(), name) for m, name in evals])  # type: ignore[attr-defined]
        return real_train(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(xgb, "train", spy)
    first = train_baseline(train, validation, test, FEATURES)
    second = train_baseline(train, validation, other_test, FEATURES)
    assert seen == [[(validation.height, "validation")]] * 4
    for a, b in ((first.regressor, second.regressor), (first.classifier, second.classifier)):
        assert booster_bytes(a) == booster_bytes(b)
    assert _nan_safe(first.metrics["validation"]) == _nan_safe(second.metrics["validation"])
    assert _nan_safe(first.metrics["test"]) != _nan_safe(second.metrics["test"])


def test_training_is_byte_for_byte_repeatable_whatever_the_threads(
    planted: TrainedBaseline,
) -> None:
    splits = split(hourly_frame())
    for nthread in (1, 4):
        again = train_baseline(*splits, FEATURES, TrainingParams(nthread=nthread))
        assert booster_bytes(again.regressor) == booster_bytes(planted.regressor), nthread
        assert booster_bytes(again.classifier) == booster_bytes(planted.classifier), nthread
        assert _nan_safe(again.metrics) == _nan_safe(planted.metrics), nthread
    other_seed = train_baseline(*splits, FEATURES, TrainingParams(seed=8))
    assert booster_bytes(other_seed.regressor) != booster_bytes(planted.regressor)


def test_saved_boosters_load_and_predict_the_same(planted: TrainedBaseline) -> None:
    _, _, test = split(hourly_frame())
    for booster in (planted.regressor, planted.classifier):
        loaded = load_booster(booster_bytes(booster))
        assert tuple(loaded.feature_names or ()) == FEATURES
        np.testing.assert_array_equal(
            predict(loaded, test, FEATURES), predict(booster, test, FEATURES)
        )
    p_up = predict(planted.classifier, test, FEATURES)
    assert ((p_up >= 0) & (p_up <= 1)).all()
    with pytest.raises(ValueError, match="differ"):
        predict(planted.regressor, test, list(reversed(FEATURES)))
    with pytest.raises(ValueError, match="shape"):
        predict(planted.regressor, np.zeros((2, 3)), FEATURES)


def test_params_are_plain_provenance() -> None:
    params = TrainingParams()
    assert params.as_dict()["seed"] == 7 and params.as_dict()["nthread"] == 0
    with pytest.raises(ValueError, match="subsample"):
        TrainingParams(subsample=0.0)


def _set_nulls(column: str, rows: int) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def apply(frame: pl.DataFrame) -> pl.DataFrame:
        index = pl.int_range(pl.len())
        return frame.with_columns(
            pl.when(index < rows).then(None).otherwise(pl.col(column)).alias(column)
        )

    return apply


def _shift_hours(hours: int) -> Callable[[pl.DataFrame], pl.DataFrame]:
    return lambda f: f.with_columns(pl.col("ts") - pl.duration(hours=hours))


BAD_INPUT = {
    "empty validation": ("validation", lambda f: f.clear(), ["validation", "empty"]),
    "feature missing": ("test", lambda f: f.drop("f2"), ["'f2'", "test"]),
    "not numeric": ("train", lambda f: f.with_columns(pl.col("f3").cast(pl.String)),
                    ["'f3'", "String", "train"]),
    "target nulls": ("train", _set_nulls("target", 3), ["target", "3 null", "train"]),
    "target_up nulls": ("test", _set_nulls("target_up", 2), ["target_up", "2 null", "test"]),
    "few train rows": ("train", lambda f: f.tail(40), ["train", "40 rows", "50"]),
    "few validation rows": ("validation", lambda f: f.head(5), ["validation", "5 rows", "10"]),
    "infinite feature": ("validation",
                         lambda f: f.with_columns(pl.col("f1").replace(f["f1"][0], float("inf"))),
                         ["'f1'", "1 infinite", "validation"]),
    "overlap": ("validation", _shift_hours(24 * 30), ["train", "validation", "time-ordered"]),
    "ret_1h missing": ("train", lambda f: f.drop("ret_1h"), ["ret_1h", "train"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_the_culprit(case: str) -> None:
    target, mutate, words = BAD_INPUT[case]
    frames = dict(zip(("train", "validation", "test"), split(hourly_frame(n=600)), strict=True))
    frames[target] = mutate(frames[target])
    features = [f for f in FEATURES if case != "ret_1h missing" or f != "ret_1h"]
    with pytest.raises(ValueError) as caught:
        train_baseline(frames["train"], frames["validation"], frames["test"], features)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))


def test_bad_feature_lists() -> None:
    train, validation, test = split(hourly_frame(n=600))
    for features, word in (([], "no feature"), (["f1", "f1"], "'f1'"), (["target"], "target")):
        with pytest.raises(ValueError, match=word):
            train_baseline(train, validation, test, features)


def test_importance_png_is_a_stable_png(planted: TrainedBaseline) -> None:
    first = importance_png(planted.importance)
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert importance_png(planted.importance) == first
    assert b"matplotlib" not in first.lower()
    assert importance_png({}).startswith(b"\x89PNG")
    many = {f"feature_{i:02d}": 1.0 / 30 for i in range(30)}
    assert importance_png(many, top=5) != importance_png(many, top=20)
