"""The sandbox's CryptoQuant routes: envelope and order, ``limit`` counted back from ``to``,
publication time, Tuesday revisions, the model's identities, token and plan, parameter
refusals, the per-minute limit, and the generic faults in CryptoQuant's shape."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from btc_assets.sandbox import cryptoquant as cq
from btc_assets.sandbox.credentials import (
    SANDBOX_CRYPTOQUANT_BASIC_TOKEN,
    SANDBOX_CRYPTOQUANT_TOKEN,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets_tests.test_vendors.helpers import FakeClock

NETFLOW = "/v1/btc/exchange-flows/netflow"
RESERVE = "/v1/btc/exchange-flows/reserve"
INFLOW = "/v1/btc/exchange-flows/inflow"
OUTFLOW = "/v1/btc/exchange-flows/outflow"
COUNTS = "/v1/btc/exchange-flows/transactions-count"
WHALE = "/v1/btc/flow-indicator/exchange-whale-ratio"
MPI = "/v1/btc/flow-indicator/mpi"
ALL = {"exchange": "all_exchange"}


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


NOW = ms(datetime(2024, 6, 1, 12, tzinfo=UTC))


def get(
    sandbox: SandboxTransport, path: str, token: str | None = SANDBOX_CRYPTOQUANT_TOKEN,
    method: str = "GET", **params: Any,
) -> httpx.Response:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(transport=sandbox, base_url="http://any.host", headers=headers) as client:
        return client.request(method, path, params=params)


def rows(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    params = {**(ALL if path != MPI else {}), **params}
    body = get(sandbox, path, **params).json()
    assert body["status"] == {"code": 200, "message": "success"}, body
    assert body["result"]["window"] == "day"
    return body["result"]["data"]


def by_date(data: list[dict[str, Any]], field: str) -> dict[str, float]:
    return {r["date"]: r[field] for r in data}


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW)


def test_envelope_rows_newest_first_with_the_documented_fields(sandbox: SandboxTransport) -> None:
    for path, ep in cq.ENDPOINTS.items():
        data = rows(sandbox, path, **{"from": "20240101", "to": "20240110"})
        dates = [r["date"] for r in data]
        assert dates == [f"2024-01-{d:02d}" for d in range(10, 0, -1)], path  # newest first
        assert all(set(r) == {"date", *ep.fields} for r in data), path
        assert all(isinstance(r[f], int | float) for r in data for f in ep.fields)


def test_limit_counts_back_from_to_or_from_the_newest(sandbox: SandboxTransport) -> None:
    window = rows(sandbox, NETFLOW, **{"from": "20240101", "to": "20240131", "limit": 5})
    assert [r["date"] for r in window] == [f"2024-01-{d}" for d in (31, 30, 29, 28, 27)]
    newest = rows(sandbox, NETFLOW, limit=3)
    assert [r["date"] for r in newest] == ["2024-05-31", "2024-05-30", "2024-05-29"]
    assert len(rows(sandbox, NETFLOW)) == 100  # the documented default
    since = rows(sandbox, NETFLOW, **{"from": "20240520", "limit": 1000})
    assert since[-1]["date"] == "2024-05-20" and since[0]["date"] == "2024-05-31"
    assert rows(sandbox, NETFLOW, **{"from": "20240201", "to": "20240101"}) == []


def test_a_day_exists_only_from_its_publication_time() -> None:
    midnight = datetime(2024, 6, 1, tzinfo=UTC)
    delay = timedelta(milliseconds=cq.PUBLICATION_DELAY_MS)
    assert delay == timedelta(minutes=10)
    before = SandboxTransport(now_ms=ms(midnight + delay) - 1)
    after = SandboxTransport(now_ms=ms(midnight + delay))
    ask = {"from": "20240525", "to": "20240610"}  # the future asked for: nothing invented
    assert rows(before, RESERVE, **ask)[0]["date"] == "2024-05-30"
    assert rows(after, RESERVE, **ask)[0]["date"] == "2024-05-31"


def test_reserve_is_the_cumulative_netflow_and_inflow_minus_outflow_is_it() -> None:
    # Across a re-clustering boundary too (2024-05-28 was a Tuesday).
    sandbox = SandboxTransport(now_ms=ms(datetime(2024, 5, 30, 12, tzinfo=UTC)))
    ask = {"from": "20240401", "to": "20240529", "exchange": "binance"}
    net = by_date(rows(sandbox, NETFLOW, **ask), "netflow_total")
    res = by_date(rows(sandbox, RESERVE, **ask), "reserve")
    inflow = by_date(rows(sandbox, INFLOW, **ask), "inflow_total")
    outflow = by_date(rows(sandbox, OUTFLOW, **ask), "outflow_total")
    days = sorted(net)
    for prev, day in itertools.pairwise(days):
        assert res[day] - res[prev] == pytest.approx(net[day], abs=1e-5)
    for day in days:
        assert inflow[day] - outflow[day] == pytest.approx(net[day], abs=1e-5)
        assert inflow[day] > 0 and outflow[day] > 0


def test_whale_ratio_is_the_top10_share_of_inflow_in_0_1(sandbox: SandboxTransport) -> None:
    ask = {"from": "20230101", "to": "20231231"}
    whale = by_date(rows(sandbox, WHALE, **ask, limit=1000), "exchange_whale_ratio")
    inflow = rows(sandbox, INFLOW, **ask, limit=1000)
    assert len(whale) == 365 and all(0 < w < 1 for w in whale.values())
    for r in inflow:
        assert r["inflow_top10"] / r["inflow_total"] == pytest.approx(whale[r["date"]], abs=1e-5)
        assert r["inflow_mean"] > 0


def test_tuesday_reclustering_revises_the_week_before_it_once() -> None:
    tuesday = datetime(2024, 5, 28, tzinfo=UTC)
    assert tuesday.weekday() == 1

    def seen(at: datetime, path: str, field: str) -> dict[str, float]:
        data = rows(SandboxTransport(now_ms=ms(at)), path, **{"from": "20240510", "to": "20240526"})
        return by_date(data, field)

    monday, after, next_week = tuesday - timedelta(hours=1), tuesday, tuesday + timedelta(7)
    for path, field in ((NETFLOW, "netflow_total"), (RESERVE, "reserve")):
        old, new, later = (seen(at, path, field) for at in (monday, after, next_week))
        week = [f"2024-05-{d}" for d in range(21, 27)]  # Tue..Sun (Monday is not out yet)
        assert all(old[d] != new[d] for d in week), path  # revised at the re-clustering
        assert all(abs(new[d] / old[d] - 1) < 0.05 for d in week if path == RESERVE)
        assert all(old[d] == new[d] for d in old if d < "2024-05-21"), path  # older: as before
        assert new == {d: later[d] for d in new}, path  # once: the next Tuesday keeps them
    counts = [seen(at, COUNTS, "transactions_count_inflow") for at in (monday, after)]
    assert counts[0] == counts[1]  # counts are not revised


def test_deterministic_per_seed_and_per_exchange() -> None:
    ask = {"from": "20240101", "to": "20240110"}
    one, two = SandboxTransport(seed=7, now_ms=NOW), SandboxTransport(seed=7, now_ms=NOW)
    assert rows(one, NETFLOW, **ask) == rows(two, NETFLOW, **ask)
    assert rows(one, NETFLOW, **ask) != rows(SandboxTransport(seed=8, now_ms=NOW), NETFLOW, **ask)
    assert rows(one, NETFLOW, **ask) != rows(one, NETFLOW, **ask, exchange="binance")
    binance = by_date(rows(one, RESERVE, **ask, exchange="binance"), "reserve")
    total = by_date(rows(one, RESERVE, **ask), "reserve")
    assert all(binance[d] < total[d] for d in total)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", SANDBOX_CRYPTOQUANT_TOKEN])
def test_missing_or_wrong_token_is_401_in_status_and_envelope(
    sandbox: SandboxTransport, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(transport=sandbox, base_url="http://h", headers=headers) as client:
        answer = client.get(NETFLOW, params=ALL)
    assert answer.status_code == 401  # a token without "Bearer " is refused too
    assert answer.json() == {"status": {"code": 401, "message": "unauthorized"}}


def test_basic_plan_is_refused_mpi_with_403(sandbox: SandboxTransport) -> None:
    answer = get(sandbox, MPI, token=SANDBOX_CRYPTOQUANT_BASIC_TOKEN)
    assert answer.status_code == 403 and answer.json()["status"]["code"] == 403
    assert answer.json()["status"]["message"] == "forbidden" and "result" not in answer.json()
    assert get(sandbox, NETFLOW, token=SANDBOX_CRYPTOQUANT_BASIC_TOKEN, **ALL).status_code == 200
    assert get(sandbox, MPI).status_code == 200  # the professional token


@pytest.mark.parametrize(
    ("path", "params", "reason"),
    [
        (WHALE, {**ALL, "window": "hour"}, "not supported for this indicator (day only)"),
        (MPI, {"window": "block"}, "day only"),
        (NETFLOW, {**ALL, "window": "hour"}, "the sandbox serves day windows only"),
        (NETFLOW, {**ALL, "window": "minute"}, "expected day, hour or block"),
        (NETFLOW, {}, "exchange is required"),
        (NETFLOW, {"exchange": "mtgox"}, "exchange='mtgox' is not supported"),
        (NETFLOW, {**ALL, "limit": "0"}, "expected 1..100000"),
        (NETFLOW, {**ALL, "limit": "100001"}, "expected 1..100000"),
        (NETFLOW, {**ALL, "from": "2024-01-01"}, "expected YYYYMMDD"),
        (NETFLOW, {**ALL, "to": "20241340"}, "expected YYYYMMDD"),
    ],
)
def test_bad_parameters_are_400(
    sandbox: SandboxTransport, path: str, params: dict[str, str], reason: str
) -> None:
    answer = get(sandbox, path, **params)
    status = answer.json()["status"]
    assert answer.status_code == 400 and status["code"] == 400
    assert status["message"] == "bad_request" and reason in status["description"]


def test_post_is_405(sandbox: SandboxTransport) -> None:
    answer = get(sandbox, NETFLOW, method="POST", **ALL)
    assert answer.status_code == 405 and answer.json()["status"]["message"] == "not_allowed"


def test_per_minute_limit_answers_429_and_a_refusal_does_not_count() -> None:
    clock = FakeClock(start=1_000_050.0)  # 30 s into a minute
    sandbox = SandboxTransport(now_ms=NOW, clock=clock.time, limits={"cryptoquant": 2})
    statuses = [get(sandbox, NETFLOW, **ALL).status_code for _ in range(2)]
    refused = get(sandbox, NETFLOW, **ALL)
    assert statuses == [200, 200] and refused.status_code == 429
    assert refused.json()["status"] == {"code": 429, "message": "too_many_requests"}
    assert refused.headers["retry-after"] == "31"
    clock.sleep(31)
    assert get(sandbox, NETFLOW, **ALL).status_code == 200


def faulty(*faults: dict[str, Any]) -> SandboxTransport:
    return SandboxTransport(now_ms=NOW, faults=json.dumps(list(faults)))


def test_http_faults_come_in_the_envelope() -> None:
    sandbox = faulty({"kind": "429", "path": NETFLOW, "retry_after": 3},
                     {"kind": "500", "path": RESERVE}, {"kind": "503", "path": INFLOW},
                     {"kind": "error200", "path": OUTFLOW, "code": 403})  # fmt: skip
    limited = get(sandbox, NETFLOW, **ALL)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["status"]["code"] == 429
    failed = get(sandbox, RESERVE, **ALL)
    assert failed.status_code == 500
    assert failed.json() == {"status": {"code": 500, "message": "internal_server_error"}}
    page = get(sandbox, INFLOW, **ALL)
    assert page.status_code == 503 and page.headers["content-type"] == "text/html"
    inside = get(sandbox, OUTFLOW, **ALL)
    assert inside.status_code == 200 and inside.json() == {
        "status": {"code": 403, "message": "forbidden"}
    }
    assert get(sandbox, NETFLOW, **ALL).status_code == 200  # each fault fired once


def test_error200_with_code_200_serves_deprecated_data(sandbox: SandboxTransport) -> None:
    deprecated = faulty({"kind": "error200", "path": NETFLOW, "code": 200})
    body = get(deprecated, NETFLOW, **ALL).json()
    assert body["status"] == {"code": 200, "message": "deprecated"}
    assert body["result"]["data"] == rows(sandbox, NETFLOW)


def test_row_faults(sandbox: SandboxTransport) -> None:
    ask = {"from": "20240101", "to": "20240110"}
    clean = rows(sandbox, NETFLOW, **ask)
    gap = faulty({"kind": "gap", "path": NETFLOW, "day": "2024-01-05"})
    assert [r for r in rows(gap, NETFLOW, **ask)] == [r for r in clean if r["date"] != "2024-01-05"]
    assert rows(faulty({"kind": "empty", "path": NETFLOW}), NETFLOW, **ask) == []
    twice = rows(faulty({"kind": "duplicates", "path": NETFLOW}), NETFLOW, **ask)
    assert len(twice) == 11 and twice[0] == twice[1]
    extra = rows(faulty({"kind": "extra_field", "path": NETFLOW}), NETFLOW, **ask)
    assert all(r["new_metric"] == 0.0 for r in extra)
    truncated = get(faulty({"kind": "truncated", "path": NETFLOW}), NETFLOW, **ALL)
    with pytest.raises(json.JSONDecodeError):
        truncated.json()


def test_loopback_serves_the_same_bytes(sandbox: SandboxTransport) -> None:
    params = {**ALL, "from": "20240101", "to": "20240131"}
    with serve_sandbox(now_ms=NOW) as url:
        headers = {"Authorization": f"Bearer {SANDBOX_CRYPTOQUANT_TOKEN}"}
        wire = httpx.get(f"{url}{RESERVE}", params=params, headers=headers, timeout=10)
    assert wire.status_code == 200
    assert wire.content == get(sandbox, RESERVE, **params).content


def test_the_world_starts_with_the_market() -> None:
    data = rows(SandboxTransport(now_ms=NOW), NETFLOW, **{"to": "20170105", "limit": 100})
    assert [r["date"] for r in data][-1] == cq.FIRST_DAY.isoformat() == "2017-01-01"
    assert cq.last_recluster(ms(datetime(2024, 5, 28, tzinfo=UTC))) == date(2024, 5, 28)
    assert cq.last_recluster(ms(datetime(2024, 5, 28, tzinfo=UTC)) - 1) == date(2024, 5, 21)
