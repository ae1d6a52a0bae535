"""``training_dataset`` and ``baseline_model`` (group ``model``): the forecasting loop as assets.

- ``training_dataset`` reads ``features_1h`` through the day gate over a window (``ModelResource``
  or the launchpad's ``TrainingWindow``), adds the next-hour target, cuts purged time-ordered
  splits (``model/splits.py``) and commits them as a dataset version. Its blocking
  ``no_lookahead`` check fails if any row holds a published value from after its bar; such a
  version is stored for inspection but never becomes ``CURRENT``.
- ``baseline_model`` trains on the ``CURRENT`` dataset (``model/train.py``), commits the
  version with its card (dataset sha256, window, metrics) and promotes it: the service picks
  it up. Its ``beats_naive_baselines`` check compares validation metrics only, and WARNs: a
  model that loses to "no change" on a random walk is the honest outcome, not a broken run.
  Test metrics are reported, never used to choose anything.
"""

import base64
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl
import xgboost as xgb

from btc_assets import clock
from btc_assets.core.tables import features_1h_table
from btc_assets.defs.day_gate import NEVER_BUILT, Input, gate_names, gated_deps
from btc_assets.defs.model_resources import ModelResource
from btc_assets.defs.partitions import DAILY_START
from btc_assets.defs.resources import DatasetResource
from btc_assets.model.compare import MIN_DM_STATISTIC, Edge, edge_over
from btc_assets.model.dataset import (
    DATASET_NAME,
    dataset_files,
    dataset_store,
    load_dataset,
    lookahead_by_split,
)
from btc_assets.model.metrics import naive_predictions
from btc_assets.model.registry import model_store, save_model
from btc_assets.model.splits import SPLITS, SplitError, split_by_time, with_target
from btc_assets.model.train import (
    TrainedBaseline,
    booster_bytes,
    importance_png,
    predict,
    train_baseline,
)

NO_LOOKAHEAD = "no_lookahead"
BEATS_NAIVE = "beats_naive_baselines"
MODEL_KINDS = {"xgboost", "parquet"}
_SHOWN = 10


class TrainingWindow(dg.Config):
    """Launchpad overrides of the window (UTC dates, YYYY-MM-DD, both ends included)."""

    start: str | None = None
    end: str | None = None
    window_days: int | None = None


