"""The training dataset as a versioned artifact, and the look-ahead test every row passes.

    datasets/training/<version>/train.parquet  validation.parquet  test.parquet
                                dataset.json   (window, boundaries, features and dtypes,
                                                row counts, days left out and why, env)

The Parquet files use the lake's fixed writer, so the same rows give the same bytes and the
same version: re-running the dataset over unchanged days changes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from btc_assets.artifacts import Artifact, ArtifactStore
from btc_assets.lake import parquet_bytes
from btc_assets.model.splits import SPLITS, Splits

DATASET_NAME = "training"
CARD = "dataset.json"
# The point-in-time clocks features_1h carries for every joined series.
CLOCK_SUFFIXES = ("_available_at", "_event_time")


@dataclass(frozen=True)
class StoredDataset:
    version: str
    sha256: str
    frames: Mapping[str, pl.DataFrame]
    card: Mapping[str, Any]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.card["features"])


def dataset_store(lake_root: Path | str) -> ArtifactStore:
    """The datasets of a lake root: a folder or ``gs://bucket/prefix``."""
    return ArtifactStore(lake_root, "datasets")


def lookahead_rows(frame: pl.DataFrame) -> dict[str, int]:
    """Per point-in-time column, the rows whose value is later than their bar's ``ts``: a
    feature no one could have known at the bar close. Empty when every row is clean."""
    clocks = [c for c in frame.columns if c.endswith(CLOCK_SUFFIXES)]
    if not clocks or frame.is_empty():
        return {}
    counts = frame.select((pl.col(c) > pl.col("ts")).sum().alias(c) for c in clocks).row(
        0, named=True
    )
    return {c: int(n) for c, n in counts.items() if n}


def lookahead_by_split(frames: Mapping[str, pl.DataFrame]) -> dict[str, dict[str, int]]:
    """``lookahead_rows`` of each split that has any."""
    return {split: found for split in SPLITS if (found := lookahead_rows(frames[split]))}


def dataset_files(splits: Splits, card: Mapping[str, Any]) -> dict[str, bytes]:
    schema = splits.frames["train"].schema
    full_card = {
        **card,
        "features": list(splits.features),
        "dtypes": {f: str(schema[f]) for f in splits.features},
        "rows": {name: splits.frames[name].height for name in SPLITS},
        "boundaries": splits.boundaries.as_json(),
        "rows_without_target": splits.rows_without_target,
    }
    files = {f"{name}.parquet": parquet_bytes(splits.frames[name]) for name in SPLITS}
    files[CARD] = (json.dumps(full_card, sort_keys=True, indent=2, default=str) + "\n").encode()
    return files


def load_dataset(artifact: Artifact) -> StoredDataset:
    """The splits of a verified version (each file checked again as it is read)."""
    card = json.loads(artifact.read_bytes(CARD))
    frames = {
        name: pl.read_parquet(io.BytesIO(artifact.read_bytes(f"{name}.parquet"))) for name in SPLITS
    }
    return StoredDataset(artifact.version, artifact.sha256, frames, card)
