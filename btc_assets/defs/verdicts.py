"""A day's check result over the basket: each symbol's ``Verdict``, merged into one evaluation.

One evaluation per (asset, check, day) whatever the number of symbols, because every
evaluation is one event-log write; it names the symbols that failed with ERROR
(``error_symbols``), which is what the day gate blocks, and carries every symbol's verdict
(``by_symbol``), which a run restricted to other symbols carries forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg


@dataclass(frozen=True)
class Verdict:
    """One symbol's result of one check for one day.

    A day's evaluation is one event whatever the number of symbols (``merge_verdicts``): the
    event log is a backfill's largest cost, so it must not grow with the basket.
    """

    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "severity": self.severity.value,
            "description": self.description,
            "metadata": _clean(self.metadata),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            passed=bool(data["passed"]),
            severity=dg.AssetCheckSeverity(data["severity"]),
            description=str(data["description"]),
            metadata=dict(data.get("metadata", {})),
        )

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == dg.AssetCheckSeverity.ERROR


# Metadata of a day's evaluation: the symbols that failed with ERROR (what the day gate blocks)
# and every symbol's verdict (figures per symbol for the dashboard, and what a run restricted
# to other symbols carries over).
ERROR_SYMBOLS = "error_symbols"
BY_SYMBOL = "by_symbol"
_NAMED_IN_DESCRIPTION = 12


def merge_verdicts(
    asset_key: dg.AssetKey, check_name: str, day: date, verdicts: Mapping[str, Verdict]
) -> dg.AssetCheckEvaluation:
    """The day's one evaluation from every symbol's verdict.

    Fails with ERROR if any symbol does (the gate then blocks only those, by
    ``error_symbols``); its top-level figures are the worst symbol's, so a one-symbol basket
    reads as before and a chart of a figure follows the symbol in trouble.
    """
    names = sorted(verdicts)
    errors = [s for s in names if verdicts[s].blocks]
    warns = [s for s in names if not verdicts[s].passed and s not in errors]
    worst = (errors or warns or names)[0]
    if len(names) == 1:
        description = verdicts[worst].description
    elif errors or warns:
        failing = errors + warns
        description = "; ".join(
            f"{s}: {verdicts[s].description}" for s in failing[:_NAMED_IN_DESCRIPTION]
        ) + (
            f"; and {len(failing) - _NAMED_IN_DESCRIPTION} more"
            if len(failing) > _NAMED_IN_DESCRIPTION
            else ""
        )
    else:
        description = f"all {len(names)} symbols pass"
    metadata = {
        **verdicts[worst].metadata,
        "symbols": len(names),
        "worst_symbol": worst,
        ERROR_SYMBOLS: ",".join(errors),
        "warn_symbols": ",".join(warns),
        BY_SYMBOL: dg.MetadataValue.json({s: verdicts[s].as_json() for s in names}),
    }
    severity = (
        dg.AssetCheckSeverity.ERROR
        if errors or all(v.severity == dg.AssetCheckSeverity.ERROR for v in verdicts.values())
        else dg.AssetCheckSeverity.WARN
    )
    return day_evaluation(
        asset_key,
        check_name,
        day,
        passed=not errors and not warns,
        severity=severity,
        description=description,
        metadata=metadata,
    )


def symbol_verdicts(evaluation: dg.AssetCheckEvaluation) -> dict[str, Verdict]:
    """Every symbol's verdict recorded in a day's evaluation (empty for one recorded before
    verdicts were kept per symbol)."""
    value = evaluation.metadata.get(BY_SYMBOL)
    data = getattr(value, "value", None)
    if not isinstance(data, dict):
        return {}
    return {symbol: Verdict.from_json(v) for symbol, v in data.items()}


def blocking_symbols(evaluation: dg.AssetCheckEvaluation) -> set[str] | None:
    """The symbols a failed evaluation blocks; None: all of them (an evaluation recorded
    before verdicts were kept per symbol names none, so it blocks the whole day)."""
    value = evaluation.metadata.get(ERROR_SYMBOLS)
    text = getattr(value, "value", None)
    if not isinstance(text, str):
        return None
    return {s for s in text.split(",") if s}


def _clean(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata takes str/int/float/bool; timestamps become ISO strings."""
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in metadata.items()
        if value is not None
    }


def day_evaluation(
    asset_key: dg.AssetKey,
    check_name: str,
    day: date,
    *,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str,
    metadata: Mapping[str, Any],
) -> dg.AssetCheckEvaluation:
    """One day's result of a partitioned check, as every check of the project records it."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        partition=day.isoformat(),
        passed=passed,
        severity=severity,
        blocking=False,  # the per-day gate is blocked_days; see the module docstring
        description=description,
        metadata=_clean(metadata),
    )