def _window(config: TrainingWindow, present: list[date], default_days: int) -> list[date]:
    """The days to read: the config's, else ``default_days`` ending with the newest day
    built, never before the oldest day built (the card's window is what the data covers)."""
    newest = max(present, default=None)
    try:
        end = date.fromisoformat(config.end) if config.end else newest
        start = date.fromisoformat(config.start) if config.start else None
    except ValueError as exc:
        raise ValueError(f"training window config: {exc} (expected YYYY-MM-DD)") from None
    if end is None:
        raise ValueError("features_1h has no day built yet: materialize features_1h first")
    days = config.window_days or default_days
    start = start or max(end - timedelta(days=days - 1), min(present, default=DAILY_START))
    start = max(start, DAILY_START)
    if start > end:
        raise ValueError(f"training window config: start {start} is after end {end}")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _md_table(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """Regression rows (model and the naive forecasts), then the classifier's."""

    def cells(m: dict[str, float], keys: tuple[str, ...]) -> str:
        return " | ".join(f"{m.get(k, float('nan')):.6g}" for k in keys)

    regression = ("rmse", "mae", "directional_accuracy", "ic")
    rows = ["| split | forecast | rmse | mae | directional accuracy | ic |", "|" + "---|" * 6]
    rows += [f"| {split} | {name} | {cells(models[name], regression)} |"
             for split, models in metrics.items() for name in ("model", "zero", "last_return")
             if name in models]  # fmt: skip
    classification = ("directional_accuracy", "log_loss", "brier")
    rows += ["", "| split | direction | accuracy | log loss | brier |", "|" + "---|" * 5]
    rows += [f"| {split} | {name} | {cells(models[name], classification)} |"
             for split, models in metrics.items() for name in ("classifier", "up_prior")
             if name in models]  # fmt: skip
    return "\n".join(rows)


def model_assets(series: Any) -> list[dg.AssetsDefinition]:
    features_table = features_1h_table(series)

    @dg.asset(
        name="training_dataset",
        group_name="model",
        kinds=MODEL_KINDS - {"xgboost"} | {"polars"},
        description="features_1h rows over the training window with the next-hour log return "
        "target, in purged time-ordered train/validation/test splits (a versioned dataset in "
        "the lake).",
        check_specs=[
            dg.AssetCheckSpec(
                NO_LOOKAHEAD,
                asset="training_dataset",
                blocking=True,
                description="No row uses a published value (available_at or event_time) "
                "later than its bar close.",
            )
        ],
        **gated_deps([Input(features_table)]),
    )
    def training_dataset(
        context: dg.AssetExecutionContext,
        config: TrainingWindow,
        dataset: DatasetResource,
        model: ModelResource,
    ) -> dg.MaterializeResult:
        lake, perps = dataset.lake(), dataset.lake_symbols(features_table)
        present = [d for p in perps for d in lake.days_present(features_table.name, p)]
        days = _window(config, present, model.window_days)
        gated = gate_names(context.instance, lake, features_table, perps, days, dataset.env)
        frames, left_out, never_built = [], {}, 0
        for perp, (unusable, _usable, scan) in gated.items():
            frames.append(with_target(scan).collect())
            never_built += sum(why == NEVER_BUILT for why in unusable.values())
            left_out |= {f"{perp} {d}": why for d, why in sorted(unusable.items())
                         if why != NEVER_BUILT}  # fmt: skip
        if left_out:
            context.log.warning(f"{len(left_out)} features_1h day(s) left out: {left_out}")
        frame = pl.concat(frames, how="vertical_relaxed")
        try:
            splits = split_by_time(frame, model.split_plan())
        except SplitError as exc:
            raise SplitError(f"training window {days[0]}..{days[-1]}: {exc}") from None
        leaks = lookahead_by_split(splits.frames)
        card = {
            "window": {"start": days[0].isoformat(), "end": days[-1].isoformat()},
            "symbols": perps,
            "env": dataset.env,
            "days_left_out": left_out,
            "days_never_built": never_built,
            "plan": {
                "shares": [model.train_share, model.validation_share, model.test_share],
                "purge_hours": 1,
                "embargo_hours": model.embargo_hours,
            },
        }
        store = dataset_store(lake.root)
        artifact = store.commit(DATASET_NAME, dataset_files(splits, card))
        if not leaks:
            store.promote(DATASET_NAME, artifact.version)
        bounds = splits.boundaries
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(f.height for f in splits.frames.values()),
                "version": artifact.version,
                "sha256": artifact.sha256,
                "path": dg.MetadataValue.path(str(artifact.directory)),
                "promoted": not leaks,
                "window": f"{days[0]}..{days[-1]}",
                **{f"rows_{s}": splits.frames[s].height for s in SPLITS},
                **{f"{s}_first": bounds.first[s].isoformat() for s in SPLITS},
                **{f"{s}_last": bounds.last[s].isoformat() for s in SPLITS},
                "purged_rows": dg.MetadataValue.json(dict(bounds.purged_rows)),
                "rows_without_target": splits.rows_without_target,
                "features": dg.MetadataValue.json(list(splits.features)),
                "days_left_out": dg.MetadataValue.json(dict(list(left_out.items())[:_SHOWN])),
                "days_left_out_count": len(left_out),
                "days_never_built": never_built,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=NO_LOOKAHEAD,
                    passed=not leaks,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=(
                        f"look-ahead in {leaks}: this version is not promoted"
                        if leaks
                        else "every row's published values were known at its bar close"
                    ),
                    metadata={"lookahead_rows": dg.MetadataValue.json(leaks)},
                )
            ],
        )

    @dg.asset(
        name="baseline_model",
        group_name="model",
        kinds=MODEL_KINDS,
        deps=["training_dataset"],
        description="XGBoost next-hour return regressor and direction classifier trained on "
        "the current training_dataset (early stopping on validation only), versioned in the "
        "lake and promoted for the prediction service.",
        check_specs=[
            dg.AssetCheckSpec(
                BEATS_NAIVE,
                asset="baseline_model",
                description="Validation RMSE below the best naive baseline's (zero return, "
                "last return) by BTC_ASSETS_MODEL_MIN_EDGE_PCT, and directional accuracy above "
                "the last return's. WARN only: on a random walk no model should pass.",
            )
        ],
    )
    def baseline_model(
        context: dg.AssetExecutionContext, dataset: DatasetResource, model: ModelResource
    ) -> dg.MaterializeResult:
        lake = dataset.lake()
        artifact = dataset_store(lake.root).read_current(DATASET_NAME)
        if artifact is None:
            raise ValueError("no training dataset promoted: materialize training_dataset first")
        stored = load_dataset(artifact)
        if stored.card.get("env") != dataset.env:
            raise ValueError(
                f"dataset {stored.version} was built in env {stored.card.get('env')!r}, this "
                f"is {dataset.env}: rebuild training_dataset"
            )
        leaks = lookahead_by_split(stored.frames)
        if leaks:  # a promoted dataset never has any; a hand-made pointer might
            raise ValueError(f"dataset {stored.version} has look-ahead rows {leaks}: refused")
        trained = train_baseline(
            stored.frames["train"], stored.frames["validation"], stored.frames["test"],
            stored.features, model.params(),
        )  # fmt: skip
        picture = importance_png(trained.importance)
        card = {
            "name": model.name,
            "features": list(stored.features),
            "dtypes": stored.card["dtypes"],
            "dataset_version": stored.version,
            "dataset_sha256": stored.sha256,
            "window": stored.card["window"],
            "boundaries": stored.card["boundaries"],
            "rows": stored.card["rows"],
            "symbols": stored.card["symbols"],
            "env": stored.card["env"],
            "metrics": trained.metrics,
            "best_iteration": trained.best_iteration,
            "params": trained.params.as_dict(),
            "importance": trained.importance,
            "target": "ln(close[ts + 1h] / close[ts]) of the perp",
            "xgboost": xgb.__version__,
        }
        store = model_store(lake.root)
        saved = save_model(
            store, model.name,
            regressor=booster_bytes(trained.regressor),
            classifier=booster_bytes(trained.classifier),
            card=card, importance_png=picture,
        )  # fmt: skip
        store.promote(model.name, saved.version)
        context.log.info(f"model {model.name} {saved.version} promoted ({saved.directory})")
        verdict = beats_naive(
            validation_edges(trained, stored.frames["validation"]),
            trained.metrics["validation"],
            model.min_edge_pct,
        )
        image = base64.b64encode(picture).decode()
        return dg.MaterializeResult(
            metadata={
                "version": saved.version,
                "sha256": saved.sha256,
                "path": dg.MetadataValue.path(str(saved.directory)),
                "dataset_version": stored.version,
                "dataset_sha256": stored.sha256,
                "env": stored.card["env"],
                "promoted_at": clock.now_utc().isoformat(),
                "best_iteration": dg.MetadataValue.json(trained.best_iteration),
                "metrics": dg.MetadataValue.md(
                    _md_table(trained.metrics)
                    + "\n\nTest metrics are reported only: early stopping and every choice "
                    "used validation."
                ),
                "feature_importance": dg.MetadataValue.md(
                    f"![feature importance](data:image/png;base64,{image})"
                ),
            },
            check_results=[verdict],
        )

    return [training_dataset, baseline_model]


