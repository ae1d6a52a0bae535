"""The training dataset: ``features_1h`` rows, the next-hour target, time-ordered splits.

- ``target`` at bar ``ts`` is ``ln(close[ts + 1h] / close[ts])``: the next hour's log return
  of the perp close, from the bar stamped exactly ``ts + 1h`` of the same symbol (by time,
  not by row: a missing bar gives no target, never a two-hour return). ``target_up`` is
  ``target > 0``. A row without a target (the newest hour, a gap, a close <= 0) is dropped.
- Splits are cut on the timeline shared by every symbol: the first ``train`` share of the
  distinct bar times trains, the next ``validation`` share validates, the rest tests.
- The purge: a row's label spans ``(ts, ts + horizon]``. The rows of a split whose label
  would reach the next split's first bar (``ts >= next_start - purge - embargo``) are
  dropped, so the last label of a split ends strictly before the next split begins. ``purge``
  must be at least the label horizon; ``embargo`` widens the gap further (features with long
  look-backs, e.g. 30-day percentiles, correlate neighbouring rows beyond the label).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

TARGET = "target"
TARGET_UP = "target_up"
HORIZON = timedelta(hours=1)
SPLITS = ("train", "validation", "test")
KEYS = ("symbol", "ts")
# Numeric columns that are not inputs: the labels, and the CoinAPI cross-check, which is a
# data-quality figure about the Binance close rather than market information of its own.
NOT_FEATURES = frozenset({TARGET, TARGET_UP, "coinapi_divergence_bp"})
NUMERIC = (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt32, pl.Boolean)


class SplitError(ValueError):
    """The window or the split plan cannot make three non-empty, purged splits."""


@dataclass(frozen=True)
class SplitPlan:
    train: float = 0.70
    validation: float = 0.15
    test: float = 0.15
    purge: timedelta = HORIZON
    embargo: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        shares = (self.train, self.validation, self.test)
        if any(not 0 < s < 1 for s in shares) or not math.isclose(sum(shares), 1.0):
            raise SplitError(f"split shares must be in (0, 1) and add up to 1, got {shares}")
        if self.purge < HORIZON:
            raise SplitError(f"purge {self.purge} is shorter than the label horizon {HORIZON}")
        if self.embargo < timedelta(0):
            raise SplitError(f"embargo {self.embargo} is negative")

    @property
    def gap(self) -> timedelta:
        return self.purge + self.embargo


@dataclass(frozen=True)
class Boundaries:
    """First and last bar close of each split (inclusive), and the rows the purge dropped."""

    first: Mapping[str, datetime]
    last: Mapping[str, datetime]
    purged_rows: Mapping[str, int]  # by the split that lost them (train, validation)

    def as_json(self) -> dict[str, dict[str, str] | dict[str, int]]:
        return {
            "first": {k: v.isoformat() for k, v in self.first.items()},
            "last": {k: v.isoformat() for k, v in self.last.items()},
            "purged_rows": dict(self.purged_rows),
        }


@dataclass(frozen=True)
class Splits:
    frames: Mapping[str, pl.DataFrame]  # train, validation, test; sorted by (ts, symbol)
    boundaries: Boundaries
    features: tuple[str, ...]
    rows_without_target: int


def model_features(schema: Mapping[str, pl.DataType]) -> tuple[str, ...]:
    """The numeric columns of ``features_1h`` the model reads, in schema order.

    Strings (sources, null reasons) and timestamps (the point-in-time clocks) are not inputs;
    the clocks stay in the dataset for the leakage check.
    """
    return tuple(
        name
        for name, dtype in schema.items()
        if name not in KEYS and name not in NOT_FEATURES and isinstance(dtype, NUMERIC)
    )


def with_target(frame: pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` with ``target`` and ``target_up`` (null where there is no next bar)."""
    later = frame.select(
        "symbol", (pl.col("ts") - HORIZON).alias("ts"), pl.col("close").alias("_next_close")
    )
    close, following = pl.col("close"), pl.col("_next_close")
    target = pl.when((close > 0) & (following > 0)).then((following / close).log()).otherwise(None)
    return (
        frame.join(later, on=["symbol", "ts"], how="left")
        .with_columns(target.alias(TARGET))
        .with_columns((pl.col(TARGET) > 0).alias(TARGET_UP))
        .drop("_next_close")
    )


def split_by_time(frame: pl.DataFrame, plan: SplitPlan = SplitPlan()) -> Splits:
    """Time-ordered, purged splits of ``frame`` (``features_1h`` rows with ``with_target``)."""
    labelled = frame.filter(pl.col(TARGET).is_not_null()).sort("ts", "symbol")
    without_target = frame.height - labelled.height
    times = labelled.get_column("ts").unique().sort()
    n = times.len()
    cut_validation = int(n * plan.train)
    cut_test = int(n * (plan.train + plan.validation))
    if not 0 < cut_validation < cut_test < n:
        raise SplitError(
            f"{n} distinct bar time(s) with a target cannot make three splits with shares "
            f"{plan.train}/{plan.validation}/{plan.test}: widen the window"
        )
    starts = {"validation": times[cut_validation], "test": times[cut_test]}
    ts = pl.col("ts")
    raw = {
        "train": labelled.filter(ts < starts["validation"]),
        "validation": labelled.filter((ts >= starts["validation"]) & (ts < starts["test"])),
        "test": labelled.filter(ts >= starts["test"]),
    }
    frames = {
        "train": raw["train"].filter(ts < starts["validation"] - plan.gap),
        "validation": raw["validation"].filter(ts < starts["test"] - plan.gap),
        "test": raw["test"],
    }
    empty = [name for name in SPLITS if frames[name].is_empty()]
    if empty:
        raise SplitError(
            f"split(s) {empty} empty after a purge of {plan.gap} between splits: widen the "
            "window or shorten the embargo"
        )
    first = {name: frames[name]["ts"].min() for name in SPLITS}
    last = {name: frames[name]["ts"].max() for name in SPLITS}
    for earlier, later in (("train", "validation"), ("validation", "test")):
        # The promise, checked on the result: the last label ends before the next split.
        assert last[earlier] + HORIZON < first[later], (earlier, later)
    return Splits(
        frames=frames,
        boundaries=Boundaries(
            first=first,  # type: ignore[arg-type]
            last=last,  # type: ignore[arg-type]
            purged_rows={n: raw[n].height - frames[n].height for n in ("train", "validation")},
        ),
        features=model_features(frame.schema),
        rows_without_target=without_target,
    )
