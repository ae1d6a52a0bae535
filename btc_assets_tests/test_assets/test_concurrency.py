"""Basket members worked on at once (BTC_ASSETS_SYMBOL_WORKERS) give what one at a time gives.

The promise: the same lake bytes, the same verdicts and blocked days, the same events, in
basket order; a member that fails fails the step only after the others' writes ended.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from btc_assets.concurrency import map_members
from btc_assets.defs.checks import BY_SYMBOL, ERROR_SYMBOLS
from btc_assets_tests.test_assets.helpers import evaluations, resources, run_range
from btc_assets_tests.test_assets.test_symbols import BAD_ETH_SPOT, DAYS

BASKET = "BTCUSDT,ETHUSDT,SOLUSDT"


def test_results_come_back_in_order_while_members_overlap() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05 * (5 - n))  # the first items finish last
        with lock:
            running -= 1
        return n * n

    assert map_members(work, [1, 2, 3, 4], workers=4) == [1, 4, 9, 16]
    assert most > 1, "the members did not overlap"
    most = 0
    assert map_members(work, [1, 2, 3], workers=1) == [1, 4, 9]
    assert most == 1


def test_a_failing_member_fails_after_the_others_have_ended() -> None:
    ended: list[str] = []

    def work(name: str) -> str:
        if name == "bad":
            raise ValueError("bad member")
        time.sleep(0.1)
        ended.append(name)
        return name

    with pytest.raises(ValueError, match="bad member"):
        map_members(work, ["bad", "slow1", "slow2"], workers=3)
    assert sorted(ended) == ["slow1", "slow2"]  # none cut off halfway
    with pytest.raises(ValueError, match="expected a whole number >= 1"):
        map_members(work, ["x"], workers=0)


def _parquet_names(root: Path) -> list[str]:
    """Every committed data file: content-addressed, so equal names mean equal bytes."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def _verdicts(result: dg.ExecuteInProcessResult) -> list[tuple[str, ...]]:
    return [
        (e.asset_key.to_user_string(), e.check_name, str(e.partition), str(e.passed),
         str(e.metadata.get(ERROR_SYMBOLS).value if ERROR_SYMBOLS in e.metadata else ""),
         json.dumps(e.metadata[BY_SYMBOL].value if BY_SYMBOL in e.metadata else {},
                    sort_keys=True, default=str))
        for e in evaluations(result)
    ]  # fmt: skip


def test_members_at_once_write_and_judge_exactly_as_one_at_a_time(tmp_path: Path) -> None:
    """A basket with one bad day of ETH's spot: blocked at every depth for ETH only, whether
    the members run one at a time or all at once."""
    outcomes = {}
    for workers in (1, 3):
        home = tmp_path / f"workers{workers}"
        res = resources(home, symbols=BASKET, symbol_workers=workers,
                        sandbox_faults=json.dumps(BAD_ETH_SPOT))  # fmt: skip
        with dg.DagsterInstance.ephemeral() as instance:
            result = run_range(instance, res, DAYS[0], DAYS[-1])
            assert result.success
            outcomes[workers] = (
                _parquet_names(home / "lake"),
                _verdicts(result),
                [(e.event_type_value, e.step_key) for e in result.all_events],
            )
    one, many = outcomes[1], outcomes[3]
    assert one[0] and one[0] == many[0], "the lake differs"
    assert one[1] == many[1], "the verdicts differ"
    assert any(v[4] == "ETHUSDT" for v in one[1])  # the bad day is in there, ETH's only
    assert one[2] == many[2], "the events differ in kind or order"
