"""The baseline forecaster: two XGBoost boosters on the ``features_1h`` splits (no Dagster).

- ``regressor``: ``reg:squarederror`` on ``target`` (next-hour log return).
- ``classifier``: ``binary:logistic`` on ``target_up``; it predicts P(next hour is up).

Both stop early on the **validation** split only; the test split is predicted once, after
training, for the figures. Each booster is cut at its best round before it is returned, so
the saved model is exactly the one the figures describe, and prediction needs no
``iteration_range``.

Same data and params give byte-identical boosters, whatever ``nthread`` is: XGBoost's CPU
``hist`` with a fixed ``seed`` is deterministic, and the tests check 1 against 4 threads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import polars as pl
import xgboost as xgb
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from btc_assets.model.metrics import (
    LAST_RETURN,
    classification_metrics,
    naive_predictions,
    regression_metrics,
)
from btc_assets.model.splits import TARGET, TARGET_UP

SPLIT_NAMES = ("train", "validation", "test")
MIN_ROWS = {"train": 50, "validation": 10, "test": 1}
# XGBoost refuses these in feature names; refusing them here names the feature.
_BAD_NAME_CHARS = ("[", "]", "<", ",")


@dataclass(frozen=True)
class TrainingParams:
    """Shared by both boosters. ``nthread=0`` lets XGBoost use every core it sees; the
    boosters do not depend on it (see the module docstring), only the wall time does."""

    seed: int = 7
    max_rounds: int = 500
    early_stopping_rounds: int = 30
    learning_rate: float = 0.05
    max_depth: int = 4
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 5.0
    nthread: int = 0

    def __post_init__(self) -> None:
        checks = {
            "max_rounds": self.max_rounds >= 1,
            "early_stopping_rounds": self.early_stopping_rounds >= 1,
            "learning_rate": self.learning_rate > 0,
            "max_depth": self.max_depth >= 1,
            "subsample": 0 < self.subsample <= 1,
            "colsample_bytree": 0 < self.colsample_bytree <= 1,
            "min_child_weight": self.min_child_weight >= 0,
            "nthread": self.nthread >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainingParams.{name}={getattr(self, name)!r} is out of range")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def xgb_params(self) -> dict[str, float | int | str]:
        keep = {f.name for f in fields(self)} - {"max_rounds", "early_stopping_rounds"}
        return {"tree_method": "hist", "verbosity": 0,
                **{k: v for k, v in self.as_dict().items() if k in keep}}  # fmt: skip


@dataclass(frozen=True)
class TrainedBaseline:
    """The two boosters, cut at their best round, and what they scored.

    ``metrics[split][model][metric]``, split in train/validation/test. Models: ``model`` (the
    regressor), ``zero`` and ``last_return`` (naive baselines), with rmse, mae,
    directional_accuracy, ic, rows; ``classifier`` and ``up_prior`` (always the train split's
    share of ups, the classifier's naive baseline), with directional_accuracy, log_loss, brier,
    up_rate, rows. ``importance``: each feature's share of the regressor's total gain (0 when
    never split on); the shares sum to 1 unless the regressor made no split at all.
    """

    regressor: xgb.Booster
    classifier: xgb.Booster
    features: tuple[str, ...]
    params: TrainingParams
    best_iteration: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float]]]
    importance: dict[str, float]


def train_baseline(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    test: pl.DataFrame,
    features: Sequence[str],
    params: TrainingParams = TrainingParams(),
) -> TrainedBaseline:
    features = tuple(features)
    frames = {"train": train, "validation": validation, "test": test}
    check_inputs(frames, features)
    matrices = {name: feature_matrix(frame, features) for name, frame in frames.items()}
    for name, matrix in matrices.items():
        _check_finite(matrix, features, name)

    def labels(name: str, column: str) -> np.ndarray:
        return frames[name].get_column(column).cast(pl.Float32).to_numpy()

    # Quantised matrices hold one byte per value instead of a float, and the validation
    # matrix shares the train split's bins (``ref``), as XGBoost requires for evaluation.
    def quantised(name: str, ref: xgb.QuantileDMatrix | None = None) -> xgb.QuantileDMatrix:
        return xgb.QuantileDMatrix(
            matrices[name],
            label=labels(name, TARGET),
            ref=ref,
            feature_names=list(features),
            nthread=params.nthread,
        )

    dtrain = quantised("train")
    dvalid = quantised("validation", ref=dtrain)
    regressor, best_reg = _fit(params, "reg:squarederror", "rmse", dtrain, dvalid)
    # Same rows, same bins: only the label changes, so the matrices are not built twice.
    dtrain.set_label(labels("train", TARGET_UP))
    dvalid.set_label(labels("validation", TARGET_UP))
    classifier, best_clf = _fit(params, "binary:logistic", "logloss", dtrain, dvalid)
    del dtrain, dvalid  # the quantised copies are not needed for the figures

    up_prior = float(labels("train", TARGET_UP).astype(np.float64).mean())
    metrics = {
        name: _split_metrics(regressor, classifier, matrices[name], frames[name], up_prior)
        for name in SPLIT_NAMES
    }
    return TrainedBaseline(
        regressor=regressor,
        classifier=classifier,
        features=features,
        params=params,
        best_iteration={"regressor": best_reg, "classifier": best_clf},
        metrics=metrics,
        importance=gain_importance(regressor, features),
    )


def _fit(
    params: TrainingParams, objective: str, metric: str, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix
) -> tuple[xgb.Booster, int]:
    booster = xgb.train(
        {**params.xgb_params(), "objective": objective, "eval_metric": metric},
        dtrain,
        num_boost_round=params.max_rounds,
        evals=[(dvalid, "validation")],  # the last (only) eval set is the one that stops
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    return booster[: best + 1], best


def _split_metrics(
    regressor: xgb.Booster,
    classifier: xgb.Booster,
    matrix: np.ndarray,
    frame: pl.DataFrame,
    up_prior: float,
) -> dict[str, dict[str, float]]:
    target = frame.get_column(TARGET).cast(pl.Float64).to_numpy()
    up = frame.get_column(TARGET_UP).cast(pl.Float64).to_numpy()
    naive = naive_predictions(frame)
    features = tuple(regressor.feature_names or ())
    return {
        "model": regression_metrics(target, predict(regressor, matrix, features)),
        "zero": regression_metrics(target, naive["zero"]),
        "last_return": regression_metrics(target, naive["last_return"]),
        "classifier": classification_metrics(up, predict(classifier, matrix, features)),
        "up_prior": classification_metrics(up, np.full(frame.height, up_prior)),
    }


def check_inputs(frames: Mapping[str, pl.DataFrame], features: tuple[str, ...]) -> None:
    """ValueError naming the split, column, dtype or count that makes training impossible."""
    if not features:
        raise ValueError("no feature columns given")
    twice = sorted({f for f in features if features.count(f) > 1})
    if twice:
        raise ValueError(f"feature(s) {twice} listed more than once")
    labels = [f for f in features if f in (TARGET, TARGET_UP)]
    if labels:
        raise ValueError(f"label column(s) {labels} listed as features: that is look-ahead")
    for f in features:
        if any(c in f for c in _BAD_NAME_CHARS):
            raise ValueError(f"feature name {f!r} contains one of {_BAD_NAME_CHARS}")
    for split in SPLIT_NAMES:
        frame = frames[split]
        if frame.is_empty():
            raise ValueError(f"the {split} split is empty")
        if frame.height < MIN_ROWS[split]:
            raise ValueError(f"the {split} split has {frame.height} rows; at least "
                             f"{MIN_ROWS[split]} are needed")  # fmt: skip
        missing = [c for c in (*features, TARGET, TARGET_UP, LAST_RETURN, "ts")
                   if c not in frame.columns]  # fmt: skip
        if missing:
            raise ValueError(f"column(s) {missing} missing from the {split} split")
        for f in features:
            dtype = frame.schema[f]
            if not (dtype.is_numeric() or dtype == pl.Boolean):
                raise ValueError(f"feature {f!r} in the {split} split has dtype {dtype}; "
                                 "features must be numeric or Boolean")  # fmt: skip
        for column, valid in ((TARGET, "finite"), (TARGET_UP, "0 or 1")):
            values = frame.get_column(column).cast(pl.Float64)
            nulls = values.null_count()
            if nulls:
                raise ValueError(f"{column} has {nulls} null value(s) in the {split} split")
            ok = values.is_finite() if column == TARGET else values.is_in([0.0, 1.0])
            bad = int((~ok).sum())
            if bad:
                raise ValueError(f"{column} has {bad} value(s) not {valid} in the {split} split")
    # The splits must not overlap in time: an overlap would let early stopping (validation)
    # or the test figures see hours the model trained on.
    for earlier, later in (("train", "validation"), ("validation", "test")):
        last, first = frames[earlier]["ts"].max(), frames[later]["ts"].min()
        if last >= first:
            raise ValueError(f"the {earlier} split ends at {last}, not before the {later} "
                             f"split starts at {first}: splits must be time-ordered")  # fmt: skip


def _check_finite(matrix: np.ndarray, features: tuple[str, ...], split: str) -> None:
    # Nulls are NaN (missing, which XGBoost handles); an infinity makes XGBoost fail without
    # naming the column, and a Float64 beyond float32's range becomes one in the cast.
    infinite = np.isinf(matrix).sum(axis=0)
    for f, count in zip(features, infinite, strict=True):
        if count:
            raise ValueError(f"feature {f!r} has {count} infinite value(s) in the {split} split")


def feature_matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The features as C-ordered float32 (XGBoost's own precision), nulls as NaN."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"feature column(s) {missing} missing from the frame")
    cast = frame.select([pl.col(f).cast(pl.Float32) for f in features])
    return cast.to_numpy(order="c").astype(np.float32, copy=False)


def predict(
    booster: xgb.Booster, frame_or_matrix: pl.DataFrame | np.ndarray, features: Sequence[str]
) -> np.ndarray:
    """Predictions as float64: a return for the regressor, P(up) for the classifier."""
    features = tuple(features)
    names = tuple(booster.feature_names or ())
    if names and names != features:
        raise ValueError(f"booster features {list(names)} differ from {list(features)}")
    if isinstance(frame_or_matrix, pl.DataFrame):
        matrix = feature_matrix(frame_or_matrix, features)
    else:
        matrix = np.asarray(frame_or_matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ValueError(f"matrix of shape {matrix.shape} for {len(features)} features")
    return np.asarray(booster.inplace_predict(matrix, missing=np.nan), dtype=np.float64)


def gain_importance(booster: xgb.Booster, features: Sequence[str]) -> dict[str, float]:
    # Total gain rather than XGBoost's per-split average: a feature split on once with luck
    # should not outrank one the trees rely on everywhere.
    gains = booster.get_score(importance_type="total_gain")
    shares = {f: float(np.sum(gains.get(f, 0.0))) for f in features}
    total = sum(shares.values())
    return {f: gain / total if total > 0 else 0.0 for f, gain in shares.items()}


def importance_png(importance: Mapping[str, float], top: int = 20) -> bytes:
    """A horizontal bar chart of the ``top`` largest shares; same input, same bytes."""
    ranked = sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ranked.reverse()  # barh draws bottom-up; the largest goes on top
    figure = Figure(figsize=(7.0, 1.4 + 0.28 * max(len(ranked), 1)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if ranked:
        positions = np.arange(len(ranked))
        axes.barh(positions, [v for _, v in ranked], color="#4c72b0")
        axes.set_yticks(positions, [name for name, _ in ranked])
    else:
        axes.text(0.5, 0.5, "no features", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("share of the regressor's total gain")
    axes.set_title(f"Feature importance (top {len(ranked)} of {len(importance)})")
    figure.tight_layout()
    buffer = io.BytesIO()
    # Without the Software entry the file carries no matplotlib version, so a library upgrade
    # alone does not change a model version's bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def booster_bytes(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def load_booster(raw: bytes) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return booster
