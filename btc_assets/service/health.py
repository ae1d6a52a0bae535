"""What ``/health/ready`` says: ready when a model serves and every symbol has a usable
features row younger than the maximum age (and one the model can use); every reason if not."""

from __future__ import annotations

from typing import Any

import numpy as np

from btc_assets.service.config import ServiceConfig
from btc_assets.service.latest import LatestFeatures
from btc_assets.service.models import ModelHolder


def readiness(config: ServiceConfig, holder: ModelHolder, latest: LatestFeatures) -> dict[str, Any]:
    model = holder.current
    reasons: list[str] = [] if model is not None else [holder.why_not_serving()]
    now = config.now()
    limit = config.max_feature_age.total_seconds()
    symbols: dict[str, dict[str, Any]] = {}
    for name, state in latest.states.items():
        row = state.row
        entry: dict[str, Any] = {"ts": None, "features_day": None, "input_age_seconds": None}
        if state.error:
            reasons.append(f"{name}: {state.error}")
        if row is None:
            reasons.append(f"{name}: {state.problem}")
        else:
            age = (now - row.ts).total_seconds()
            entry = {"ts": row.ts.isoformat(), "features_day": row.day.isoformat(),
                     "input_age_seconds": round(age, 3)}  # fmt: skip
            if age > limit:
                reasons.append(
                    f"{name}: newest usable {config.features_table} row closed at "
                    f"{row.ts.isoformat()}, {age / 60:.0f} min ago, older than the "
                    f"{limit / 60:.0f} min allowed"
                )
            if model is not None and not isinstance(inputs := row.inputs_for(model), np.ndarray):
                reasons.append(f"{name}: model {model.version} needs {', '.join(inputs)}")
        entry["skipped_days"] = {d.isoformat(): why for d, why in state.skipped.items()}
        symbols[name] = entry
    refusal = holder.last_refusal
    ages = [e["input_age_seconds"] for e in symbols.values() if e["input_age_seconds"] is not None]
    return {
        "status": "not ready" if reasons else "ready",
        "reasons": reasons,
        "model_version": model.version if model is not None else None,
        "model_env": model.env if model is not None else None,
        "model_loaded_at": model.loaded_at.isoformat() if model is not None else None,
        "last_refusal": refusal.as_json() if refusal is not None else None,
        "gate": config.gate_state,
        "max_feature_age_seconds": limit,
        "input_age_seconds": max(ages) if ages else None,
        "symbols": symbols,
    }
