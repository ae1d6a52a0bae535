"""The ``/predict`` body, read by hand: ``{"instances": [{feature: value, ...}, ...]}``.

Faster than a pydantic model built per model version, and the 422 can name every problem:
each missing, extra or mistyped feature of each instance, not only the first. A value is a
JSON number or null (missing: XGBoost's NaN); true/false only for a Boolean feature of the
card. Non-standard JSON (NaN, Infinity) is refused; a number beyond float32's range too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from btc_assets.service.models import ServedModel

_MISSING = object()
_JSON_TYPES = {str: "string", bool: "boolean", list: "array", dict: "object"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class BodyError(ValueError):
    """The body cannot be predicted on; ``problems`` lists every reason."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def problem(instance: int | None, feature: str | None, text: str) -> dict[str, Any]:
    return {"instance": instance, "feature": feature, "problem": text}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (send null for a missing value)")


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def parse_instances(body: bytes, model: ServedModel, max_instances: int) -> np.ndarray:
    """The instances as a float32 array in ``model``'s column order, or ``BodyError``."""
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError([problem(None, None, f"body is not JSON: {exc}")]) from None
    shape = 'the body must be a JSON object {"instances": [{feature: value, ...}, ...]}'
    if type(doc) is not dict:
        raise BodyError([problem(None, None, f"{shape}, got {_json_type(doc)}")])
    problems = [
        problem(None, None, f"unknown field {key!r}: {shape}") for key in doc if key != "instances"
    ]
    instances = doc.get("instances", _MISSING)
    if instances is _MISSING:
        problems.append(problem(None, None, f"no 'instances' field: {shape}"))
    elif type(instances) is not list:
        got = _json_type(instances)
        problems.append(problem(None, None, f"'instances' must be a list of objects, got {got}"))
    elif not instances:
        problems.append(problem(None, None, f"'instances' is empty: send 1 to {max_instances}"))
    elif len(instances) > max_instances:
        problems.append(
            problem(None, None, f"{len(instances)} instances: at most {max_instances} a request")
        )
    if problems:
        raise BodyError(problems)
    flat: list[Any] = []
    for i, instance in enumerate(instances):
        if type(instance) is not dict:
            got = _json_type(instance)
            problems.append(problem(i, None, f"expected an object of feature: value, got {got}"))
            continue
        _row(i, instance, model, flat, problems)
    if problems:
        raise BodyError(problems)
    with np.errstate(over="ignore"):
        try:
            rows = np.array(flat, dtype=np.float32)
        except OverflowError:  # an integer beyond float64
            rows = None
    if rows is None or np.isinf(rows).any():
        raise BodyError(_out_of_range(instances, model))
    return rows.reshape(len(instances), len(model.features))


def _row(
    i: int,
    instance: dict[str, Any],
    model: ServedModel,
    flat: list[Any],
    problems: list[dict[str, Any]],
) -> None:
    found = 0
    for name in model.features:
        value = instance.get(name, _MISSING)
        kind = type(value)
        if kind is float or kind is int:
            flat.append(value)
        elif value is None:
            flat.append(math.nan)
        elif value is _MISSING:
            problems.append(problem(i, name, "missing"))
            continue
        elif kind is bool and name in model.booleans:
            flat.append(float(value))
        else:
            expected = (
                "a number, true, false or null" if name in model.booleans else "a number or null"
            )
            got = _json_type(value)
            problems.append(problem(i, name, f"mistyped: expected {expected}, got {got}"))
        found += 1
    if len(instance) != found:
        for name in instance:
            if name not in model.index:
                problems.append(problem(i, name, f"extra: not a feature of model {model.version}"))


def _out_of_range(instances: list[dict[str, Any]], model: ServedModel) -> list[dict[str, Any]]:
    return [
        problem(i, name, f"out of range: {instance[name]!r} is beyond float32 (±3.4e38)")
        for i, instance in enumerate(instances)
        for name in model.features
        if type(instance[name]) in (int, float) and abs(instance[name]) > _FLOAT32_MAX
    ]


def predictions(ret: list[float], p_up: list[float]) -> list[dict[str, float]]:
    return [{"ret_1h_next": r, "p_up": p} for r, p in zip(ret, p_up, strict=True)]
