"""Build the project's resources over a temporary lake and run asset ranges."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from btc_assets.assets.common import FORCE_TAG
from btc_assets.core.symbols import parse_symbols
from btc_assets.defs.definitions import all_assets, build_resources
from btc_assets.settings import load_settings


def resources(data_dir: Path, **overrides: Any) -> dict[str, object]:
    """The project's resources over ``data_dir``, sandbox mode.

    Binance history comes over REST here unless ``binance_archive=True``: most tests inject
    faults on the REST paths (a gap, a bad print) and follow them down the graph; the
    archive path has its own tests (``test_archive_path.py``) and the demo runs on it.
    """
    overrides.setdefault("binance_archive", False)
    if "symbol" in overrides and "symbols" not in overrides:
        overrides["symbols"] = parse_symbols(overrides["symbol"])
    if "symbols" in overrides and isinstance(overrides["symbols"], str):
        overrides["symbols"] = parse_symbols(overrides["symbols"])
    settings = replace(load_settings(), env="sandbox", data_dir=data_dir, **overrides)
    return build_resources(settings)


# The lake tables a range builds: not the BigQuery loads (emulators, test_warehouse/) nor
# the whale watch, which observes the present only (its own tests).
LAKE_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.groups("bigquery", "whales")


def run_range(
    instance: dg.DagsterInstance,
    res: dict[str, object],
    start: str,
    end: str,
    selection: list[str] | None = None,
    force: bool = False,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    tags = {
        **(tags or {}),
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }
    if force:
        tags[FORCE_TAG] = "true"
    partitioned = [a for a in all_assets if a.partitions_def is not None]
    return dg.materialize(
        partitioned,
        instance=instance,
        resources=res,
        tags=tags,
        # By default the lake tables; the BigQuery loads need emulators (test_warehouse/).
        selection=selection or LAKE_SELECTION,
        raise_on_error=False,
    )


def build_catalog(
    instance: dg.DagsterInstance,
    res: dict[str, object],
    selection: tuple[str, ...] = ("duckdb_catalog",),
) -> dg.ExecuteInProcessResult:
    """Materialize the unpartitioned ``selection`` (the DuckDB views, by default)."""
    return dg.materialize(
        [a for a in all_assets if a.partitions_def is None],
        instance=instance,
        resources=res,
        selection=list(selection),
    )


def catalog_metadata(instance: dg.DagsterInstance) -> dict[str, Any]:
    """The values of the newest ``duckdb_catalog`` materialization."""
    record = instance.fetch_materializations(dg.AssetKey("duckdb_catalog"), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}  # type: ignore[union-attr]


def evaluations(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    return [
        e.event_specific_data  # type: ignore[misc]
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]


def lake_digest(root: Path) -> dict[str, str]:
    """Every file under the lake with its sha256: proof that nothing changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def as_day(text: str) -> date:
    return date.fromisoformat(text)


def latest_metadata(instance: dg.DagsterInstance, name: str, day: str | date) -> dict[str, Any]:
    """The values of the newest materialization of asset ``name`` for partition ``day``."""
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[str(day)]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}  # type: ignore[union-attr]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error, causes included (the user-code error is a cause)."""
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "the run was expected to fail"
    return "\n".join(
        e.event_specific_data.error.to_string()  # type: ignore[union-attr]
        for e in failures
    )
