"""The sandbox's CoinGlass routes: envelope and value types, selection, keys and plans, the
per-minute limit, faults in CoinGlass's shape, and agreement with the Binance routes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from btc_assets.sandbox.credentials import SANDBOX_COINGLASS_KEY
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport

NOW_MS = 1_717_243_650_000  # 2024-06-01 12:07:30 UTC
DAY_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC
BAR = 900_000  # 15m
PRICE = "/api/futures/price/history"
OI = "/api/futures/open-interest/aggregated-history"
FUNDING = "/api/futures/funding-rate/oi-weight-history"
FUNDING_VOL = "/api/futures/funding-rate/vol-weight-history"
TAKER = "/api/futures/v2/taker-buy-sell-volume/history"
SPOT_AGG = "/api/spot/aggregated-taker-buy-sell-volume/history"
FUT_AGG = "/api/futures/aggregated-taker-buy-sell-volume/history"
LIQ = "/api/futures/liquidation/aggregated-history"
PAIR = {"exchange": "Binance", "symbol": "BTCUSDT"}
COIN = {"symbol": "BTC"}
LIST = {"exchange_list": "Binance,OKX,Bybit", "symbol": "BTC"}
PARAMS = {PRICE: PAIR, OI: COIN, FUNDING: COIN, FUNDING_VOL: COIN, TAKER: PAIR,
          SPOT_AGG: LIST, FUT_AGG: LIST, LIQ: LIST}  # fmt: skip


def get(
    sandbox: SandboxTransport, path: str, key: str | None = SANDBOX_COINGLASS_KEY, **params: Any
) -> httpx.Response:
    headers = {"CG-API-KEY": key} if key is not None else {}
    with httpx.Client(transport=sandbox, base_url="http://any.host", headers=headers) as client:
        return client.get(path, params=params)


def data(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    params = {**PARAMS[path], "interval": "15m", **params}
    body = get(sandbox, path, **params).json()
    assert body["code"] == "0" and body["msg"] == "success", body
    return body["data"]


def day(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    return data(sandbox, path, start_time=DAY_MS, end_time=DAY_MS + 86_400_000 - 1, **params)


def column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows])


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS)


@pytest.mark.parametrize("path", list(PARAMS))
def test_envelope_times_and_value_types(sandbox: SandboxTransport, path: str) -> None:
    response = get(sandbox, path, **PARAMS[path], interval="15m", start_time=DAY_MS, limit=3)
    assert response.headers["API-KEY-MAX-LIMIT"] == "300"
    assert response.headers["API-KEY-USE-LIMIT"] == "1"
    body = response.json()
    assert list(body) == ["code", "msg", "data"] and body["code"] == "0"
    rows = body["data"]
    assert [r["time"] for r in rows] == [DAY_MS, DAY_MS + BAR, DAY_MS + 2 * BAR]  # bar open, ms
    values = [v for r in rows for k, v in r.items() if k != "time"]
    numbers = path in (SPOT_AGG, FUT_AGG, LIQ)  # as the real API mixes them
    assert all(isinstance(v, (int, float)) if numbers else isinstance(v, str) for v in values)


def test_selection_rules(sandbox: SandboxTransport) -> None:
    both = data(sandbox, PRICE, start_time=DAY_MS + 1, end_time=DAY_MS + 4 * BAR)
    assert [r["time"] for r in both] == [DAY_MS + k * BAR for k in (1, 2, 3, 4)]  # inclusive
    assert len(data(sandbox, PRICE, start_time=DAY_MS)) == 1000  # default limit
    wide = data(sandbox, PRICE, start_time=DAY_MS, end_time=DAY_MS + 2000 * BAR, limit=5)
    assert wide[-1]["time"] == DAY_MS + 2000 * BAR and len(wide) == 5  # the end's side
    latest = data(sandbox, PRICE, limit=2)
    assert latest[-1]["time"] == NOW_MS // BAR * BAR  # the forming bar, nothing after now
    assert data(sandbox, PRICE, start_time=NOW_MS + BAR) == []
    assert data(sandbox, PRICE, end_time=1_560_000_000_000) == []  # before the perp listed
    assert data(sandbox, SPOT_AGG, end_time=1_560_000_000_000, limit=1)  # spot existed


def test_forming_bar_grows_and_closed_bars_are_final(sandbox: SandboxTransport) -> None:
    open_ms = NOW_MS // BAR * BAR
    forming = data(sandbox, PRICE, start_time=open_ms)[0]
    final = data(SandboxTransport(now_ms=open_ms + BAR), PRICE, start_time=open_ms)[0]
    assert forming["open"] == final["open"]
    assert float(forming["volume_usd"]) < float(final["volume_usd"])  # 7 of 15 minutes so far
    assert data(SandboxTransport(now_ms=open_ms + 30_000), PRICE, start_time=open_ms) == []


def test_same_seed_same_bytes_and_windows_agree() -> None:
    a, b = SandboxTransport(seed=3, now_ms=NOW_MS), SandboxTransport(seed=3, now_ms=NOW_MS)
    params = {**LIST, "interval": "15m", "start_time": DAY_MS, "limit": 300}
    assert get(a, LIQ, **params).content == get(b, LIQ, **params).content
    whole = data(a, OI, start_time=DAY_MS - 50 * BAR, limit=200)  # spans two days
    later = data(b, OI, start_time=DAY_MS + 50 * BAR, limit=100)
    assert later == whole[100:]
    other = SandboxTransport(seed=4, now_ms=NOW_MS)
    assert data(other, OI, start_time=DAY_MS, limit=5) != whole[50:55]


@pytest.mark.parametrize("path", [PRICE, OI, TAKER, LIQ])
def test_coarser_bars_combine_the_finer_ones(sandbox: SandboxTransport, path: str) -> None:
    fine = data(sandbox, path, start_time=DAY_MS, limit=4)
    hour = data(sandbox, path, start_time=DAY_MS, limit=1, interval="1h")[0]
    for key, value in hour.items():
        values = [float(r[key]) for r in fine]
        expected = {"time": values[0], "open": values[0], "close": values[-1],
                    "high": max(values), "low": min(values)}.get(key, sum(values))  # fmt: skip
        assert float(value) == pytest.approx(expected, rel=1e-9, abs=1e-4), key


def test_derived_from_the_same_market_as_the_binance_routes(sandbox: SandboxTransport) -> None:
    kline = json.loads(
        get(sandbox, "/fapi/v1/klines", symbol="BTCUSDT", interval="15m", startTime=DAY_MS,
            limit=96).text
    )  # fmt: skip
    perp_close = np.array([float(k[4]) for k in kline])
    perp_quote = np.array([float(k[7]) for k in kline])
    perp_buy = np.array([float(k[10]) for k in kline])
    price = day(sandbox, PRICE)
    close = column(price, "close")
    assert np.abs(close / perp_close - 1).max() < 5e-4  # a tick now and then, not identical
    assert (close != perp_close).any()
    assert np.abs(column(price, "volume_usd") / perp_quote - 1).max() < 0.02
    taker = day(sandbox, TAKER)
    assert np.abs(column(taker, "taker_buy_volume_usd") / perp_buy - 1).max() < 0.02
    sell = column(taker, "taker_sell_volume_usd")
    assert np.abs(sell / (perp_quote - perp_buy) - 1).max() < 0.02
    futures = column(day(sandbox, FUT_AGG), "aggregated_buy_volume_usd")
    assert 1.5 < futures.sum() / perp_buy.sum() < 2.5  # Binance + OKX + Bybit
    spot = column(day(sandbox, SPOT_AGG), "aggregated_buy_volume_usd")
    assert spot.sum() < futures.sum() / 2  # perp volume is several times spot volume


def test_funding_settles_on_the_binance_rate_in_percent(sandbox: SandboxTransport) -> None:
    rows = get(sandbox, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=DAY_MS,
               endTime=DAY_MS + 86_400_000 + 30_000).json()  # fmt: skip
    settled = {r["fundingTime"] // 60_000 * 60_000: float(r["fundingRate"]) for r in rows}
    for path in (FUNDING, FUNDING_VOL):
        bars = day(sandbox, path)
        assert all(len(r["close"].split(".")[1]) == 6 for r in bars)  # "0.010000" style
        for r in bars:
            close_ms = r["time"] + BAR
            if close_ms in settled:  # the settlement bar closes on the settled rate
                assert float(r["close"]) == pytest.approx(settled[close_ms] * 100, abs=0.002)
        assert 0.005 < column(bars, "close").mean() < 0.02


def test_open_interest_and_liquidations_look_like_markets(sandbox: SandboxTransport) -> None:
    oi = column(data(sandbox, OI, start_time=DAY_MS - 30 * 96 * BAR), "close")
    assert len(oi) == 1000 and (oi > 1e9).all() and (oi < 3e10).all()  # a few $bn
    change = np.abs(np.diff(np.log(oi)))  # coins x price: smooth, moving with the price
    assert np.median(change) < 0.01 and change.max() < 0.08
    coins = column(data(sandbox, OI, start_time=DAY_MS, limit=4, unit="coin"), "close")
    assert (coins < 1e6).all() and (coins > 1e4).all()
    liq = data(sandbox, LIQ, start_time=DAY_MS - 9 * 96 * BAR)
    longs = column(liq, "aggregated_long_liquidation_usd")
    shorts = column(liq, "aggregated_short_liquidation_usd")
    assert (longs >= 0).all() and (shorts >= 0).all()
    assert longs.max() > 20 * np.median(longs)  # spiky
    price = data(sandbox, PRICE, start_time=DAY_MS - 9 * 96 * BAR)
    move = np.log(column(price, "close") / column(price, "open"))
    assert np.corrcoef(-move, longs)[0, 1] > 0.2 and np.corrcoef(move, shorts)[0, 1] > 0.2


@pytest.mark.parametrize(
    ("path", "params", "code", "msg"),
    [
        (LIQ, {"symbol": "BTC", "interval": "15m"}, "400",
         "Required String parameter 'exchange_list' is not present"),
        (PRICE, {"symbol": "BTCUSDT", "interval": "15m"}, "400",
         "Required String parameter 'exchange' is not present"),
        (OI, {"symbol": "BTC"}, "400", "Required String parameter 'interval' is not present"),
        (OI, {"symbol": "BTC", "interval": "7m"}, "400", "Invalid interval: 7m"),
        (OI, {"symbol": "BTC", "interval": "15m", "limit": 1001}, "400",
         "limit must be between 1 and 1000"),
        (OI, {"symbol": "BTC", "interval": "15m", "start_time": "x"}, "400",
         "Failed to convert value of type 'java.lang.String' to required type 'long'"),
        (OI, {"symbol": "WIF", "interval": "15m"}, "400", "Unsupported symbol: WIF"),
        (OI, {"symbol": "1000PEPE", "interval": "15m"}, "400", "Unsupported symbol: 1000PEPE"),
        (PRICE, {**PAIR, "symbol": "PEPEUSDT", "interval": "15m"}, "400",
         "Unsupported symbol: PEPEUSDT"),
        (PRICE, {**PAIR, "exchange": "Nowhere", "interval": "15m"}, "400",
         "Unsupported exchange: Nowhere"),
    ],
)  # fmt: skip
def test_validation_errors_in_http_200(
    sandbox: SandboxTransport, path: str, params: dict[str, Any], code: str, msg: str
) -> None:
    response = get(sandbox, path, **params)
    assert response.status_code == 200
    assert response.json()["code"] == code and response.json()["msg"].startswith(msg)


def test_keys_and_plans(sandbox: SandboxTransport) -> None:
    params = {**COIN, "interval": "15m", "limit": 1}
    assert get(sandbox, OI, key=None, **params).json() == {"code": "401", "msg": "API key missing"}
    bad = get(sandbox, OI, key="not-a-key", **params)
    assert bad.status_code == 200
    assert bad.json() == {"code": "400", "msg": "Invalid API key provided"}
    hobbyist = "sandbox-coinglass-hobbyist"
    gated = get(sandbox, OI, key=hobbyist, **params).json()
    assert gated == {"code": "401", "msg": "Upgrade plan"}
    assert get(sandbox, OI, key=hobbyist, **{**params, "interval": "4h"}).json()["code"] == "0"


def test_per_minute_limit_answers_429_with_headers() -> None:
    clock = [600.0]
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=lambda: clock[0], limits={"coinglass": 3})
    params = {**COIN, "interval": "1h", "limit": 1}
    used = [get(sandbox, OI, **params).headers["API-KEY-USE-LIMIT"] for _ in range(3)]
    assert used == ["1", "2", "3"]
    refused = get(sandbox, OI, **params)
    assert refused.status_code == 429 and refused.json()["code"] == "429"
    assert refused.headers["retry-after"] == "61" and refused.headers["API-KEY-MAX-LIMIT"] == "3"
    clock[0] += 60
    assert get(sandbox, OI, **params).headers["API-KEY-USE-LIMIT"] == "1"


def test_http_faults_in_coinglass_shape() -> None:
    plan = [
        {"kind": "error200", "path": OI},
        {"kind": "error200", "path": LIQ, "code": 500, "msg": "Server Error"},
        {"kind": "429", "path": PRICE},
        {"kind": "429", "path": TAKER, "retry_after": 2},
    ]
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(plan))
    assert get(sandbox, OI, **COIN, interval="15m").json() == {"code": "401", "msg": "Upgrade plan"}
    body = get(sandbox, LIQ, **LIST, interval="15m").json()
    assert body == {"code": "500", "msg": "Server Error"}  # string code, HTTP 200
    no_wait = get(sandbox, PRICE, **PAIR, interval="15m")
    assert no_wait.status_code == 429 and "retry-after" not in no_wait.headers
    assert get(sandbox, TAKER, **PAIR, interval="15m").headers["retry-after"] == "2"


def test_data_faults() -> None:
    plan = [
        {"kind": "gap", "path": PRICE, "day": "2024-01-02", "start_minute": 605, "minutes": 20},
        {"kind": "bad_ohlc", "path": OI, "day": "2024-01-02", "start_minute": 0},
        {"kind": "microseconds", "path": LIQ},
        {"kind": "extra_field", "path": TAKER},
    ]
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(plan))
    times = [r["time"] for r in day(sandbox, PRICE)]
    # 10:05-10:25 touches the bars opening 10:00 and 10:15: both are missing, nothing else
    assert len(times) == 94 and DAY_MS + 40 * BAR not in times and DAY_MS + 41 * BAR not in times
    first = day(sandbox, OI)[0]
    assert float(first["high"]) < float(first["low"])
    assert day(sandbox, LIQ)[0]["time"] == DAY_MS * 1000
    body = get(sandbox, TAKER, **PAIR, interval="15m", start_time=DAY_MS, limit=1).json()
    assert body["success"] is True and body["data"][0]["new_metric"] == "0.0"


def test_loopback_server_serves_the_same_bytes(sandbox: SandboxTransport) -> None:
    params = {**PAIR, "interval": "15m", "start_time": DAY_MS, "limit": 1000}
    headers = {"CG-API-KEY": SANDBOX_COINGLASS_KEY}
    with serve_sandbox(now_ms=NOW_MS) as url:
        over_socket = httpx.get(f"{url}{PRICE}", params=params, headers=headers)
    assert over_socket.content == get(sandbox, PRICE, **params).content
    assert over_socket.headers["API-KEY-USE-LIMIT"] == "1"