def validation_edges(trained: TrainedBaseline, validation: pl.DataFrame) -> dict[str, Edge]:
    """The model's edge over each naive forecast, on the validation rows."""
    y = validation["target"].to_numpy()
    predicted = predict(trained.regressor, validation, trained.features)
    return {
        name: edge_over(y, predicted, naive)
        for name, naive in naive_predictions(validation).items()
    }


def beats_naive(
    edges: dict[str, Edge], accuracy: dict[str, dict[str, float]], min_edge_pct: float
) -> dg.AssetCheckResult:
    """Passes when the model beats the better naive forecast by the margin, and the
    Diebold-Mariano statistic says the gap is not luck (``model/compare.py``)."""
    best_name = min(edges, key=lambda n: edges[n].rmse_naive)
    best = edges[best_name]
    passed = best.edge_pct >= min_edge_pct and best.significant()
    why = []
    if best.edge_pct < min_edge_pct:
        why.append(f"needed {min_edge_pct}% lower")
    if not best.significant():
        why.append(f"Diebold-Mariano {best.dm_statistic:.2f} < {MIN_DM_STATISTIC}: "
                   "indistinguishable from luck")  # fmt: skip
    return dg.AssetCheckResult(
        check_name=BEATS_NAIVE,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"validation RMSE {best.rmse_model:.6g} vs {best_name}'s {best.rmse_naive:.6g} "
            f"({best.edge_pct:+.2f}%, {best.rows} rows)"
            + ("" if passed else f": no edge over the naive baselines ({'; '.join(why)})")
        ),
        metadata={
            "rmse_edge_pct": round(best.edge_pct, 4),
            "min_edge_pct": min_edge_pct,
            "diebold_mariano": round(best.dm_statistic, 4),
            "best_naive": best_name,
            "model_rmse": best.rmse_model,
            "naive_rmse": best.rmse_naive,
            "rows": best.rows,
            "directional_accuracy": accuracy["model"]["directional_accuracy"],
            "naive_directional_accuracy": accuracy["last_return"]["directional_accuracy"],
            **{f"edge_pct_vs_{n}": round(e.edge_pct, 4) for n, e in edges.items()},
        },
    )
