"""Is the model better than a naive forecast, or just lucky on this sample?

A lower RMSE on a few hundred hourly returns proves little: on a random walk a model "beats"
the zero forecast by a few percent about as often as it loses. So the edge must hold two
ways: the RMSE is lower by the required margin, and the Diebold-Mariano statistic of the
squared-error differences says the gap is not noise. Hourly forecasts one step ahead have
loss differences that are close to uncorrelated, so the plain standard error is used (no
HAC correction for a horizon of one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# One-sided 97.5 %: the model's mean squared error is lower with that confidence.
MIN_DM_STATISTIC = 1.96


@dataclass(frozen=True)
class Edge:
    rmse_model: float
    rmse_naive: float
    edge_pct: float  # 100 * (1 - rmse_model / rmse_naive)
    dm_statistic: float  # > 0: the model's squared errors are smaller on average
    rows: int

    def significant(self) -> bool:
        return self.dm_statistic >= MIN_DM_STATISTIC


def edge_over(y_true: np.ndarray, model: np.ndarray, naive: np.ndarray) -> Edge:
    """The model's edge over ``naive`` on the same rows."""
    y, m, n = (np.asarray(a, dtype=np.float64) for a in (y_true, model, naive))
    if not y.size or not (y.shape == m.shape == n.shape):
        raise ValueError(f"edge_over needs equal, non-empty arrays; got {y.shape, m.shape}")
    loss_model, loss_naive = (y - m) ** 2, (y - n) ** 2
    rmse_model, rmse_naive = math.sqrt(loss_model.mean()), math.sqrt(loss_naive.mean())
    difference = loss_naive - loss_model
    spread = difference.std(ddof=1) if y.size > 1 else 0.0
    if spread > 0:
        dm = float(difference.mean() / (spread / math.sqrt(y.size)))
    else:
        dm = 0.0 if difference.mean() == 0 else math.copysign(math.inf, difference.mean())
    edge = 100.0 * (1.0 - rmse_model / rmse_naive) if rmse_naive > 0 else 0.0
    return Edge(rmse_model, rmse_naive, edge, dm, int(y.size))
