"""CoinGlassClient.whale_positions / whale_alerts: typed frames from the sandbox and from
literal answers, dedupe of exact duplicates, seconds-vs-ms detection, refusals naming the
row and field, plan refusals per key, and faults over a real loopback socket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import polars as pl
import pytest

from btc_assets.sandbox.credentials import (
    SANDBOX_COINGLASS_HOBBYIST_KEY,
    SANDBOX_COINGLASS_KEY,
    SANDBOX_COINGLASS_STANDARD_KEY,
    SANDBOX_COINGLASS_STARTUP_KEY,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.coinglass import (
    HYPERLIQUID_WHALE_ALERT,
    HYPERLIQUID_WHALE_POSITION,
    CoinGlassClient,
    CoinGlassPlanError,
)
from btc_assets.vendors.coinglass_structure import (
    WHALE_EVENT_SCHEMA,
    WHALE_POSITION_SCHEMA,
    CoinGlassWhaleError,
)
from btc_assets.vendors.errors import VendorError, VendorUnavailable
from btc_assets_tests.test_vendors.helpers import FakeClock

NOW = datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC)  # whole seconds: a seconds fault is exact
NOW_MS = int(NOW.timestamp() * 1000)
KEY = SANDBOX_COINGLASS_KEY


def client_on(transport: httpx.BaseTransport, key: str = KEY) -> CoinGlassClient:
    return CoinGlassClient(
        "http://sandbox.invalid", key, transport=transport, now_ms=lambda: NOW_MS
    )


def raw(path: str) -> list[dict[str, Any]]:
    with httpx.Client(transport=SandboxTransport(now_ms=NOW_MS), headers={"CG-API-KEY": KEY}) as h:
        return h.get(f"http://x{path}").json()["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    client = client_on(SandboxTransport(now_ms=NOW_MS))
    return {"positions": client.whale_positions(), "events": client.whale_alerts()}


def test_positions_are_typed_and_match_the_answer(clean: dict[str, pl.DataFrame]) -> None:
    frame, rows = clean["positions"], raw(HYPERLIQUID_WHALE_POSITION)
    assert frame.schema == pl.Schema(WHALE_POSITION_SCHEMA) and frame.height == len(rows) > 5
    assert frame["position_value_usd"].min() >= 1e6  # type: ignore[operator]
    assert set(frame["update_time"]) == {NOW} and frame["create_time"].max() <= NOW  # type: ignore[operator]
    by_user = {(r["user"], r["symbol"]): r for r in rows}
    for row in frame.iter_rows(named=True):
        sent = by_user[(row["user"], row["coin"])]
        assert row["side"] == ("short" if sent["position_size"] < 0 else "long")
        assert row["position_size"] == abs(sent["position_size"])
        assert row["leverage"] == sent["leverage"] and row["mark_price"] == sent["mark_price"]
        assert row["create_time"] == datetime.fromtimestamp(sent["create_time"] / 1000, UTC)
    assert set(frame["side"]) == {"long", "short"} and set(frame["margin_mode"]) <= {
        "cross",
        "isolated",
    }


def test_alerts_are_typed_events(clean: dict[str, pl.DataFrame]) -> None:
    frame, rows = clean["events"], raw(HYPERLIQUID_WHALE_ALERT)
    assert frame.schema == pl.Schema(WHALE_EVENT_SCHEMA) and frame.height == len(rows)
    assert 100 < frame.height <= 200 and set(frame["action"]) == {"open", "close"}
    assert frame["position_value_usd"].min() > 1e6 and frame["create_time"].max() <= NOW  # type: ignore[operator]
    assert frame["create_time"].is_sorted()
    opens = sum(1 for r in rows if r["position_action"] == 1)
    assert frame.filter(pl.col("action") == "open").height == opens


def test_same_sandbox_time_same_answer(clean: dict[str, pl.DataFrame]) -> None:
    client = client_on(SandboxTransport(now_ms=NOW_MS))
    assert client.whale_positions().equals(clean["positions"])
    assert client.whale_alerts().equals(clean["events"])


@pytest.mark.parametrize(
    "key", [KEY, SANDBOX_COINGLASS_STANDARD_KEY, SANDBOX_COINGLASS_STARTUP_KEY]
)
def test_startup_and_above_get_whales(key: str, clean: dict[str, pl.DataFrame]) -> None:
    assert (
        client_on(SandboxTransport(now_ms=NOW_MS), key).whale_positions().equals(clean["positions"])
    )


def test_hobbyist_is_refused_with_the_plan_it_needs() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    with pytest.raises(CoinGlassPlanError) as err:
        client_on(sandbox, SANDBOX_COINGLASS_HOBBYIST_KEY).whale_alerts()
    text = str(err.value)
    assert "code 401: Upgrade plan -- Hyperliquid whale endpoints need the Startup plan" in text
    assert SANDBOX_COINGLASS_HOBBYIST_KEY not in text and sandbox.count() == 1


# --- literal answers --------------------------------------------------------------------

EVENT = {
    "user": "0xabc",
    "symbol": "ETH",
    "position_size": 12700,
    "entry_price": 1611.62,
    "liq_price": 527.2521,
    "position_value_usd": 21003260,
    "position_action": 2,
    "create_time": 1745219517000,
}
POSITION = {
    "user": "0x20c",
    "symbol": "ETH",
    "position_size": "-44727.1273",
    "entry_price": "2249.7",
    "mark_price": 1645.8,
    "liq_price": 2358.2766,
    "leverage": 25,
    "margin_balance": 2943581.7019,
    "position_value_usd": 73589542.5467,
    "unrealized_pnl": 27033236.424,
    "funding_fee": -3107520.7373,
    "margin_mode": "cross",
    "create_time": 1741680802000,
    "update_time": 1745219966000,
}


def literal(rows: Any, path: str) -> pl.DataFrame:
    body = json.dumps({"code": "0", "msg": "success", "data": rows}).encode()
    client = client_on(httpx.MockTransport(lambda _: httpx.Response(200, content=body)))
    return client.whale_positions() if path == "positions" else client.whale_alerts()


def test_literal_position_numbers_as_strings_and_short_side() -> None:
    row = literal([POSITION], "positions").row(0, named=True)
    assert row["side"] == "short" and row["position_size"] == 44727.1273
    assert row["entry_price"] == 2249.7 and row["leverage"] == 25.0
    assert row["create_time"] == datetime(2025, 3, 11, 8, 13, 22, tzinfo=UTC)


def test_exact_duplicates_collapse_but_distinct_rows_stay() -> None:
    other = {**EVENT, "position_action": 1}
    frame = literal([EVENT, other, EVENT, dict(EVENT)], "events")
    assert frame.height == 2 and sorted(frame["action"]) == ["close", "open"]


@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "microseconds"])
def test_times_in_seconds_or_microseconds_are_converted(unit: int) -> None:
    def scaled(value: int) -> int:
        return value // 1000 if unit == 1 else value * 1000

    row = {**POSITION, "create_time": scaled(1741680802000), "update_time": scaled(1745219966000)}
    assert literal([row], "positions").equals(literal([POSITION], "positions"))
    event = {**EVENT, "create_time": scaled(1745219517000)}
    assert literal([event], "events").equals(literal([EVENT], "events"))


WHALE_REFUSALS = [
    (
        [EVENT, {k: v for k, v in EVENT.items() if k != "user"}],
        "events",
        "row 1 lacks required field 'user'",
    ),
    ([{**EVENT, "create_time": None}], "events", "row 0 lacks required field 'create_time'"),
    (
        [{k: v for k, v in POSITION.items() if k != "update_time"}],
        "positions",
        "row 0 lacks required field 'update_time'",
    ),
    ([{**EVENT, "position_action": 3}], "events", "row 0 position_action 3: expected 1"),
    ([{**EVENT, "position_size": 0}], "events", "row 0 position_size 0 has no side"),
    (
        [{**POSITION, "mark_price": "abc"}],
        "positions",
        "row 0 field 'mark_price' is not a finite number: 'abc'",
    ),
    ([{**EVENT, "create_time": 1.5}], "events", "row 0 field 'create_time' is not a whole"),
    ([EVENT, "x"], "events", "row 1 is not an object"),
    ({"rows": []}, "events", "'data' is a dict, expected a list of rows"),
]


@pytest.mark.parametrize(
    ("rows", "kind", "text"), WHALE_REFUSALS, ids=[t[2][:30] for t in WHALE_REFUSALS]
)
def test_unusable_rows_are_refused_naming_row_and_field(rows: Any, kind: str, text: str) -> None:
    with pytest.raises(CoinGlassWhaleError) as err:
        literal(rows, kind)
    assert f"Hyperliquid whale {kind}: {text}" in str(err.value)


# --- faults over a real socket ----------------------------------------------------------

A, W = HYPERLIQUID_WHALE_ALERT, HYPERLIQUID_WHALE_POSITION
WHALE_FAULTS = [
    ({"kind": "duplicates", "path": A, "count": -1}, "events", 1),
    ({"kind": "duplicates", "path": W, "count": -1}, "positions", 1),
    ({"kind": "seconds", "path": "/api/hyperliquid/*", "count": -1}, "positions", 1),
    ({"kind": "seconds", "path": A, "count": -1}, "events", 1),
    ({"kind": "microseconds", "path": A, "count": -1}, "events", 1),
    ({"kind": "out_of_order", "path": A, "count": -1}, "events", 1),
    ({"kind": "extra_field", "path": W, "count": -1}, "positions", 1),
    ({"kind": "empty", "path": A, "count": 1}, "events", 2),
    ({"kind": "429", "path": W, "count": 1, "retry_after": 2}, "positions", 2),
    ({"kind": "error200", "path": A, "code": 503, "count": 2}, "events", 3),
    ({"kind": "reset", "path": W, "count": 1}, "positions", 2),
    ({"kind": "timeout", "path": A, "count": 1, "delay": 0.6}, "events", 2),
    ({"kind": "truncated", "path": W, "count": 1}, "positions", 2),
]


def _served(fault: dict[str, Any]) -> tuple[SandboxTransport, FakeClock]:
    clock = FakeClock(start=1_000_050.0)
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps([fault]), clock=clock.time)
    return sandbox, clock


@pytest.mark.parametrize(
    ("fault", "kind", "requests"),
    WHALE_FAULTS,
    ids=[f"{f[0]['kind']}-{f[1]}" for f in WHALE_FAULTS],
)
def test_whale_fault_is_absorbed_to_the_clean_answer(
    clean: dict[str, pl.DataFrame], fault: dict[str, Any], kind: str, requests: int
) -> None:
    sandbox, clock = _served(fault)
    timeout = 0.3 if fault["kind"] == "timeout" else 10.0
    with (
        serve_sandbox(transport=sandbox) as url,
        CoinGlassClient(
            url, KEY, now_ms=lambda: NOW_MS, timeout=timeout, sleep=clock.sleep, clock=clock.time
        ) as client,
    ):
        frame = client.whale_positions() if kind == "positions" else client.whale_alerts()
    assert sandbox.faults.fired(fault["kind"]) >= 1 and sandbox.count() == requests
    assert frame.equals(clean[kind])
    if "retry_after" in fault:
        assert clock.sleeps == [2.0]


def test_empty_answers_are_asked_twice_then_accepted_as_no_whales() -> None:
    sandbox, _ = _served({"kind": "empty", "path": W, "count": -1})
    client = CoinGlassClient("http://x", KEY, transport=sandbox, now_ms=lambda: NOW_MS)
    frame = client.whale_positions()
    assert frame.is_empty() and frame.schema == pl.Schema(WHALE_POSITION_SCHEMA)
    assert sandbox.count() == 2


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ({"kind": "error200", "path": A, "code": 401}, CoinGlassPlanError, "Startup plan"),
        ({"kind": "503", "path": A, "count": -1}, VendorUnavailable, "HTTP 503"),
    ],
)
def test_whale_fault_that_persists_fails_clearly(
    fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    sandbox, clock = _served(fault)
    client = CoinGlassClient(
        "http://x",
        KEY,
        transport=sandbox,
        now_ms=lambda: NOW_MS,
        max_retries=2,
        sleep=clock.sleep,
        clock=clock.time,
    )
    with pytest.raises(error, match=text):
        client.whale_alerts()
