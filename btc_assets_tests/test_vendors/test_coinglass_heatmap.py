"""CoinGlassClient.liquidation_heatmap: the contract frames from the sandbox (and from literal
answers), every validation refusal with its message, plan refusals per key, the range picker,
and the fault classes over a real loopback socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest

from btc_assets.core.market_schema import HEATMAP_CANDLE_SCHEMA, HEATMAP_TILE_SCHEMA
from btc_assets.sandbox.credentials import (
    SANDBOX_COINGLASS_HOBBYIST_KEY,
    SANDBOX_COINGLASS_KEY,
    SANDBOX_COINGLASS_STANDARD_KEY,
    SANDBOX_COINGLASS_STARTUP_KEY,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.coinglass import (
    COINGLASS_COIN_HEATMAP,
    COINGLASS_PAIR_HEATMAP,
    CoinGlassClient,
    CoinGlassKeyMissing,
    CoinGlassPlanError,
)
from btc_assets.vendors.coinglass_structure import (
    CoinGlassHeatmapError,
    HeatmapAnswer,
    heatmap_range_for,
)
from btc_assets.vendors.errors import VendorError, VendorResponseError, VendorUnavailable
from btc_assets_tests.test_vendors.helpers import FakeClock

NOW = datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
KEY = SANDBOX_COINGLASS_KEY
FIVE_MIN = timedelta(minutes=5)


def in_process(
    key: str | None = KEY, transport: httpx.BaseTransport | None = None, now_ms: int = NOW_MS
) -> CoinGlassClient:
    transport = transport or SandboxTransport(now_ms=NOW_MS)
    return CoinGlassClient(
        "http://sandbox.invalid", key, transport=transport, now_ms=lambda: now_ms
    )


def pair_24h(client: CoinGlassClient) -> HeatmapAnswer:
    return client.liquidation_heatmap("BTCUSDT", scope="pair", range_="24h")


@pytest.fixture(scope="module")
def clean() -> HeatmapAnswer:
    return pair_24h(in_process())


# --- the contract -----------------------------------------------------------------------


def test_frames_follow_the_contract_and_tiles_sit_on_closed_candles(clean: HeatmapAnswer) -> None:
    tiles, candles = clean.tiles, clean.candles
    assert tiles.schema == pl.Schema(HEATMAP_TILE_SCHEMA)
    assert candles.schema == pl.Schema(HEATMAP_CANDLE_SCHEMA)
    assert (clean.range, clean.candle_interval, clean.y_levels) == ("24h", FIVE_MIN, 200)
    assert clean.endpoint == COINGLASS_PAIR_HEATMAP
    # 288 candles up to the forming one (12:05 opens, closes 12:10 > now): 287 closed
    assert candles.height == 287 and candles["ts"].max() == datetime(2024, 6, 1, 12, 5, tzinfo=UTC)
    assert candles["ts"].diff().drop_nulls().unique().to_list() == [FIVE_MIN]
    assert tiles.height > 10_000 and tiles["intensity"].min() > 0  # type: ignore[operator]
    assert set(tiles["ts"].unique()) <= set(candles["ts"])  # every tile joins a candle
    assert tiles.join(candles, on=["symbol", "scope", "ts"], how="anti").is_empty()
    assert tiles.equals(tiles.sort("ts", "price_level"))
    assert tiles.select("ts", "price_level").is_duplicated().sum() == 0
    assert set(tiles["symbol"]) == {"BTCUSDT"} and set(tiles["scope"]) == {"pair"}


def test_price_levels_are_the_y_axis_values_sent(clean: HeatmapAnswer) -> None:
    with httpx.Client(transport=SandboxTransport(now_ms=NOW_MS), headers={"CG-API-KEY": KEY}) as h:
        params = {"exchange": "Binance", "symbol": "BTCUSDT", "range": "24h"}
        data = h.get(f"http://x{COINGLASS_PAIR_HEATMAP}", params=params).json()["data"]
    assert set(clean.tiles["price_level"]) <= set(data["y_axis"])
    closed = [c for c in data["price_candlesticks"] if (c[0] + 300) * 1000 <= NOW_MS]
    assert clean.tiles.height == sum(
        1 for x, _, _ in data["liquidation_leverage_data"] if x < len(closed)
    )


def test_candles_are_the_price_history_bars(clean: HeatmapAnswer) -> None:
    start = clean.candles["ts"].min() - FIVE_MIN  # type: ignore[operator]
    history = in_process().price_history("BTCUSDT", "Binance", start, NOW, "5m")
    assert clean.candles.drop("scope").equals(history)


def test_coin_scope_asks_the_coin_and_labels_the_project_symbol() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    answer = in_process(transport=sandbox).liquidation_heatmap(
        "BTCUSDT", scope="coin", range_="12h", coin="BTC"
    )
    assert sandbox.requests[-1].path == COINGLASS_COIN_HEATMAP
    assert sandbox.requests[-1].params == {"symbol": "BTC", "range": "12h"}
    assert set(answer.tiles["scope"]) == {"coin"} and set(answer.tiles["symbol"]) == {"BTCUSDT"}
    assert answer.candles.height == 143


def test_same_sandbox_time_same_answer(clean: HeatmapAnswer) -> None:
    again = pair_24h(in_process())
    assert again.tiles.equals(clean.tiles) and again.candles.equals(clean.candles)


def test_bad_arguments_and_missing_key_fail_before_any_request() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(transport=sandbox)
    with pytest.raises(ValueError, match=r"range_ '2d': expected one of \['12h', '24h'"):
        client.liquidation_heatmap("BTCUSDT", scope="pair", range_="2d")
    with pytest.raises(ValueError, match="scope 'spot'"):
        client.liquidation_heatmap("BTCUSDT", scope="spot", range_="3d")  # type: ignore[arg-type]
    with pytest.raises(CoinGlassKeyMissing, match="Professional plan"):
        pair_24h(in_process(None, sandbox))
    assert sandbox.count() == 0


@pytest.mark.parametrize(
    "key",
    [SANDBOX_COINGLASS_STANDARD_KEY, SANDBOX_COINGLASS_STARTUP_KEY, SANDBOX_COINGLASS_HOBBYIST_KEY],
)
def test_plans_below_professional_are_refused_once(key: str) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    with pytest.raises(CoinGlassPlanError) as err:
        pair_24h(in_process(key, sandbox))
    text = str(err.value)
    assert "code 401: Upgrade plan" in text and "need the Professional plan or above" in text
    assert key not in text and sandbox.count() == 1


# --- the range picker -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("back", "expected"),
    [
        (timedelta(0), "12h"),
        (timedelta(hours=12), "12h"),
        (timedelta(hours=12, milliseconds=1), "24h"),
        (timedelta(hours=24), "24h"),
        (timedelta(hours=24, milliseconds=1), "3d"),
        (timedelta(days=30), "30d"),
        (timedelta(days=180, milliseconds=1), "1y"),
        (timedelta(days=365), "1y"),
        (timedelta(days=365, milliseconds=1), None),
    ],
)
def test_heatmap_range_for_picks_the_shortest_covering_window(
    back: timedelta, expected: str | None
) -> None:
    assert heatmap_range_for(NOW - back, NOW) == expected


# --- literal answers: the y_axis mapping and every refusal -----------------------------

OPEN_S = 1_717_243_200  # 2024-06-01 12:00:00
LITERAL: dict[str, Any] = {
    "y_axis": [100, "200.5", 300],
    "liquidation_leverage_data": [[0, 2, 5.5], [1, 0, "7"], [2, 1, 9], [0, 0, 1e6]],
    "price_candlesticks": [
        [OPEN_S, "1", "2", "0.5", "1.5", "10"],
        [OPEN_S + 300, 1.5, 2.5, 1, 2, 20],
        [OPEN_S + 600, "2", "2", "2", "2", "0"],  # forming at 12:12: dropped
    ],
}
LITERAL_NOW_MS = (OPEN_S + 720) * 1000


def literal(data: Any, now_ms: int = LITERAL_NOW_MS, **kw: Any) -> HeatmapAnswer:
    body = json.dumps({"code": "0", "msg": "success", "data": data}).encode()
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body)

    client = in_process(transport=httpx.MockTransport(reply), now_ms=now_ms)
    return client.liquidation_heatmap("BTCUSDT", scope="pair", range_="24h", **kw)


def _at(minutes: int) -> datetime:
    return datetime.fromtimestamp(OPEN_S + minutes * 60, UTC)


def test_literal_answer_maps_indexes_exactly() -> None:
    answer = literal(LITERAL)
    assert answer.tiles.to_dicts() == [
        {
            "symbol": "BTCUSDT",
            "ts": _at(5),
            "scope": "pair",
            "price_level": 100.0,
            "intensity": 1e6,
        },
        {
            "symbol": "BTCUSDT",
            "ts": _at(5),
            "scope": "pair",
            "price_level": 300.0,
            "intensity": 5.5,
        },
        {
            "symbol": "BTCUSDT",
            "ts": _at(10),
            "scope": "pair",
            "price_level": 100.0,
            "intensity": 7.0,
        },
    ]
    assert answer.candles.select("ts", "open", "close", "volume_usd").rows() == [
        (_at(5), 1.0, 1.5, 10.0),
        (_at(10), 1.5, 2.0, 20.0),
    ]
    assert (answer.candle_interval, answer.y_levels) == (FIVE_MIN, 3)


@pytest.mark.parametrize("scale", [1000, 1_000_000], ids=["ms", "us"])
def test_candle_times_in_ms_or_us_are_converted(scale: int) -> None:
    data = json.loads(json.dumps(LITERAL))
    for row in data["price_candlesticks"]:
        row[0] *= scale
    answer = literal(data)
    assert answer.tiles.equals(literal(LITERAL).tiles)
    assert answer.candles.equals(literal(LITERAL).candles)


def test_a_single_candle_takes_the_ranges_interval() -> None:
    data = {
        "y_axis": [1, 2],
        "liquidation_leverage_data": [[0, 1, 3]],
        "price_candlesticks": [LITERAL["price_candlesticks"][0]],
    }
    answer = literal(data)
    assert answer.candle_interval == FIVE_MIN and answer.tiles["ts"].to_list() == [_at(5)]


def _with(key: str, value: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(LITERAL)), key: value}


_CANDLES = LITERAL["price_candlesticks"]
REFUSALS = [
    (
        _with("liquidation_leverage_data", [[0, 0, 1], [5, 0, 7]]),
        "triple #1 [5, 0, 7]: x_index 5 outside the 3 candles",
    ),
    (
        _with("liquidation_leverage_data", [[0, -1, 1]]),
        "triple #0 [0, -1, 1]: y_index -1 outside the 3 y_axis levels",
    ),
    (
        _with("liquidation_leverage_data", [[0, 3, 1]]),
        "triple #0 [0, 3, 1]: y_index 3 outside the 3 y_axis levels",
    ),
    (
        _with("liquidation_leverage_data", [[1.5, 0, 1]]),
        "triple #0 [1.5, 0, 1]: x_index 1.5 is not an integer",
    ),
    (
        _with("liquidation_leverage_data", [[0, "a", 1]]),
        "triple #0 [0, \"a\", 1]: y_index 'a' is not a number",
    ),
    (
        _with("liquidation_leverage_data", [[0, 0, -2]]),
        "triple #0 [0, 0, -2]: value -2 is negative",
    ),
    (
        _with("liquidation_leverage_data", [[0, 0, "NaN"]]),
        "triple #0 [0, 0, \"NaN\"]: value 'NaN' is not a finite number",
    ),
    (
        _with("liquidation_leverage_data", [[0, 0]]),
        "triple #0 [0, 0]: expected [x_index, y_index, value]",
    ),
    (
        _with("liquidation_leverage_data", [[0, 0, 1], [1, 1, 2], [0, 0, 3]]),
        "triples #0 [0, 0, 1] and #2 [0, 0, 3] are the same cell: ambiguous",
    ),
    (_with("y_axis", []), "y_axis is empty"),
    (
        _with("y_axis", [100, 300, 200]),
        "y_axis is not strictly increasing: y_axis[2] = 200 after y_axis[1] = 300",
    ),
    (_with("y_axis", [100, 100, 200]), "y_axis[1] = 100 after y_axis[0] = 100"),
    (_with("y_axis", [100, None, 300]), "y_axis[1] = None is not a finite number"),
    (
        _with("price_candlesticks", [_CANDLES[1], _CANDLES[0], _CANDLES[2]]),
        f"candles not strictly increasing: candle #1 opens at {OPEN_S}, candle #0 at "
        f"{OPEN_S + 300}",
    ),
    (
        _with("price_candlesticks", [_CANDLES[0], _CANDLES[1], [OPEN_S + 900, 1, 1, 1, 1, 1]]),
        "uneven candles: candle #2 opens 600 s after #1, but the spacing is 300 s elsewhere",
    ),
    (
        _with(
            "price_candlesticks", [_CANDLES[0], _CANDLES[1], [(OPEN_S + 600) * 1000, 1, 1, 1, 1, 1]]
        ),
        f"candle #2 open time {(OPEN_S + 600) * 1000} is in ms, candle #0's {OPEN_S} in s",
    ),
    (
        _with("price_candlesticks", [_CANDLES[0], [OPEN_S + 300, "x", 1, 1, 1, 1], _CANDLES[2]]),
        "candle #1 [1717243500, \"x\", 1, 1, 1, 1]: 'x' is not a number",
    ),
    (_with("price_candlesticks", [[OPEN_S, 1, 2]]), "candle #0 [1717243200, 1, 2]: expected"),
    (
        {k: v for k, v in LITERAL.items() if k != "y_axis"},
        "'data' lacks 'y_axis'; has ['liquidation_leverage_data', 'price_candlesticks']",
    ),
    ([1, 2], "'data' is a list, expected an object"),
]


@pytest.mark.parametrize(("data", "text"), REFUSALS, ids=[t[:40] for _, t in REFUSALS])
def test_ambiguous_or_broken_answers_are_refused_naming_the_culprit(data: Any, text: str) -> None:
    with pytest.raises(CoinGlassHeatmapError) as err:
        literal(data)
    message = str(err.value)
    assert isinstance(err.value, VendorResponseError)
    assert f"{COINGLASS_PAIR_HEATMAP} {{exchange=Binance, symbol=BTCUSDT, range=24h}}" in message
    assert "BTCUSDT pair heatmap range=24h: " in message and text in message


def test_extra_keys_are_ignored() -> None:
    data = {**LITERAL, "update_time": 1, "y_axis_unit": "usd"}
    assert literal(data).tiles.equals(literal(LITERAL).tiles)


# --- faults over a real socket ----------------------------------------------------------


@contextmanager
def served(
    faults: list[dict[str, Any]], key: str = KEY
) -> Iterator[tuple[CoinGlassClient, SandboxTransport, list[float]]]:
    clock = FakeClock(start=1_000_050.0)
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults), clock=clock.time)
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        client = CoinGlassClient(
            url,
            key,
            now_ms=lambda: NOW_MS,
            timeout=timeout,
            max_retries=3,
            sleep=clock.sleep,
            clock=clock.time,
        )
        try:
            yield client, sandbox, clock.sleeps
        finally:
            client.close()


P = COINGLASS_PAIR_HEATMAP
RECOVERS = [
    ({"kind": "429", "path": P, "count": 2, "retry_after": 1}, 3),
    ({"kind": "error200", "path": P, "code": 500, "count": 1}, 2),
    ({"kind": "503", "path": P, "count": 1}, 2),
    ({"kind": "timeout", "path": P, "count": 1, "delay": 0.6}, 2),
    ({"kind": "reset", "path": P, "count": 1}, 2),
    ({"kind": "truncated", "path": P, "count": 1}, 2),
    ({"kind": "empty", "path": P, "count": 1}, 2),
    ({"kind": "extra_field", "path": P, "count": -1}, 1),
    ({"kind": "out_of_order", "path": P, "count": -1}, 1),
    ({"kind": "candle_ms", "path": P, "count": -1}, 1),
    ({"kind": "microseconds", "path": P, "count": -1}, 1),
]


@pytest.mark.parametrize(
    ("fault", "requests"),
    RECOVERS,
    ids=lambda v: str(v.get("kind", v)) if isinstance(v, dict) else "",
)
def test_fault_is_absorbed_to_the_clean_answer(
    clean: HeatmapAnswer, fault: dict[str, Any], requests: int
) -> None:
    with served([fault]) as (client, sandbox, sleeps):
        answer = pair_24h(client)
    assert sandbox.faults.fired(fault["kind"]) >= 1 and sandbox.count() == requests
    assert answer.tiles.equals(clean.tiles) and answer.candles.equals(clean.candles)
    if "retry_after" in fault:
        assert sleeps == [1.0, 1.0]


FAILS = [
    (
        {"kind": "bad_index", "path": P, "count": -1},
        CoinGlassHeatmapError,
        "x_index 288 outside the 288 candles",
    ),  # the forming candle is served too
    (
        {"kind": "duplicates", "path": P, "count": -1},
        CoinGlassHeatmapError,
        "are the same cell: ambiguous",
    ),
    ({"kind": "empty", "path": P, "count": -1}, CoinGlassHeatmapError, "y_axis is empty"),
    (
        {"kind": "error200", "path": P, "code": 401},
        CoinGlassPlanError,
        "code 401: Upgrade plan -- liquidation heatmaps need the Professional plan",
    ),
    (
        {"kind": "error200", "path": P, "code": 500, "count": -1},
        VendorUnavailable,
        "code 500: Server Error -- gave up after 4 attempts",
    ),
    ({"kind": "truncated", "path": P, "count": -1}, VendorResponseError, "malformed JSON"),
]


@pytest.mark.parametrize(("fault", "error", "text"), FAILS, ids=[f[2][:30] for f in FAILS])
def test_fault_that_persists_fails_clearly(
    fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with served([fault]) as (client, _, _), pytest.raises(error) as err:
        pair_24h(client)
    assert type(err.value) is error
    assert text in str(err.value) and KEY not in str(err.value)
