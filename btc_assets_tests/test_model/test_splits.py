"""Targets, purge gaps and split boundaries on literal frames."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from btc_assets.core.schema import TS
from btc_assets.model.dataset import lookahead_rows
from btc_assets.model.splits import (
    HORIZON,
    SplitError,
    SplitPlan,
    model_features,
    split_by_time,
    with_target,
)

T0 = datetime(2024, 1, 1, 1, tzinfo=UTC)


def hourly(symbol: str, closes: list[float | None], start: datetime = T0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": [symbol] * len(closes),
            "ts": [start + timedelta(hours=i) for i in range(len(closes))],
            "close": closes,
            "volume": [float(i) for i in range(len(closes))],
            "oi_source": ["coinglass"] * len(closes),
        },
        schema={
            "symbol": pl.String,
            "ts": TS,
            "close": pl.Float64,
            "volume": pl.Float64,
            "oi_source": pl.String,
        },
    )


def test_target_is_the_next_bar_by_time_never_across_a_gap() -> None:
    frame = hourly("BTCUSDT", [100.0, 110.0, 99.0, 0.0, 50.0])
    # drop the bar at T0 + 2h: the bar at T0 + 1h has no next bar
    frame = frame.filter(pl.col("ts") != T0 + 2 * HORIZON)
    out = with_target(frame.lazy()).collect().sort("ts")
    assert out["target"][0] == pytest.approx(math.log(110 / 100))
    assert out["target_up"][0] is True
    assert out["target"][1] is None  # the next bar is missing: no two-hour return
    assert out["target"][2] is None  # close 0: no log return
    assert out["target"][3] is None  # the newest bar has no next one


def test_targets_never_mix_symbols() -> None:
    frame = pl.concat([hourly("BTCUSDT", [100.0, 101.0]), hourly("ETHUSDT", [10.0, 5.0])])
    out = with_target(frame.lazy()).collect().sort("symbol", "ts")
    assert out["target"].to_list()[:2] == [pytest.approx(math.log(1.01)), None]
    assert out["target"].to_list()[2] == pytest.approx(math.log(0.5))


def _labelled(hours: int, symbols: tuple[str, ...] = ("BTCUSDT",)) -> pl.DataFrame:
    frames = [hourly(s, [100.0 + (i % 7) for i in range(hours + 1)]) for s in symbols]
    return with_target(pl.concat(frames).lazy()).collect()


def test_splits_are_time_ordered_with_the_purge_gap_and_exact_boundaries() -> None:
    frame = _labelled(100, ("BTCUSDT", "ETHUSDT"))
    splits = split_by_time(frame, SplitPlan(0.6, 0.2, 0.2))
    b = splits.boundaries
    # 100 labelled hours: validation starts at hour 60, test at hour 80 (T0 + k hours)
    assert b.first["train"] == T0
    assert b.last["train"] == T0 + 58 * HORIZON  # hour 59 purged: its label ends at hour 60
    assert b.first["validation"] == T0 + 60 * HORIZON
    assert b.last["validation"] == T0 + 78 * HORIZON
    assert b.first["test"] == T0 + 80 * HORIZON
    assert b.last["test"] == T0 + 99 * HORIZON
    assert dict(b.purged_rows) == {"train": 2, "validation": 2}  # one hour, two symbols
    assert [splits.frames[s].height for s in ("train", "validation", "test")] == [118, 38, 40]
    for earlier, later in (("train", "validation"), ("validation", "test")):
        assert b.last[earlier] + HORIZON < b.first[later]  # no label reaches the next split
    assert splits.rows_without_target == 2  # the newest hour of each symbol


def test_an_embargo_widens_the_gap() -> None:
    splits = split_by_time(_labelled(100), SplitPlan(0.6, 0.2, 0.2, embargo=timedelta(hours=5)))
    assert splits.boundaries.last["train"] == T0 + 53 * HORIZON
    assert splits.boundaries.last["validation"] == T0 + 73 * HORIZON
    assert dict(splits.boundaries.purged_rows) == {"train": 6, "validation": 6}


def test_a_plan_that_cannot_split_says_why() -> None:
    with pytest.raises(SplitError, match="purge 0:30:00 is shorter than the label horizon"):
        SplitPlan(purge=timedelta(minutes=30))
    with pytest.raises(SplitError, match="add up to 1"):
        SplitPlan(0.5, 0.3, 0.3)
    with pytest.raises(SplitError, match="cannot make three splits"):
        split_by_time(_labelled(2))
    with pytest.raises(SplitError, match="empty after a purge"):
        split_by_time(_labelled(20), SplitPlan(0.6, 0.2, 0.2, embargo=timedelta(hours=10)))


def test_features_are_the_numeric_inputs_only() -> None:
    frame = _labelled(10).with_columns(
        fred_dgs10_value=pl.lit(4.2),
        fred_dgs10_available_at=pl.col("ts"),
        coinapi_divergence_bp=pl.lit(1.0),
    )
    assert model_features(frame.schema) == ("close", "volume", "fred_dgs10_value")


def test_lookahead_rows_are_counted_per_clock_column() -> None:
    frame = hourly("BTCUSDT", [1.0, 2.0, 3.0]).with_columns(
        fred_dgs10_available_at=pl.col("ts"),
        fred_dgs10_event_time=pl.col("ts") - timedelta(days=1),
    )
    assert lookahead_rows(frame) == {}
    leaked = frame.with_columns(
        pl.when(pl.col("ts") == T0 + HORIZON)
        .then(pl.col("ts") + timedelta(minutes=1))
        .otherwise(pl.col("fred_dgs10_available_at"))
        .alias("fred_dgs10_available_at")
    )
    assert lookahead_rows(leaked) == {"fred_dgs10_available_at": 1}
