"""A basket of symbols in one daily partition: per-symbol gating, restricted runs, same events.

The promise: one symbol's bad day blocks that symbol's dependents at every depth and no
other symbol's; a run restricted to some symbols leaves the others' files and verdicts as
they were and asks the vendors nothing for them; the event log does not grow with the
basket.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.assets.common import SYMBOLS_TAG
from btc_assets.core.tables import PUBLISHED_TABLES
from btc_assets.defs.checks import BY_SYMBOL, ERROR_SYMBOLS, QUALITY
from btc_assets.defs.day_gate import check_failures
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import (
    as_day,
    evaluations,
    failure_text,
    lake_digest,
    latest_metadata,
    resources,
    run_range,
)

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
BAD = DAYS[1]
# Spot 1m of ETH only, one bar with high and low swapped on the middle day.
BAD_ETH_SPOT = [{"kind": "bad_ohlc", "path": "/api/v3/klines", "symbol": "ETHUSDT",
                 "day": BAD, "start_minute": 600, "minutes": 1}]  # fmt: skip
CHAIN = ("binance_spot_klines_1m", "spot_klines_15m", "bars_15m")


def basket_resources(tmp_path: Path, perps: list[str], **overrides: object) -> dict[str, object]:
    return resources(tmp_path, symbols=",".join(perps), **overrides)


def _event_counts(result: dg.ExecuteInProcessResult) -> Counter[str]:
    kinds = (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return Counter(e.event_type_value for e in result.all_events if e.event_type in kinds)


def test_one_symbols_bad_day_blocks_only_that_symbol_at_every_depth(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = basket_resources(
        tmp_path, ["BTCUSDT", "ETHUSDT"], sandbox_faults=json.dumps(BAD_ETH_SPOT)
    )
    result = run_range(instance, res, DAYS[0], DAYS[-1])
    assert result.success  # blocked symbol-days are recorded, the step does not fail
    lake = Lake(tmp_path / "lake")
    for name in CHAIN[1:]:
        assert lake.days_present(name, "BTCUSDT") == [as_day(d) for d in DAYS], name
        assert lake.days_present(name, "ETHUSDT") == [as_day(DAYS[0]), as_day(DAYS[2])], name
    # The gate's view: the bad day blocks ETH and not BTC, down the chain.
    for name in CHAIN:
        key = [dg.AssetKey(name)]
        days = [as_day(d) for d in DAYS]
        assert list(check_failures(instance, key, days, symbol="ETHUSDT")) == [as_day(BAD)], name
        assert check_failures(instance, key, days, symbol="BTCUSDT") == {}, name
    # One evaluation per (asset, day) names the symbol and carries both symbols' figures.
    bad = [e for e in evaluations(result)
           if e.asset_key == dg.AssetKey("bars_15m") and e.check_name == QUALITY
           and e.partition == BAD]  # fmt: skip
    assert len(bad) == 1 and not bad[0].passed
    assert bad[0].metadata[ERROR_SYMBOLS].value == "ETHUSDT"
    by_symbol = bad[0].metadata[BY_SYMBOL].value
    assert by_symbol["BTCUSDT"]["passed"] and not by_symbol["ETHUSDT"]["passed"]
    assert "ohlc_violations" in by_symbol["ETHUSDT"]["description"]  # the cause, two levels down
    meta = latest_metadata(instance, "bars_15m", BAD)
    assert meta["blocked_symbols"] == "ETHUSDT" and meta["symbols_built"] == 1
    assert meta["dagster/row_count"] == 96  # BTC's day


def test_the_event_count_does_not_grow_with_the_basket(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    one = run_range(instance, resources(tmp_path / "one"), DAYS[0], DAYS[-1])
    two = run_range(
        instance, basket_resources(tmp_path / "two", ["BTCUSDT", "ETHUSDT"]), DAYS[0], DAYS[-1]
    )
    assert one.success and two.success
    assert _event_counts(one) == _event_counts(two)
    assert sum(_event_counts(two).values()) > 0


def test_a_restricted_run_leaves_the_others_alone_and_asks_nothing_for_them(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = basket_resources(tmp_path, ["BTCUSDT", "ETHUSDT"])
    first = run_range(instance, res, DAYS[0], DAYS[-1], tags={SYMBOLS_TAG: "BTCUSDT"})
    assert first.success
    lake_root = tmp_path / "lake"
    assert Lake(lake_root).days_present("bars_15m", "ETHUSDT") == []
    btc_before = {k: v for k, v in lake_digest(lake_root).items() if "/BTCUSDT/" in k}

    added = run_range(instance, res, DAYS[0], DAYS[-1], tags={SYMBOLS_TAG: "ethusdt"})
    assert added.success
    btc_after = {k: v for k, v in lake_digest(lake_root).items() if "/BTCUSDT/" in k}
    assert btc_after == btc_before  # not one BTC file rewritten
    assert Lake(lake_root).days_present("bars_15m", "ETHUSDT") == [as_day(d) for d in DAYS]
    # Each day's verdict still covers BTC, carried from the first run. (Published tables
    # hold series shared by the basket, not members: a symbol tag does not narrow them.)
    series = {dg.AssetKey(t.name) for t in PUBLISHED_TABLES}
    for e in evaluations(added):
        if e.check_name == QUALITY and e.asset_key not in series:
            assert set(e.metadata[BY_SYMBOL].value) == {"BTCUSDT", "ETHUSDT"}, e.asset_key

    # The whole basket again: every day is complete and old, so nothing is fetched.
    again = run_range(instance, res, DAYS[0], DAYS[-1])
    assert again.success
    for name in ("binance_spot_klines_1m", "binance_perp_klines_1m", "coinglass_price_ohlc"):
        record = instance.fetch_materializations(dg.AssetKey(name), limit=1).records[0]
        metadata = record.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["run_http_requests"].value == 0, name


@pytest.mark.parametrize("tag", ["DOGEUSDT", "BTCUSDT,NOPE"])
def test_a_run_tag_naming_a_symbol_outside_the_basket_is_refused_before_any_write(
    tmp_path: Path, instance: dg.DagsterInstance, tag: str
) -> None:
    res = basket_resources(tmp_path, ["BTCUSDT", "ETHUSDT"])
    result = run_range(instance, res, DAYS[0], DAYS[0], tags={SYMBOLS_TAG: tag})
    assert not result.success
    text = failure_text(result)
    assert SYMBOLS_TAG in text and "not in the basket" in text
    assert (tmp_path / "lake").exists() is False or lake_digest(tmp_path / "lake") == {}
