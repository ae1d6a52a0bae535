"""The sandbox's CoinAPI routes: shapes and ISO times, selection and ``limit``, credits and the
daily quota per key, refusals in CoinAPI's shape, faults, and the market they share with the
Binance routes."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest

from btc_assets.sandbox.credentials import SANDBOX_COINAPI_KEY, SANDBOX_COINAPI_OHLCV_ONLY_KEY
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets_tests.test_vendors.helpers import FakeClock

NOW_MS = 1_717_243_650_000  # 2024-06-01 12:07:30 UTC
DAY = "2024-01-02T00:00:00.0000000Z"
DAY_MS = 1_704_153_600_000
HOUR_MS = 3_600_000
SPOT = "/v1/ohlcv/BINANCE_SPOT_BTC_USDT/history"
PERP = "/v1/ohlcv/BINANCEFTS_PERP_BTC_USDT/history"
METRICS = "/v1/metrics/symbol/history"
FUNDING = {"metric_id": "DERIVATIVES_FUNDING_RATE_CURRENT",
           "symbol_id": "BINANCEFTS_PERP_BTC_USDT"}  # fmt: skip
ISO7 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")
TIMES = ["time_period_start", "time_period_end", "time_open", "time_close"]
OHLCV_KEYS = [*TIMES, "price_open", "price_high", "price_low", "price_close", "volume_traded",
              "trades_count"]  # fmt: skip


def get(
    sandbox: SandboxTransport, path: str, key: str | None = SANDBOX_COINAPI_KEY, **params: Any
) -> httpx.Response:
    headers = {"X-CoinAPI-Key": key} if key is not None else {}
    with httpx.Client(transport=sandbox, base_url="http://any.host", headers=headers) as client:
        return client.get(path, params=params)


def rows(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    params = {"period_id": "1HRS", "time_start": DAY, **params}
    if path == METRICS:
        params = {**FUNDING, **params}
    response = get(sandbox, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text[:23] + "+00:00").timestamp() * 1000)


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS)


def test_ohlcv_rows_have_coinapi_shape_and_iso_times(sandbox: SandboxTransport) -> None:
    got = rows(sandbox, SPOT, limit=3)
    assert [list(r) for r in got] == [OHLCV_KEYS] * 3
    assert [r["time_period_start"] for r in got] == [DAY, "2024-01-02T01:00:00.0000000Z",
                                                     "2024-01-02T02:00:00.0000000Z"]  # fmt: skip
    for r in got:
        assert all(ISO7.fullmatch(r[k]) for k in TIMES)
        assert ms(r["time_period_end"]) - ms(r["time_period_start"]) == HOUR_MS
        # first and last trade inside the period, at 100 ns resolution
        assert r["time_period_start"] < r["time_open"] < r["time_close"] < r["time_period_end"]
        assert all(type(r[k]) is float for k in OHLCV_KEYS[4:9]) and type(r["trades_count"]) is int
        assert r["price_low"] <= min(r["price_open"], r["price_close"])
        assert r["price_high"] >= max(r["price_open"], r["price_close"])
    assert any(not r["time_open"].endswith("00000Z") for r in got)  # 7 digits really used


def test_selection_limit_and_the_clock(sandbox: SandboxTransport) -> None:
    assert len(rows(sandbox, SPOT)) == 100  # default limit
    odd = rows(sandbox, SPOT, time_start="2024-01-02T00:30:00Z", time_end="2024-01-02T03:00:00Z")
    assert [r["time_period_start"][11:16] for r in odd] == ["01:00", "02:00"]  # end exclusive
    assert len(rows(sandbox, SPOT, limit=100_000, time_end="2024-03-02T00:00:00Z")) == 60 * 24
    latest = rows(sandbox, SPOT, time_start="2024-06-01T00:00:00Z", limit=1000)
    assert latest[-1]["time_period_end"] == "2024-06-01T12:00:00.0000000Z"  # no open period
    assert rows(sandbox, SPOT, time_start="2024-06-01T13:00:00Z") == []  # after the clock
    daily = rows(sandbox, SPOT, period_id="1DAY", limit=2)
    assert [r["time_period_end"][:10] for r in daily] == ["2024-01-03", "2024-01-04"]


@pytest.mark.parametrize(
    ("params", "text"),
    [({"limit": 0}, "'limit'"), ({"limit": 100_001}, "'limit'"), ({"limit": "ten"}, "'limit'"),
     ({"time_start": ""}, "Missing required parameter 'time_start'"),
     ({"time_start": "yesterday"}, "'time_start'"), ({"period_id": "1MTH"}, "'period_id'"),
     ({"period_id": ""}, "'period_id'"), ({"time_end": DAY}, "must be later")],
)  # fmt: skip
def test_bad_parameters_are_400_in_coinapi_shape(
    sandbox: SandboxTransport, params: dict[str, Any], text: str
) -> None:
    response = get(sandbox, SPOT, **{"period_id": "1HRS", "time_start": DAY, **params})
    assert response.status_code == 400 and list(response.json()) == ["message"]
    assert text in response.json()["message"]
    assert "x-ratelimit-request-cost" not in response.headers  # errors cost nothing


def test_keys_plans_and_refusals(sandbox: SandboxTransport) -> None:
    for key in (None, "wrong-key"):
        response = get(sandbox, SPOT, key=key, period_id="1HRS", time_start=DAY)
        assert (response.status_code, response.json()) == (401, {"message": "Invalid API key"})
    by_query = get(sandbox, SPOT, key=None, apikey=SANDBOX_COINAPI_KEY, period_id="1HRS",
                   time_start=DAY)  # fmt: skip
    assert by_query.status_code == 200
    limited = get(sandbox, METRICS, key=SANDBOX_COINAPI_OHLCV_ONLY_KEY, **FUNDING,
                  period_id="8HRS", time_start=DAY)  # fmt: skip
    assert limited.status_code == 403 and "privileges" in limited.json()["message"]
    for path, params in (
        ("/v1/ohlcv/BINANCE_SPOT_FOO_USDT/history", {}),
        ("/v1/ohlcv/BINANCEFTS_PERP_BTCUSDT_261225/history", {}),  # a dated future
        ("/v1/ohlcv/BINANCEFTS_PERP_PEPE_USDT/history", {}),  # the perp is 1000PEPE
        (METRICS, {**FUNDING, "metric_id": "DERIVATIVES_FOO"}),
        (METRICS, {**FUNDING, "symbol_id": "BINANCE_SPOT_BTC_USDT"}),
    ):
        response = get(sandbox, path, period_id="1HRS", time_start=DAY, **params)
        assert response.status_code == 404 and "message" in response.json(), path
    only_eth = SandboxTransport(now_ms=NOW_MS, symbols=["ETHUSDT"])
    assert get(only_eth, SPOT, period_id="1HRS", time_start=DAY).status_code == 404
    assert get(only_eth, "/v1/ohlcv/BINANCE_SPOT_ETH_USDT/history", period_id="1HRS",
               time_start=DAY).status_code == 200  # fmt: skip


def test_550_only_for_a_window_outside_the_market_life(sandbox: SandboxTransport) -> None:
    before = get(sandbox, PERP, period_id="1HRS", time_start="2019-01-01T00:00:00Z",
                 time_end="2019-09-08T00:00:00Z")  # fmt: skip
    assert before.status_code == 550 and "don't have" in before.json()["message"]
    straddle = rows(sandbox, PERP, time_start="2019-09-07T00:00:00Z", limit=3)
    assert straddle[0]["time_period_start"] == "2019-09-08T00:00:00.0000000Z"  # the listing
    matic = "/v1/ohlcv/BINANCEFTS_PERP_MATIC_USDT/history"
    after = get(sandbox, matic, period_id="1HRS", time_start="2024-09-10T08:00:00Z")
    assert SandboxTransport(now_ms=1_730_000_000_000).dispatch(
        "GET", matic, {"period_id": "1HRS", "time_start": "2024-09-10T08:00:00Z"},
        {"x-coinapi-key": SANDBOX_COINAPI_KEY},
    ).status == 550  # fmt: skip
    assert after.status_code == 200 and after.json() == []  # not yet delisted at NOW_MS


def test_credits_quota_and_headers() -> None:
    clock = FakeClock(start=86_400.0 * 30 - 60)
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=clock.time, limits={"coinapi": 25})
    first = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=1000)
    assert len(first.json()) == 1000
    headers = {k: v for k, v in first.headers.items() if k.startswith("x-ratelimit")}
    assert headers == {"x-ratelimit-used": "10", "x-ratelimit-limit": "25",
                       "x-ratelimit-remaining": "15", "x-ratelimit-request-cost": "10",
                       "x-ratelimit-reset": "1970-01-31T00:00:00.0000000Z"}  # fmt: skip
    small = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=101)
    assert small.headers["x-ratelimit-request-cost"] == "2"  # 101 items: two credits
    second = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=1000)
    assert second.headers["x-ratelimit-remaining"] == "3"
    crossing = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=1000)
    assert crossing.status_code == 200 and crossing.headers["x-ratelimit-remaining"] == "-7"
    spent = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=1)
    assert spent.status_code == 429 and "Too many requests" in spent.json()["message"]
    assert "x-ratelimit-request-cost" not in spent.headers
    other = get(sandbox, SPOT, key=SANDBOX_COINAPI_OHLCV_ONLY_KEY, period_id="1HRS", time_start=DAY)
    assert other.status_code == 200 and other.headers["x-ratelimit-used"] == "1"  # its own quota
    clock.sleep(60)  # midnight: a fresh day of credits
    again = get(sandbox, SPOT, period_id="1HRS", time_start=DAY, limit=1)
    assert again.status_code == 200 and again.headers["x-ratelimit-used"] == "1"
    per_key = SandboxTransport(now_ms=NOW_MS, limits={f"coinapi:{SANDBOX_COINAPI_KEY}": 1})
    assert get(per_key, SPOT, period_id="1HRS", time_start=DAY).status_code == 200
    assert get(per_key, SPOT, period_id="1HRS", time_start=DAY).status_code == 429


def test_periods_combine_minutes_and_track_binance(sandbox: SandboxTransport) -> None:
    hours = rows(sandbox, SPOT, limit=24)
    day = rows(sandbox, SPOT, period_id="1DAY", limit=1)[0]
    assert day["price_open"] == hours[0]["price_open"]
    assert day["price_close"] == hours[-1]["price_close"]
    assert day["price_high"] == max(r["price_high"] for r in hours)
    assert day["price_low"] == min(r["price_low"] for r in hours)
    assert day["volume_traded"] == pytest.approx(sum(r["volume_traded"] for r in hours), rel=1e-12)
    assert day["trades_count"] == sum(r["trades_count"] for r in hours)
    assert (
        day["time_open"] == hours[0]["time_open"] and day["time_close"] == hours[-1]["time_close"]
    )
    with httpx.Client(transport=sandbox, base_url="http://x") as client:
        params = {"symbol": "BTCUSDT", "interval": "1h", "startTime": DAY_MS, "limit": 24}
        klines = client.get("/api/v3/klines", params=params).json()
    assert [k[0] for k in klines] == [ms(r["time_period_start"]) for r in hours]
    high = np.array([float(k[2]) for k in klines])
    assert np.array_equal(high, [r["price_high"] for r in hours])  # the venue's extremes
    close = np.array([float(k[4]) for k in klines])
    assert np.abs(close - [r["price_close"] for r in hours]).max() <= 0.01 + 1e-9
    volume = np.array([float(k[5]) for k in klines])
    assert np.abs(np.array([r["volume_traded"] for r in hours]) / volume - 1).max() < 0.003


def test_funding_metric_periods_end_on_the_settlement(sandbox: SandboxTransport) -> None:
    eight = rows(sandbox, METRICS, period_id="8HRS", limit=3)
    metric_keys = [*TIMES, "first", "last", "min", "max", "count", "sum"]
    assert [list(r) for r in eight] == [metric_keys] * 3
    assert [r["time_period_end"][11:13] for r in eight] == ["08", "16", "00"]
    with httpx.Client(transport=sandbox, base_url="http://x") as client:
        params = {"symbol": "BTCUSDT", "startTime": DAY_MS, "limit": 3}
        settled = client.get("/fapi/v1/fundingRate", params=params).json()
    assert [r["last"] for r in eight] == [float(s["fundingRate"]) for s in settled]
    assert all(r["count"] == 480 and r["min"] <= r["first"] <= r["max"] for r in eight)
    hourly = rows(sandbox, METRICS, period_id="1HRS", limit=8)
    assert hourly[-1]["last"] == eight[0]["last"] and hourly[0]["first"] == eight[0]["first"]
    assert sum(r["count"] for r in hourly) == 480
    assert all(r["time_period_start"] < r["time_open"] < r["time_close"] < r["time_period_end"]
               for r in hourly)  # fmt: skip


def test_faults_in_coinapi_shape() -> None:
    clock = FakeClock()
    plan = [{"kind": "429", "path": "/v1/ohlcv/*", "retry_after": 30},
            {"kind": "error200", "path": METRICS, "msg": "boom"},
            {"kind": "503", "path": PERP},
            {"kind": "gap", "path": SPOT, "day": "2024-01-02", "start_minute": 90, "minutes": 60},
            {"kind": "bad_ohlc", "path": SPOT, "day": "2024-01-02", "start_minute": 0,
             "minutes": 60}]  # fmt: skip
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(plan), clock=clock.time)
    clean = rows(SandboxTransport(now_ms=NOW_MS), SPOT, limit=4)
    limited = get(sandbox, SPOT, period_id="1HRS", time_start=DAY)
    assert limited.status_code == 429 and limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == "1970-01-12T13:47:30.0000000Z"  # clock + 30 s
    assert "retry-after" not in limited.headers  # CoinAPI names the reset, not a wait
    error = get(sandbox, METRICS, **FUNDING, period_id="8HRS", time_start=DAY)
    assert (error.status_code, error.json()) == (200, {"error": "boom"})
    page = get(sandbox, PERP, period_id="1HRS", time_start=DAY)
    assert page.status_code == 503 and page.headers["content-type"] == "text/html"
    faulty = rows(sandbox, SPOT, limit=3)
    assert [r["time_period_start"][11:13] for r in faulty] == ["00", "03", "04"]  # 01, 02 lost
    assert faulty[0]["price_close"] == round(clean[0]["price_close"] * 1.01, 2)
    assert faulty[0]["price_high"] == round(clean[0]["price_high"] * 1.01, 2)
    assert faulty[1] == clean[3]  # untouched outside the fault


def test_same_seed_same_bytes_and_pages_agree() -> None:
    a, b = SandboxTransport(seed=3, now_ms=NOW_MS), SandboxTransport(seed=3, now_ms=NOW_MS)
    params = {"period_id": "1HRS", "time_start": DAY, "limit": 300}
    assert get(a, SPOT, **params).content == get(b, SPOT, **params).content
    whole = rows(a, PERP, limit=200)
    later = rows(b, PERP, time_start=whole[100]["time_period_start"], limit=100)
    assert later == whole[100:]
    assert rows(SandboxTransport(seed=4, now_ms=NOW_MS), PERP, limit=5) != whole[:5]
