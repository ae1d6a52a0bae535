"""Model versions in the lake, and the one way to load one (no Dagster).

A version is an artifact (``artifacts.py``) of kind ``models``:

    models/<name>/<version>/regressor.ubj     XGBoost booster, next-hour log return
                            classifier.ubj    XGBoost booster, P(next-hour return > 0)
                            card.json         features with dtypes, training window, split
                                              boundaries, metrics, params, the dataset's
                                              version and sha256, env, library versions
                            importance.png    the regressor's feature importance
    models/<name>/CURRENT                      the version the service serves

The version is the sha256 of its manifest, which pins the dataset's sha256 through the card:
a prediction that names its model version names the exact rows the model learnt from.

``load_model`` refuses, with the reason, a version that does not verify, a card of another
format, or boosters whose features differ from the card's: whoever serves keeps the model it
had.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from btc_assets.artifacts import Artifact, ArtifactError, ArtifactStore

CARD_FORMAT = 1
REGRESSOR = "regressor.ubj"
CLASSIFIER = "classifier.ubj"
CARD = "card.json"
IMPORTANCE = "importance.png"
DEFAULT_MODEL_NAME = "baseline_1h"


class ModelRefused(ValueError):
    """A stored version cannot be served; the message says which file and why."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    sha256: str  # the version's manifest digest
    card: Mapping[str, Any]
    regressor: xgb.Booster
    classifier: xgb.Booster
    features: tuple[str, ...]
    dtypes: Mapping[str, str]

    @property
    def env(self) -> str:
        return str(self.card.get("env", "unknown"))


def model_store(lake_root: Path | str) -> ArtifactStore:
    """The models of a lake root: a folder or ``gs://bucket/prefix``."""
    return ArtifactStore(lake_root, "models")


def card_json(card: Mapping[str, Any]) -> bytes:
    """Stable bytes: same card, same file, same version. NaN (an IC against a constant) is
    written as null: strict JSON, readable by any tool."""
    return (
        json.dumps(_finite(card), sort_keys=True, indent=2, default=str, allow_nan=False) + "\n"
    ).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def save_model(
    store: ArtifactStore,
    name: str,
    *,
    regressor: bytes,
    classifier: bytes,
    card: Mapping[str, Any],
    importance_png: bytes,
) -> Artifact:
    """Commit a version (not promoted: ``store.promote`` once its checks allow)."""
    required = {"features", "dtypes", "dataset_sha256", "env"}
    missing = sorted(required - set(card))
    if missing:
        raise ArtifactError(f"model card of {name} lacks {missing}")
    return store.commit(
        name,
        {
            REGRESSOR: regressor,
            CLASSIFIER: classifier,
            CARD: card_json({**card, "format": CARD_FORMAT}),
            IMPORTANCE: importance_png,
        },
    )


def load_model(store: ArtifactStore, name: str, version: str | None = None) -> LoadedModel:
    """The version (default: ``CURRENT``), verified and loaded, or ``ModelRefused``."""
    try:
        version = version or store.current(name)
        if version is None:
            raise ModelRefused(f"no version of model {name!r} promoted in {store.root}")
        artifact = store.verify(name, version)
        card = json.loads(artifact.read_bytes(CARD))
        regressor_raw = artifact.read_bytes(REGRESSOR)
        classifier_raw = artifact.read_bytes(CLASSIFIER)
    except (ArtifactError, ValueError) as exc:
        if isinstance(exc, ModelRefused):
            raise
        raise ModelRefused(f"model {name} {version}: {exc}") from exc
    where = artifact.path  # a Path locally, a gs:// URL on GCS: only for messages
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelRefused(f"{where(CARD)}: card format {card.get('format')!r}, expected 1")
    features = tuple(card.get("features") or ())
    dtypes = card.get("dtypes") or {}
    if not features or set(dtypes) != set(features):
        raise ModelRefused(f"{where(CARD)}: features and dtypes disagree or are empty")
    boosters = {}
    for file, raw in ((REGRESSOR, regressor_raw), (CLASSIFIER, classifier_raw)):
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as exc:
            raise ModelRefused(f"{where(file)}: not an XGBoost model: {exc}") from exc
        booster.set_param({"nthread": 1})  # one row per request: threads only cost
        if tuple(booster.feature_names or ()) != features:
            raise ModelRefused(
                f"{where(file)}: its features {_short(booster.feature_names)} are not the "
                f"card's {_short(features)}"
            )
        boosters[file] = booster
    return LoadedModel(
        name=name,
        version=version,
        sha256=artifact.sha256,
        card=card,
        regressor=boosters[REGRESSOR],
        classifier=boosters[CLASSIFIER],
        features=features,
        dtypes=dict(dtypes),
    )


def _short(names: Sequence[str] | None) -> str:
    names = list(names or [])
    return str(names) if len(names) <= 6 else f"{names[:6]}... ({len(names)})"
