"""The training dataset's and the baseline model's configuration (``ModelSettings``)."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from btc_assets.model.splits import SplitPlan
from btc_assets.model.train import TrainingParams
from btc_assets.settings_model import ModelSettings


class ModelResource(dg.ConfigurableResource):
    name: str = "baseline_1h"
    window_days: int = 730
    train_share: float = 0.70
    validation_share: float = 0.15
    test_share: float = 0.15
    embargo_hours: int = 0
    min_edge_pct: float = 1.0
    seed: int = 7

    def split_plan(self) -> SplitPlan:
        return SplitPlan(
            train=self.train_share,
            validation=self.validation_share,
            test=self.test_share,
            embargo=timedelta(hours=self.embargo_hours),
        )

    def params(self) -> TrainingParams:
        return TrainingParams(seed=self.seed)


def model_resource(settings: ModelSettings) -> ModelResource:
    train, validation, test = settings.split
    return ModelResource(
        name=settings.name,
        window_days=settings.window_days,
        train_share=train,
        validation_share=validation,
        test_share=test,
        embargo_hours=settings.embargo_hours,
        min_edge_pct=settings.min_edge_pct,
        seed=settings.seed,
    )
