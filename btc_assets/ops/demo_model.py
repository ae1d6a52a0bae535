"""The demo's model step: the training dataset and the baseline model after the daily job.

Needs a week of ``features_1h`` at least (three non-empty purged splits); with fewer days it
says so and skips. The sandbox market is a random walk: the model is trained and promoted,
and its ``beats_naive_baselines`` check warns, which is the honest result there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from btc_assets.assets.model import BEATS_NAIVE
from btc_assets.model.registry import load_model, model_store
from btc_assets.settings import Settings

JOB = "train_model"
MIN_DAYS = 7


@dataclass(frozen=True)
class ModelRun:
    success: bool
    summary: str


def train(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: int,
    run_config: dict[str, Any],
) -> ModelRun:
    if days < MIN_DAYS:
        return ModelRun(True, f"model: skipped (needs {MIN_DAYS}+ days of features_1h)")
    result = defs.resolve_job_def(JOB).execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )
    if not result.success:
        return ModelRun(False, f"model: FAILED (run {result.run_id[:8]}; see it in the UI)")
    store = model_store(settings.lake_location)  # a folder or gs://bucket/prefix
    model = load_model(store, settings.model.name)
    verdict = next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and e.event_specific_data.check_name == BEATS_NAIVE  # type: ignore[union-attr]
    )
    status = "passed" if verdict.passed else "WARN"  # type: ignore[union-attr]
    rows = model.card["rows"]
    return ModelRun(
        True,
        f"model: {model.name} {model.version} on dataset {model.card['dataset_version']} "
        f"({rows['train']}/{rows['validation']}/{rows['test']} rows), promoted to "
        f"{store.directory(model.name, model.version)}\n"
        f"  {BEATS_NAIVE} {status}: {verdict.description}\n"  # type: ignore[union-attr]
        f"  serve it: btc-assets serve, then curl 'http://{settings.serve.host}:"
        f"{settings.serve.port}/predict/latest?symbol={settings.symbols[0].perp}'",
    )
