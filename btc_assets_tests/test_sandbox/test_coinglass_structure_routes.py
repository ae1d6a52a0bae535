"""The sandbox's CoinGlass heatmap and Hyperliquid whale routes: answer shapes, the
intensity model's invariants, agreement with the history routes, plans, parameters, the
shared rate limit, the population's rules, and the new fault kinds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest

from btc_assets.sandbox import coinglass_heatmap as heat
from btc_assets.sandbox.credentials import (
    SANDBOX_COINGLASS_HOBBYIST_KEY,
    SANDBOX_COINGLASS_KEY,
    SANDBOX_COINGLASS_STANDARD_KEY,
    SANDBOX_COINGLASS_STARTUP_KEY,
)
from btc_assets.sandbox.faults import FaultPlan
from btc_assets.sandbox.transport import SandboxTransport

NOW_MS = int(datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC).timestamp() * 1000)
KEY = SANDBOX_COINGLASS_KEY
PAIR, COIN = heat.PAIR_PATH, heat.COIN_PATH
POSITIONS, ALERTS = "/api/hyperliquid/whale-position", "/api/hyperliquid/whale-alert"
BTC_PAIR = {"exchange": "Binance", "symbol": "BTCUSDT"}


def get(
    path: str, key: str | None = KEY, sandbox: SandboxTransport | None = None, **params: Any
) -> httpx.Response:
    headers = {"CG-API-KEY": key} if key else {}
    with httpx.Client(transport=sandbox or SandboxTransport(now_ms=NOW_MS), headers=headers) as h:
        return h.get(f"http://x{path}", params=params)


def data(path: str, sandbox: SandboxTransport | None = None, **params: Any) -> Any:
    body = get(path, sandbox=sandbox, **params).json()
    assert body["code"] == "0", body
    return body["data"]


@pytest.fixture(scope="module")
def pair_24h() -> dict[str, Any]:
    return data(PAIR, **BTC_PAIR, range="24h")  # type: ignore[no-any-return]


# --- heatmap ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_", "minutes", "count"),
    [("12h", 5, 144), ("3d", 15, 288), ("7d", 30, 336), ("1y", 1440, 365)],
)
def test_candles_per_range_end_with_the_forming_one(range_: str, minutes: int, count: int) -> None:
    answer = data(PAIR, **BTC_PAIR, range=range_)
    opens = np.array([c[0] for c in answer["price_candlesticks"]])
    step = minutes * 60
    assert len(opens) == count and (np.diff(opens) == step).all() and (opens % step == 0).all()
    assert opens[-1] * 1000 <= NOW_MS < (opens[-1] + step) * 1000  # the forming candle
    assert all(isinstance(v, str) for c in answer["price_candlesticks"] for v in c[1:])


def test_y_axis_is_200_levels_on_the_tick_over_the_window(pair_24h: dict[str, Any]) -> None:
    levels = np.array(pair_24h["y_axis"])
    candles = np.array([[float(v) for v in c[1:5]] for c in pair_24h["price_candlesticks"]])
    assert len(levels) == 200 and (np.diff(levels) > 0).all()
    assert np.allclose(levels * 10, np.round(levels * 10))  # BTCUSDT's tick is 0.1
    assert levels[0] < candles[:, 2].min() and levels[-1] > candles[:, 1].max()


def test_cells_are_nonzero_in_range_and_cleared_where_price_traded(
    pair_24h: dict[str, Any],
) -> None:
    cells = np.array(pair_24h["liquidation_leverage_data"])
    levels = np.array(pair_24h["y_axis"])
    candles = np.array([[float(v) for v in c[1:5]] for c in pair_24h["price_candlesticks"]])
    x, y, value = cells[:, 0].astype(int), cells[:, 1].astype(int), cells[:, 2]
    assert (value > 0).all() and x.max() < len(candles) and y.max() < len(levels)
    assert len({(a, b) for a, b in zip(x, y, strict=True)}) == len(cells)
    low, high = candles[x, 2], candles[x, 1]
    assert not ((levels[y] >= low) & (levels[y] <= high)).any()  # traded through: cleared
    # longs sit below the price and shorts above: both sides are populated
    assert (levels[y] < low).sum() > 1000 and (levels[y] > high).sum() > 1000


def test_candles_are_the_price_history_bars(pair_24h: dict[str, Any]) -> None:
    first = pair_24h["price_candlesticks"][0][0] * 1000
    rows = data(
        "/api/futures/price/history", **BTC_PAIR, interval="5m", start_time=first, limit=1000
    )
    history = [
        [r["time"] // 1000, r["open"], r["high"], r["low"], r["close"], r["volume_usd"]]
        for r in rows
    ]
    assert history == pair_24h["price_candlesticks"]


def test_coin_scope_is_every_exchange_on_the_same_candles(pair_24h: dict[str, Any]) -> None:
    coin = data(COIN, symbol="BTC", range="24h")
    assert coin["y_axis"] == pair_24h["y_axis"]
    assert [c[:5] for c in coin["price_candlesticks"]] == [
        c[:5] for c in pair_24h["price_candlesticks"]
    ]
    pair_cells = {(x, y): v for x, y, v in pair_24h["liquidation_leverage_data"]}
    ratios = [
        v / pair_cells[(x, y)]
        for x, y, v in coin["liquidation_leverage_data"]
        if pair_cells.get((x, y), 0) > 1e4
    ]
    total = sum(f for _, f in heat.cgm.EXCHANGES.values())
    assert len(ratios) > 1000 and np.allclose(ratios, total, rtol=1e-4)


def test_answers_are_deterministic_and_follow_the_clock(pair_24h: dict[str, Any]) -> None:
    assert data(PAIR, **BTC_PAIR, range="24h") == pair_24h
    later = data(PAIR, SandboxTransport(now_ms=NOW_MS + 10 * 60_000), **BTC_PAIR, range="24h")
    assert later["price_candlesticks"][0][0] == pair_24h["price_candlesticks"][2][0]


KEYS = [
    (KEY, "0", "0"),
    (SANDBOX_COINGLASS_STANDARD_KEY, "401", "0"),
    (SANDBOX_COINGLASS_STARTUP_KEY, "401", "0"),
    (SANDBOX_COINGLASS_HOBBYIST_KEY, "401", "401"),
]


@pytest.mark.parametrize(("key", "heatmap_code", "whale_code"), KEYS)
def test_plans_gate_each_path(key: str, heatmap_code: str, whale_code: str) -> None:
    for path, params, code in (
        (PAIR, {**BTC_PAIR, "range": "12h"}, heatmap_code),
        (COIN, {"symbol": "BTC", "range": "12h"}, heatmap_code),
        (POSITIONS, {}, whale_code),
        (ALERTS, {}, whale_code),
    ):
        body = get(path, key, **params).json()
        assert body["code"] == code, (path, body)
        if code == "401":
            assert body == {"code": "401", "msg": "Upgrade plan"}


def test_history_keeps_its_per_plan_intervals() -> None:
    params = {**BTC_PAIR, "interval": "15m", "limit": 2}
    assert (
        get("/api/futures/price/history", SANDBOX_COINGLASS_STANDARD_KEY, **params).json()["code"]
        == "0"
    )
    startup = get("/api/futures/price/history", SANDBOX_COINGLASS_STARTUP_KEY, **params).json()
    assert startup == {"code": "401", "msg": "Upgrade plan"}


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (
            PAIR,
            {"symbol": "BTCUSDT", "range": "3d"},
            "Required String parameter 'exchange' is not present",
        ),
        (PAIR, {**BTC_PAIR, "range": "2d"}, "Invalid range: 2d"),
        (PAIR, {"exchange": "Binance", "symbol": "BTC", "range": "3d"}, "Unsupported symbol: BTC"),
        (
            PAIR,
            {"exchange": "Nowhere", "symbol": "BTCUSDT", "range": "3d"},
            "Unsupported exchange: Nowhere",
        ),
        (COIN, {"symbol": "BTCUSDT", "range": "3d"}, "Unsupported symbol: BTCUSDT"),
        (COIN, {"symbol": "BTC"}, "Required String parameter 'range' is not present"),
    ],
)
def test_bad_parameters_get_coinglass_400(path: str, params: dict[str, str], message: str) -> None:
    assert get(path, **params).json() == {"code": "400", "msg": message}


def test_key_checks_come_first() -> None:
    assert get(ALERTS, None).json() == {"code": "401", "msg": "API key missing"}
    assert get(PAIR, "nope", **BTC_PAIR, range="3d").json()["msg"] == "Invalid API key provided"


def test_one_per_minute_bucket_with_the_history_routes() -> None:
    clock = [1_000_010.0]
    sandbox = SandboxTransport(now_ms=NOW_MS, limits={"coinglass": 3}, clock=lambda: clock[0])
    get("/api/futures/price/history", sandbox=sandbox, **BTC_PAIR, interval="1h", limit=1)
    assert get(ALERTS, sandbox=sandbox).headers["API-KEY-USE-LIMIT"] == "2"
    ok = get(PAIR, sandbox=sandbox, **BTC_PAIR, range="12h")
    assert ok.headers["API-KEY-USE-LIMIT"] == "3" and ok.headers["API-KEY-MAX-LIMIT"] == "3"
    refused = get(POSITIONS, sandbox=sandbox)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "11"
    clock[0] += 10  # the window (minute) ends 10 s after 1_000_010
    assert get(POSITIONS, sandbox=sandbox).status_code == 200


# --- whales -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whales() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    return data(POSITIONS, sandbox), data(ALERTS, sandbox)


def test_positions_are_open_whales_marked_now(whales: tuple[list[Any], list[Any]]) -> None:
    positions, _ = whales
    assert len(positions) > 5
    for p in positions:
        assert p["position_value_usd"] >= 1e6 and p["update_time"] == NOW_MS
        assert p["create_time"] <= NOW_MS and p["leverage"] in (3, 5, 10, 20, 25, 40)
        side = 1 if p["position_size"] > 0 else -1
        assert p["unrealized_pnl"] == pytest.approx(
            p["position_size"] * (p["mark_price"] - p["entry_price"]), rel=1e-3, abs=50
        )
        assert (p["liq_price"] - p["entry_price"]) * side < 0  # liquidated against the side
    values = [p["position_value_usd"] for p in positions]
    assert values == sorted(values, reverse=True)


def test_alerts_are_recent_opens_and_closes_newest_first(
    whales: tuple[list[Any], list[Any]],
) -> None:
    positions, events = whales
    times = [e["create_time"] for e in events]
    assert 100 < len(events) <= 200 and times == sorted(times, reverse=True)
    assert times[0] <= NOW_MS and all(e["position_value_usd"] > 1e6 for e in events)
    assert {e["position_action"] for e in events} == {1, 2}
    opened = {(e["user"], e["symbol"]) for e in events if e["position_action"] == 1}
    recent = [p for p in positions if p["create_time"] > times[-1]]
    assert recent and all((p["user"], p["symbol"]) in opened for p in recent)


def test_whales_trade_only_the_sandboxs_coins() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, symbols=["BTCUSDT", "1000PEPEUSDT"])
    coins = {e["symbol"] for e in data(ALERTS, sandbox) + data(POSITIONS, sandbox)}
    assert coins == {"BTC", "PEPE"}


def test_a_position_closes_and_leaves_the_list(whales: tuple[list[Any], list[Any]]) -> None:
    positions, _ = whales
    later_ms = NOW_MS + 4 * 86_400_000  # past the longest hold
    later = SandboxTransport(now_ms=later_ms)
    still = {(p["user"], p["symbol"]) for p in data(POSITIONS, later)}
    assert not still & {(p["user"], p["symbol"]) for p in positions}
    closes = {(e["user"], e["symbol"]) for e in data(ALERTS, later) if e["position_action"] == 2}
    assert {(p["user"], p["symbol"]) for p in positions if p["position_value_usd"] > 2e6} & closes


# --- the new fault kinds ----------------------------------------------------------------


def test_structure_fault_kinds_are_registered_and_applied() -> None:
    kinds = {"bad_index": PAIR, "candle_ms": COIN, "seconds": ALERTS}
    plan = FaultPlan.from_json(json.dumps([{"kind": k, "path": p} for k, p in kinds.items()]))
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=plan)
    broken = data(PAIR, sandbox, **BTC_PAIR, range="12h")
    assert broken["liquidation_leverage_data"][0][0] == len(broken["price_candlesticks"])
    in_ms = data(COIN, sandbox, symbol="BTC", range="12h")
    assert in_ms["price_candlesticks"][-1][0] == NOW_MS // 300_000 * 300_000
    in_seconds = data(ALERTS, sandbox)
    assert in_seconds[0]["create_time"] < 10**11 and plan.fired() == 3
