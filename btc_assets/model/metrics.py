"""Forecast figures and the naive baselines every model is compared with (numpy and polars only).

Conventions, chosen so that a model cannot look better than it is:

- ``directional_accuracy`` compares ``sign(pred)`` with ``sign(true)``. A prediction of
  exactly 0 makes no call, so it is wrong unless the true value is 0 too. The zero baseline
  therefore scores the share of flat hours (about 0), not a coin flip's 0.5.
- ``ic`` is the Spearman rank correlation, ties given their average rank. It is NaN when
  either side is constant (the zero baseline, a model that never split): a rank correlation
  with a constant is undefined, and 0 would pass for "measured, no skill".
- The classifier calls "up" when ``p > 0.5``; its ``directional_accuracy`` is the share of
  rows where that call equals ``target_up`` (a flat hour counts as "not up", as in the label).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

LAST_RETURN = "ret_1h"
# Keeps log(0) out of the log loss of a classifier that is certain and wrong.
_EPS = 1e-15


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64).ravel()
    pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} rows but y_pred has {pred.size}")
    for name, values in (("y_true", true), ("y_pred", pred)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite value(s)")
    return true, pred


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each tie group
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    true, pred = _pair(y_true, y_pred)
    if true.size < 2:
        return math.nan
    a, b = average_ranks(true), average_ranks(pred)
    a -= a.mean()
    b -= b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0:
        return math.nan
    return float(a @ b) / denom


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``rmse``, ``mae``, ``directional_accuracy``, ``ic`` and ``rows`` (NaN figures if empty)."""
    true, pred = _pair(y_true, y_pred)
    if not true.size:
        nan = math.nan
        return {"rmse": nan, "mae": nan, "directional_accuracy": nan, "ic": nan, "rows": 0}
    err = pred - true
    return {
        "rmse": math.sqrt(float(np.mean(err * err))),
        "mae": float(np.mean(np.abs(err))),
        "directional_accuracy": float(np.mean(np.sign(pred) == np.sign(true))),
        "ic": spearman(true, pred),
        "rows": true.size,
    }


def classification_metrics(y_up: np.ndarray, p_up: np.ndarray) -> dict[str, float]:
    """``directional_accuracy``, ``log_loss``, ``brier``, ``up_rate`` (share of true ups),
    ``rows`` for probabilities ``p_up`` of the 0/1 label ``y_up``."""
    up, p = _pair(y_up, p_up)
    if not up.size:
        nan = math.nan
        return {"directional_accuracy": nan, "log_loss": nan, "brier": nan, "up_rate": nan,
                "rows": 0}  # fmt: skip
    if np.any((up != 0.0) & (up != 1.0)):
        raise ValueError("y_up must hold only 0 and 1")
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p_up must be probabilities in [0, 1]")
    clipped = np.clip(p, _EPS, 1.0 - _EPS)
    log_loss = -np.mean(up * np.log(clipped) + (1.0 - up) * np.log1p(-clipped))
    return {
        "directional_accuracy": float(np.mean((p > 0.5) == (up == 1.0))),
        "log_loss": float(log_loss),
        "brier": float(np.mean((p - up) ** 2)),
        "up_rate": float(np.mean(up)),
        "rows": up.size,
    }


def naive_predictions(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """``zero`` (no move) and ``last_return`` (the past hour repeats; a null ``ret_1h`` is 0).

    ``ret_1h`` is a simple return and the target a log return: the baseline repeats the past
    hour's log return, ``ln(1 + ret_1h)``, so it is scored in the target's own unit.
    """
    if LAST_RETURN not in frame.columns:
        raise ValueError(f"column {LAST_RETURN!r} (the last-return baseline) is missing")
    simple = frame.get_column(LAST_RETURN).cast(pl.Float64).fill_nan(None)
    if (simple <= -1).any():
        raise ValueError(f"{LAST_RETURN} has values <= -1: not a simple return")
    last = simple.log1p().fill_null(0.0)
    return {
        "zero": np.zeros(frame.height, dtype=np.float64),
        "last_return": last.to_numpy().astype(np.float64, copy=False),
    }
