"""Forecast figures on literal arrays, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from btc_assets.model.metrics import (
    average_ranks,
    classification_metrics,
    naive_predictions,
    regression_metrics,
    spearman,
)


def test_regression_metrics_by_hand() -> None:
    true = np.array([0.01, -0.02, 0.03, 0.0])
    pred = np.array([0.02, -0.01, -0.01, 0.0])
    m = regression_metrics(true, pred)
    # errors 0.01, 0.01, -0.04, 0: squares sum to 18e-4
    assert m["rmse"] == pytest.approx(math.sqrt(18e-4 / 4))
    assert m["mae"] == pytest.approx(0.06 / 4)
    # signs (1,-1,1,0) vs (1,-1,-1,0): the third is wrong; 0 for 0 is right
    assert m["directional_accuracy"] == pytest.approx(0.75)
    # ranks true (3,1,4,2), pred (4,1.5,1.5,3): covariance 0.5, norms² 5 and 4.5
    assert m["ic"] == pytest.approx(0.5 / math.sqrt(5 * 4.5))
    assert m["rows"] == 4


def test_a_zero_prediction_is_no_call() -> None:
    m = regression_metrics(np.array([0.01, -0.01, 0.0]), np.zeros(3))
    assert m["directional_accuracy"] == pytest.approx(1 / 3)  # right only on the flat hour
    assert math.isnan(m["ic"])
    m = regression_metrics(np.array([0.0, -0.01]), np.array([0.02, -0.03]))
    assert m["directional_accuracy"] == pytest.approx(0.5)  # a call on a flat hour is wrong


def test_ic_is_nan_for_a_constant_prediction_and_rank_based() -> None:
    true = np.array([0.1, 0.2, 0.3, 0.4])
    assert math.isnan(spearman(true, np.full(4, 0.5)))
    assert math.isnan(spearman(np.full(4, 0.5), true))
    assert spearman(true, true**3) == pytest.approx(1.0)  # monotone, not linear
    assert spearman(true, -true) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.array([1.0]), np.array([2.0])))


def test_average_ranks_share_ties() -> None:
    np.testing.assert_allclose(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])
    np.testing.assert_allclose(average_ranks(np.array([5.0, 5.0, 5.0])), [2, 2, 2])


def test_ties_on_both_sides() -> None:
    # ranks true (1.5,1.5,3,4), pred (1,2.5,2.5,4): deviations (-1,-1,0.5,1.5), (-1.5,0,0,1.5)
    ic = spearman(np.array([1.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 1.0, 9.0]))
    assert ic == pytest.approx(3.75 / math.sqrt(4.5 * 4.5))


def test_empty_and_mismatched_input() -> None:
    m = regression_metrics(np.array([]), np.array([]))
    assert m["rows"] == 0 and math.isnan(m["rmse"]) and math.isnan(m["ic"])
    with pytest.raises(ValueError, match="3 rows but y_pred has 2"):
        regression_metrics(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="y_pred has 1 non-finite"):
        regression_metrics(np.zeros(2), np.array([0.0, np.nan]))


def test_classification_metrics_by_hand() -> None:
    up = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.2, 0.4, 0.5])
    m = classification_metrics(up, p)
    assert m["directional_accuracy"] == pytest.approx(0.75)  # 0.5 is not an "up" call
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.5)) / 4
    assert m["log_loss"] == pytest.approx(expected)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.25) / 4)
    assert m["up_rate"] == pytest.approx(0.5)
    assert m["rows"] == 4
    assert math.isfinite(classification_metrics(up, np.array([0.0, 1.0, 0.0, 1.0]))["log_loss"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        classification_metrics(np.array([2.0]), np.array([0.5]))


def test_naive_predictions() -> None:
    frame = pl.DataFrame({"ret_1h": [0.01, None, float("nan"), -0.02]})
    naive = naive_predictions(frame)
    np.testing.assert_array_equal(naive["zero"], np.zeros(4))
    # the past hour's simple return as a log return, the target's unit
    np.testing.assert_allclose(naive["last_return"], [math.log(1.01), 0.0, 0.0, math.log(0.98)])
    with pytest.raises(ValueError, match="ret_1h"):
        naive_predictions(pl.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="not a simple return"):
        naive_predictions(pl.DataFrame({"ret_1h": [-1.5]}))
