"""The sandbox's Binance routes: real shapes, selection rules, errors, weights, faults."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from btc_assets.sandbox.faults import FaultPlan, FaultPlanError
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport

NOW_MS = 1_704_456_030_000  # 2024-01-05 12:00:30 UTC
DAY_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC
MIN = 60_000


def get(sandbox: SandboxTransport, path: str, **params: Any) -> httpx.Response:
    with httpx.Client(transport=sandbox, base_url="http://any.host") as client:
        return client.get(path, params=params)


def klines(sandbox: SandboxTransport, path: str = "/api/v3/klines", **params: Any) -> list[Any]:
    params = {"symbol": "BTCUSDT", "interval": "1m", **params}
    response = get(sandbox, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS)


def test_spot_rows_have_binance_shape(sandbox: SandboxTransport) -> None:
    rows = klines(sandbox, startTime=DAY_MS, limit=2)
    assert len(rows) == 2 and all(len(r) == 12 for r in rows)
    row = rows[0]
    assert row[0] == DAY_MS and row[6] == DAY_MS + MIN - 1
    assert isinstance(row[8], int) and row[11] == "0"
    for i in (1, 2, 3, 4, 5, 7, 9, 10):
        assert isinstance(row[i], str) and len(row[i].split(".")[1]) == 8


def test_perp_rows_use_futures_precision(sandbox: SandboxTransport) -> None:
    row = klines(sandbox, "/fapi/v1/klines", startTime=DAY_MS, limit=1)[0]
    assert [len(row[i].split(".")[1]) for i in (1, 2, 3, 4, 5, 7, 9, 10)] == [
        2,
        2,
        2,
        2,
        3,
        5,
        3,
        5,
    ]
    assert float(row[1]) * 10 == pytest.approx(round(float(row[1]) * 10))  # tick 0.1
    cont = get(sandbox, "/fapi/v1/continuousKlines", pair="BTCUSDT", contractType="PERPETUAL",
               interval="1m", startTime=DAY_MS, limit=1).json()  # fmt: skip
    assert cont == [row]


def test_same_seed_same_bytes_and_windows_agree() -> None:
    a, b = SandboxTransport(seed=3, now_ms=NOW_MS), SandboxTransport(seed=3, now_ms=NOW_MS)
    params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": DAY_MS, "limit": 1000}
    assert get(a, "/api/v3/klines", **params).content == get(b, "/api/v3/klines", **params).content
    whole = klines(a, startTime=DAY_MS - 300 * MIN, limit=1000)  # spans two days
    later = klines(b, startTime=DAY_MS + 200 * MIN, limit=600)  # another window, other cache
    assert later[:500] == whole[500:]
    other = SandboxTransport(seed=4, now_ms=NOW_MS)
    assert klines(other, startTime=DAY_MS - 300 * MIN, limit=5) != whole[:5]


def test_selection_rules(sandbox: SandboxTransport) -> None:
    both = klines(sandbox, startTime=DAY_MS + 1, endTime=DAY_MS + 10 * MIN, limit=500)
    assert [r[0] for r in both] == [DAY_MS + k * MIN for k in range(1, 11)]  # inclusive
    end_only = klines(sandbox, endTime=DAY_MS + 10 * MIN, limit=3)
    assert [r[0] for r in end_only] == [DAY_MS + k * MIN for k in (8, 9, 10)]
    assert len(klines(sandbox, startTime=DAY_MS)) == 500  # default limit
    latest = klines(sandbox, limit=2)
    assert latest[-1][0] == NOW_MS // MIN * MIN  # the forming candle, nothing after now
    assert klines(sandbox, startTime=NOW_MS + MIN) == []


def test_forming_candle_is_partial_and_closed_candles_are_final(sandbox: SandboxTransport) -> None:
    open_ms = NOW_MS // MIN * MIN
    forming = klines(sandbox, startTime=open_ms, limit=1)[0]
    assert forming[6] >= NOW_MS
    later = SandboxTransport(now_ms=open_ms + 2 * MIN)
    final = klines(later, startTime=open_ms, limit=1)[0]
    assert float(forming[5]) < float(final[5])  # half a minute of volume so far
    assert forming[1] == final[1]
    assert float(forming[3]) <= float(forming[4]) <= float(forming[2])
    hour = klines(sandbox, interval="1h", limit=1)[0]
    assert hour[0] == NOW_MS // 3_600_000 * 3_600_000 and hour[6] >= NOW_MS


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/api/v3/klines", {"symbol": "FOOUSDT", "interval": "1m"}, 400, -1121),
        ("/fapi/v1/klines", {"symbol": "PEPEUSDT", "interval": "1m"}, 400, -1121),  # spot only
        ("/api/v3/klines", {"symbol": "1000PEPEUSDT", "interval": "1m"}, 400, -1121),  # perp only
        ("/api/v3/klines", {"interval": "1m"}, 400, -1102),
        ("/api/v3/klines", {"symbol": "BTCUSDT"}, 400, -1102),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1s"}, 400, -1120),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1001}, 400, -1130),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1501}, 400, -1130),
        ("/api/v3/klines", {"symbol": "btcusdt", "interval": "1m"}, 400, -1100),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "startTime": "x"}, 400, -1100),
        ("/fapi/v1/continuousKlines", {"pair": "BTCUSDT", "interval": "1m"}, 400, -1102),
        ("/fapi/v1/fundingRate", {"symbol": "FOOUSDT"}, 400, -1121),
    ],
)
def test_validation_errors(
    sandbox: SandboxTransport, path: str, params: dict[str, Any], status: int, code: int
) -> None:
    response = get(sandbox, path, **params)
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["msg"]


def test_only_configured_symbols_exist() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, symbols=["BTCUSDT", "ETHUSDT"])
    assert klines(sandbox, symbol="ETHUSDT", limit=1)
    refused = get(sandbox, "/api/v3/klines", symbol="SOLUSDT", interval="1m")
    assert (refused.status_code, refused.json()["code"]) == (400, -1121)
    with pytest.raises(ValueError, match="does not model"):
        SandboxTransport(symbols=["WIFUSDT"])


def test_weight_header_counts_per_minute_by_weight() -> None:
    clock = [600.0]
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=lambda: clock[0])
    used = [int(get(sandbox, "/api/v3/klines", symbol="BTCUSDT", interval="1m", limit=1)
                .headers["x-mbx-used-weight-1m"]) for _ in range(3)]  # fmt: skip
    assert used == [2, 4, 6]
    fapi = [
        int(get(sandbox, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=limit)
            .headers["X-MBX-USED-WEIGHT-1M"])
        for limit in (99, 499, 1000, 1500)
    ]  # fmt: skip
    assert fapi == [1, 3, 8, 18]
    clock[0] += 60
    assert get(sandbox, "/api/v3/time").headers["x-mbx-used-weight-1m"] == "1"


def test_funding_rows(sandbox: SandboxTransport) -> None:
    rows = get(sandbox, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=DAY_MS,
               endTime=DAY_MS + 86_400_000 + 30_000).json()  # fmt: skip
    assert [r["fundingTime"] // 1000 * 1000 for r in rows] == [
        DAY_MS + h * 3_600_000 for h in (0, 8, 16, 24)
    ]
    assert set(rows[0]) >= {"symbol", "fundingTime", "fundingRate", "markPrice"}
    assert all(
        isinstance(r["fundingRate"], str) and isinstance(r["fundingTime"], int) for r in rows
    )
    latest = get(sandbox, "/fapi/v1/fundingRate", symbol="BTCUSDT", limit=2).json()
    assert latest[-1]["fundingTime"] <= NOW_MS and len(latest) == 2
    assert (
        get(sandbox, "/fapi/v1/fundingRate", symbol="BTCUSDT", endTime=1_500_000_000_000).json()
        == []
    )


def test_fault_plan_counts_skips_and_targets() -> None:
    plan = FaultPlan.from_json(
        '[{"kind": "500", "path": "/api/*", "count": 2, "skip": 1},'
        ' {"kind": "gap", "path": "/fapi/v1/klines", "day": "2024-01-02", "minutes": 5}]'
    )
    assert [f.kind for f in plan.take("/api/v3/klines")] == []  # skipped
    assert [f.kind for f in plan.take("/api/v3/klines")] == ["500"]
    assert [f.kind for f in plan.take("/api/v3/time")] == ["500"]
    assert plan.take("/api/v3/klines") == []  # count used up
    assert all(plan.take("/fapi/v1/klines") for _ in range(10))  # gaps persist by default
    assert FaultPlan.from_json("").faults == [] and FaultPlan.from_json(None).faults == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('[{"kind": "explode"}]', "kind 'explode' unknown"),
        ('[{"kind": "500", "colour": "red"}]', "unknown keys ['colour']"),
        ('[{"kind": "gap"}]', "needs 'day'"),
        ('[{"kind": "500", "count": -5}]', "count=-5: Input should be greater than or equal to -1"),
    ],
)
def test_fault_plan_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(FaultPlanError, match=message.replace("[", "\\[").replace("]", "\\]")):
        FaultPlan.from_json(text)


def test_fault_counts_hold_under_threads() -> None:
    plan = FaultPlan.from_json('[{"kind": "503", "count": 50}]')
    fired: list[int] = []

    def worker() -> None:
        fired.append(sum(len(plan.take("/p")) for _ in range(40)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 50 == plan.fired("503")


def test_in_process_faults_raise_httpx_errors() -> None:
    faults = [{"kind": k, "count": 1} for k in ("timeout", "reset", "connect")]
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults[:1]))
    with pytest.raises(httpx.ReadTimeout):
        get(sandbox, "/api/v3/time")
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults[1:2]))
    with pytest.raises(httpx.RemoteProtocolError):
        get(sandbox, "/api/v3/time")
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults[2:]))
    with pytest.raises(httpx.ConnectError):
        get(sandbox, "/api/v3/time")
    assert get(sandbox, "/api/v3/time").json() == {"serverTime": NOW_MS}


def test_loopback_server_serves_the_same_bytes(sandbox: SandboxTransport) -> None:
    params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": DAY_MS, "limit": 1000}
    with serve_sandbox(now_ms=NOW_MS) as url:
        over_socket = httpx.get(f"{url}/api/v3/klines", params=params)
        missing = httpx.get(f"{url}/no/such/path")
    assert over_socket.content == get(sandbox, "/api/v3/klines", **params).content
    assert over_socket.headers["x-mbx-used-weight-1m"] == "2"
    assert missing.status_code == 404
