"""CryptoQuantClient against the sandbox: long-form contract, newest-first to oldest-first,
paging at the wire, publication time, Tuesday revisions, correlation with the market, every
error class (token, plan, status inside HTTP 200, deprecated, retries, malformed answers) and
the generic faults over a real loopback socket."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import polars as pl
import pytest

from btc_assets.core.schema import CRYPTOQUANT_DAILY_SCHEMA
from btc_assets.sandbox import cryptoquant as sandbox_cq
from btc_assets.sandbox.credentials import (
    SANDBOX_CRYPTOQUANT_BASIC_TOKEN,
    SANDBOX_CRYPTOQUANT_TOKEN,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.cryptoquant import (
    CATALOGUE,
    CryptoQuantClient,
    CryptoQuantPlanError,
    CryptoQuantRequestRefused,
    CryptoQuantTokenMissing,
    CryptoQuantTokenRejected,
    Metric,
)
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.hosts import LIVE_CRYPTOQUANT_URL
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

TOKEN = SANDBOX_CRYPTOQUANT_TOKEN
NETFLOW = "/v1/btc/exchange-flows/netflow"
MPI = "/v1/btc/flow-indicator/mpi"
START, END = date(2024, 1, 1), date(2024, 3, 31)  # 91 days
SECRET = "cq-live-0123456789abcdef0123"


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


NOW = ms(datetime(2024, 6, 1, 12, tzinfo=UTC))


def in_process(sandbox: SandboxTransport | None = None, **kw: Any) -> CryptoQuantClient:
    token = kw.pop("token", TOKEN)
    now = kw.pop("now", NOW)
    transport = sandbox or SandboxTransport(now_ms=now)
    return CryptoQuantClient("http://sandbox.cryptoquant.invalid", token, transport=transport,
                             now_ms=lambda: now, **kw)  # fmt: skip


def on_script(replies: list[httpx.Response], **kw: Any) -> tuple[CryptoQuantClient, list]:
    transport, seen = scripted(replies)
    clock = FakeClock()
    options = {"now_ms": lambda: NOW, "sleep": clock.sleep, "clock": clock.time, **kw}
    token = options.pop("token", TOKEN)
    client = CryptoQuantClient(LIVE_CRYPTOQUANT_URL, token, transport=transport, **options)
    return client, seen


def envelope(data: Any, code: int = 200, message: str = "success") -> dict[str, Any]:
    return {"status": {"code": code, "message": message}, "result": {"window": "day", "data": data}}


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return in_process().daily("netflow", START, END)


@contextmanager
def served(
    faults: list[dict[str, Any]], token: str = TOKEN, **client_kw: Any
) -> Iterator[tuple[CryptoQuantClient, SandboxTransport, list[float]]]:
    """The sandbox on a loopback socket; client waits and sandbox windows on one fake clock
    that starts 30 s before a minute ends. A short timeout only where one is injected."""
    clock = FakeClock(start=1_000_050.0)
    sandbox = SandboxTransport(now_ms=NOW, faults=json.dumps(faults), clock=clock.time)
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        options = {"timeout": timeout, "max_retries": 3, "sleep": clock.sleep,
                   "clock": clock.time, **client_kw}  # fmt: skip
        client = CryptoQuantClient(url, token, now_ms=lambda: NOW, **options)
        try:
            yield client, sandbox, clock.sleeps
        finally:
            client.close()


# --- the contract ----------------------------------------------------------------------


def test_catalogue_matches_the_sandbox_endpoints() -> None:
    served_paths = {p: ep.fields for p, ep in sandbox_cq.ENDPOINTS.items()}
    assert {f"/v1{s.path}": s.fields for s in CATALOGUE.values()} == served_paths
    assert {m for m, s in CATALOGUE.items() if not s.per_exchange} == {Metric.MPI}


def test_newest_first_on_the_wire_becomes_oldest_first_long_form(clean: pl.DataFrame) -> None:
    sandbox = SandboxTransport(now_ms=NOW)
    with httpx.Client(transport=sandbox, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        params = {"exchange": "all_exchange", "from": "20240101", "to": "20240331", "limit": 91}
        wire = http.get(f"http://x{NETFLOW}", params=params).json()["result"]["data"]
    assert wire[0]["date"] == "2024-03-31" and wire[-1]["date"] == "2024-01-01"
    assert clean.schema == pl.Schema(CRYPTOQUANT_DAILY_SCHEMA)
    assert clean.height == 91 and clean["date"].is_sorted() and clean["date"].is_unique().all()
    assert clean["date"].to_list() == [START + timedelta(d) for d in range(91)]
    assert clean["value"].to_list() == [r["netflow_total"] for r in reversed(wire)]
    assert set(clean["metric"]) == {"netflow"} and set(clean["exchange"]) == {"all_exchange"}
    assert set(clean["field"]) == {"netflow_total"}


def test_every_metric_is_one_row_per_day_and_field() -> None:
    client = in_process()
    for metric, spec in CATALOGUE.items():
        frame = client.daily(metric, START, START + timedelta(days=9), exchange="all_exchange")
        assert frame.schema == pl.Schema(CRYPTOQUANT_DAILY_SCHEMA), metric
        assert frame.height == 10 * len(spec.fields) and frame["value"].null_count() == 0
        assert frame.select("date", "field").is_unique().all()
        assert frame["exchange"][0] == ("all_exchange" if spec.per_exchange else "none")
    reserve = client.daily(Metric.RESERVE, START, START, exchange="binance")
    assert reserve["field"].to_list() == ["reserve", "reserve_usd"]
    assert set(reserve["exchange"]) == {"binance"}


def test_paging_takes_the_minimum_requests_at_the_wire(clean: pl.DataFrame) -> None:
    sandbox = SandboxTransport(now_ms=NOW)
    paged = in_process(sandbox, page_limit=30).daily("netflow", START, END)
    assert paged.equals(clean)
    assert sandbox.count(NETFLOW) == 4 == math.ceil(91 / 30)
    windows = [(r.params["from"], r.params["to"], int(r.params["limit"])) for r in sandbox.requests]
    assert windows == [("20240101", "20240130", 30), ("20240131", "20240229", 30),
                       ("20240301", "20240330", 30), ("20240331", "20240331", 1)]  # fmt: skip
    whole = SandboxTransport(now_ms=NOW)
    year = in_process(whole).daily("reserve", date(2023, 1, 1), date(2023, 12, 31))
    assert whole.count() == 1 and year.height == 2 * 365  # one request under limit=100000


def test_no_row_before_its_publication_and_the_forming_day_is_never_asked() -> None:
    midnight = datetime(2024, 6, 1, tzinfo=UTC)
    early = SandboxTransport(now_ms=ms(midnight + timedelta(minutes=9)))
    frame = in_process(early, now=ms(midnight + timedelta(minutes=9))).daily(
        "netflow", date(2024, 5, 25), date(2024, 6, 5)
    )
    assert frame["date"].max() == date(2024, 5, 30)  # 05-31 is out at 00:10
    assert early.requests[0].params["to"] == "20240531"  # up to yesterday, never today
    later = in_process(now=ms(midnight + timedelta(minutes=10)))
    latest = later.daily("netflow", date(2024, 5, 25), date(2024, 6, 5))["date"].max()
    assert latest == date(2024, 5, 31)
    today = in_process(now=ms(midnight + timedelta(hours=23)))
    assert today.daily("netflow", date(2024, 6, 1), date(2024, 6, 3)).is_empty()
    assert today.request_count == 0  # only the forming day and the future: nothing to ask


def test_a_tuesday_revision_changes_last_weeks_values() -> None:
    tuesday = datetime(2024, 5, 28, tzinfo=UTC)
    start, end = date(2024, 5, 14), date(2024, 5, 26)

    def values(at: datetime) -> dict[date, float]:
        frame = in_process(now=ms(at)).daily("netflow", start, end)
        return dict(zip(frame["date"], frame["value"], strict=True))

    before, after = values(tuesday - timedelta(minutes=1)), values(tuesday + timedelta(hours=1))
    changed = sorted(d for d in before if before[d] != after[d])
    assert changed == [date(2024, 5, 21) + timedelta(d) for d in range(6)]  # Tue..Sun
    assert all(abs(after[d] - before[d]) < 0.05 * abs(before[d]) + 1000 for d in changed)


def test_flows_are_correlated_with_the_market_as_modelled() -> None:
    start, end = date(2023, 1, 1), date(2023, 12, 31)
    sandbox = SandboxTransport(now_ms=NOW)
    client = in_process(sandbox)
    binance = BinanceClient("http://s", "http://f", transport=sandbox, now_ms=lambda: NOW)
    bars = binance.spot_klines("BTCUSDT", "1d", datetime(2023, 1, 1, tzinfo=UTC),
                               datetime(2024, 1, 1, tzinfo=UTC))  # fmt: skip
    ret = bars.select((pl.col("ts").dt.date() - timedelta(1)).alias("date"),
                      (pl.col("close") / pl.col("open") - 1).alias("ret"))  # fmt: skip
    wide = {}
    for metric in ("netflow", "whale_ratio", "mpi", "reserve"):
        frame = client.daily(metric, start, end).pivot("field", index="date", values="value")
        wide[metric] = frame.join(ret, on="date")
    assert wide["netflow"].height == 365

    def corr(metric: str, column: str) -> float:
        frame = wide[metric]
        return float(np.corrcoef(frame[column].to_numpy(), frame["ret"].to_numpy())[0, 1])

    assert corr("netflow", "netflow_total") < -0.4  # coins leave exchanges on up days
    assert corr("whale_ratio", "exchange_whale_ratio") < -0.1  # whales deposit before drops
    assert corr("mpi", "mpi") > 0.1  # miners sell into strength
    reserve = wide["reserve"].join(wide["netflow"].select("date", "netflow_total"), on="date")
    step = reserve["reserve"].diff().drop_nulls().to_numpy()
    assert step == pytest.approx(reserve["netflow_total"].to_numpy()[1:], abs=1e-5)


def test_bad_arguments_fail_before_any_request() -> None:
    sandbox = SandboxTransport(now_ms=NOW)
    client = in_process(sandbox)
    with pytest.raises(ValueError, match="metric 'funding' unknown"):
        client.daily("funding", START, END)
    with pytest.raises(ValueError, match="mpi is not per exchange"):
        client.daily("mpi", START, END, exchange="binance")
    with pytest.raises(ValueError, match="before start"):
        client.daily("netflow", END, START)
    with pytest.raises(ValueError, match="exchange is empty"):
        client.daily("netflow", START, END, exchange=" ")
    assert sandbox.count() == 0


# --- token, plan, status codes -----------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "  "])
def test_missing_token_raises_before_any_request(token: str | None) -> None:
    sandbox = SandboxTransport(now_ms=NOW)
    with pytest.raises(CryptoQuantTokenMissing) as err:
        in_process(sandbox, token=token).daily("netflow", START, END)
    assert sandbox.count() == 0 and isinstance(err.value, VendorConfigError)
    assert "CRYPTOQUANT_API_KEY" in str(err.value) and NETFLOW in str(err.value)


def test_401_names_the_setting_never_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    with served([], token=SECRET) as (client, sandbox, sleeps):
        with pytest.raises(CryptoQuantTokenRejected) as err:
            client.daily("netflow", START, END)
        assert sandbox.count() == 1 and sleeps == []  # not retried
    text = str(err.value) + repr(err.value.args) + repr(client)
    assert isinstance(err.value, VendorConfigError) and "CRYPTOQUANT_API_KEY" in text
    assert "HTTP 401 code 401: unauthorized" in text
    assert SECRET not in text and SECRET not in caplog.text
    assert caplog.records  # the log was really captured


def test_a_vendor_echoing_the_bare_token_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"status": {"code": 401, "message": "unauthorized", "description": f"bad {SECRET}"}}
    client, _ = on_script([httpx.Response(401, json=body)], token=SECRET)
    with pytest.raises(CryptoQuantTokenRejected) as err:
        client.daily("netflow", START, END)
    assert "unauthorized: bad ***" in str(err.value)
    assert SECRET not in str(err.value) + repr(err.value.args) + caplog.text


def test_403_is_a_plan_refusal_naming_the_endpoint() -> None:
    with served([], token=SANDBOX_CRYPTOQUANT_BASIC_TOKEN) as (client, sandbox, _):
        with pytest.raises(CryptoQuantPlanError) as err:
            client.daily("mpi", START, END)
        assert sandbox.count() == 1  # not retried
        assert client.daily("netflow", START, START).height == 1  # the plan's own endpoints
    assert isinstance(err.value, VendorRefused)
    assert f"{MPI} (metric=mpi) is not in this token's CryptoQuant plan" in str(err.value)


STATUS_IN_200 = [
    (401, CryptoQuantTokenRejected, "HTTP 200 code 401: unauthorized -- CryptoQuant did not"),
    (403, CryptoQuantPlanError, "HTTP 200 code 403: forbidden -- /v1/btc/exchange-flows/netflow"),
    (400, CryptoQuantRequestRefused, "HTTP 200 code 400: bad_request -- CryptoQuant refused "
     "metric=netflow"),
    (404, CryptoQuantRequestRefused, "code 404: not_found -- CryptoQuant refused metric=netflow"),
    (405, CryptoQuantRequestRefused, "code 405: not_allowed -- CryptoQuant refused"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "error", "text"), STATUS_IN_200)
def test_an_error_status_inside_http_200_is_the_http_error(
    code: int, error: type[VendorError], text: str
) -> None:
    with served([{"kind": "error200", "path": NETFLOW, "code": code}]) as (client, sandbox, _):
        with pytest.raises(error) as err:
            client.daily("netflow", START, END)
        assert sandbox.count() == 1  # a definite answer is not retried
    message = str(err.value)
    assert type(err.value) is error and text in message
    assert message.startswith(f"cryptoquant GET {NETFLOW} {{exchange=all_exchange, window=day,")
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("status", "text"),
    [(400, "HTTP 400 code 400: bad_request: window=hour"), (404, "HTTP 404: Not Found"),
     (405, "HTTP 405 code 405: not_allowed")],
)  # fmt: skip
def test_400_404_405_refuse_naming_metric_and_params(status: int, text: str) -> None:
    body = {"status": {"code": status, "message": {400: "bad_request", 405: "not_allowed"}.get(
        status, ""), "description": "window=hour" if status == 400 else None}}  # fmt: skip
    reply = httpx.Response(404, text="<html>404</html>") if status == 404 else httpx.Response(
        status, json=body)  # fmt: skip
    client, seen = on_script([reply])
    with pytest.raises(CryptoQuantRequestRefused) as err:
        client.daily("whale_ratio", START, END, exchange="binance")
    message = str(err.value)
    assert len(seen) == 1 and text in message and "metric=whale_ratio" in message
    assert "exchange=binance" in message and "from=20240101" in message
    if status == 404:
        assert "CRYPTOQUANT_BASE_URL" in message


def test_deprecated_data_is_used_with_a_warning(
    clean: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="btc_assets.vendors")
    with served([{"kind": "error200", "path": NETFLOW, "code": 200}]) as (client, sandbox, _):
        frame = client.daily("netflow", START, END)
    assert frame.equals(clean) and sandbox.count() == 1
    assert client.deprecated == {NETFLOW}
    assert "marks this endpoint deprecated" in caplog.text and NETFLOW in caplog.text


# --- faults over a real socket -----------------------------------------------------------

RECOVERS = [
    {"kind": "429", "path": NETFLOW, "count": 2, "retry_after": 1},
    {"kind": "429", "path": NETFLOW, "count": 1},
    {"kind": "error200", "path": NETFLOW, "code": 429, "count": 2},
    {"kind": "500", "path": NETFLOW, "count": 2},
    {"kind": "error200", "path": NETFLOW, "code": 500, "count": 1},
    {"kind": "503", "path": NETFLOW, "count": 1},
    {"kind": "timeout", "path": NETFLOW, "count": 1, "delay": 0.6},
    {"kind": "reset", "path": NETFLOW, "count": 2},
    {"kind": "truncated", "path": NETFLOW, "count": 1},
    {"kind": "duplicates", "path": NETFLOW, "count": -1},
    {"kind": "out_of_order", "path": NETFLOW, "count": -1},
    {"kind": "extra_field", "path": NETFLOW, "count": -1},
]


def _id(fault: dict[str, Any]) -> str:
    return f"{fault['kind']}{fault.get('code', '')}-x{fault['count']}"


@pytest.mark.parametrize("fault", RECOVERS, ids=_id)
def test_fault_is_absorbed_to_the_clean_answer(clean: pl.DataFrame, fault: dict[str, Any]) -> None:
    with served([fault]) as (client, sandbox, sleeps):
        frame = client.daily("netflow", START, END)
    assert sandbox.faults.fired(fault["kind"]) >= 1 and frame.equals(clean)
    if fault["count"] > 0:  # the failed attempts were really retried, nothing more
        assert client.request_count == sandbox.count() == 1 + fault["count"]
    if "retry_after" in fault:
        assert sleeps == [1.0, 1.0]  # waited what the vendor asked
    elif fault.get("code") == 429 or fault["kind"] == "429":
        assert sleeps[0] == pytest.approx(30.05)  # no stated wait: the next minute


FAILS = [
    ({"kind": "429", "path": NETFLOW, "count": -1, "retry_after": 1}, VendorRateLimited,
     "HTTP 429 code 429: too_many_requests -- gave up after 4 attempts"),
    ({"kind": "500", "path": NETFLOW, "count": -1}, VendorUnavailable,
     "HTTP 500 code 500: internal_server_error -- gave up after 4 attempts"),
    ({"kind": "error200", "path": NETFLOW, "code": 500, "count": -1}, VendorUnavailable,
     "HTTP 200 code 500: internal_server_error -- gave up"),
    ({"kind": "truncated", "path": NETFLOW, "count": -1}, VendorResponseError, "malformed JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "error", "text"), FAILS, ids=[_id(f[0]) for f in FAILS])
def test_fault_that_persists_fails_clearly(
    fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with served([fault]) as (client, _, _), pytest.raises(error) as err:
        client.daily("netflow", START, END)
    assert type(err.value) is error and text in str(err.value)
    assert str(err.value).startswith(f"cryptoquant GET {NETFLOW} {{exchange=all_exchange")


def test_a_gap_or_empty_page_is_never_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="btc_assets.vendors")
    gap = {"kind": "gap", "path": NETFLOW, "day": "2024-02-10"}
    with served([gap]) as (client, _, _):
        frame = client.daily("netflow", START, END)
    assert frame.height == 90 and date(2024, 2, 10) not in frame["date"].to_list()
    assert "1 day(s) missing (2024-02-10)" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    with served([{"kind": "empty", "path": NETFLOW}]) as (client, _, _):
        assert client.daily("netflow", START, END).is_empty()
    assert "91 day(s) missing" in caplog.text


# --- malformed answers -------------------------------------------------------------------

MALFORMED = [
    ({"result": {"window": "day", "data": []}}, "envelope lacks 'status'"),
    ({"status": {"code": 200, "message": "success"}, "result": {"data": "x"}},
     "envelope lacks a 'result.data' list"),
    ([{"date": "2024-01-01"}], "expected a JSON dict, got"),
    (envelope([{"date": "2024-01-02", "netflow_total": "abc"}]),
     "metric=netflow 2024-01-02: 'netflow_total' is not a number: 'abc'"),
    (envelope([{"date": "2024-01-02", "netflow_total": True}]),
     "metric=netflow 2024-01-02: 'netflow_total' is not a number"),
    (envelope([{"netflow_total": 1.0}]), "metric=netflow row 0 has no 'date'"),
    (envelope([{"date": "2024-01-02"}]), "metric=netflow 2024-01-02: row lacks 'netflow_total'"),
    (envelope([{"date": "02/01/2024", "netflow_total": 1}]), "date '02/01/2024' is not YYYY-MM-DD"),
    ({**envelope([]), "result": {"window": "hour", "data": []}}, "answered window='hour'"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "text"), MALFORMED)
def test_malformed_answers_name_the_endpoint(body: Any, text: str) -> None:
    client, seen = on_script([httpx.Response(200, json=body)])
    with pytest.raises(VendorResponseError) as err:
        client.daily("netflow", START, END)
    assert text in str(err.value) and len(seen) == 1
    assert str(err.value).startswith(f"cryptoquant GET {NETFLOW} {{exchange=all_exchange")


def test_null_values_stay_null_and_datetime_keys_are_read() -> None:
    rows = [{"datetime": "2024-01-03 00:00:00", "netflow_total": "12.5"},
            {"date": "2024-01-02", "netflow_total": None},
            {"date": "2024-01-02", "netflow_total": 99.0}]  # fmt: skip
    client, _ = on_script([httpx.Response(200, json=envelope(rows))])
    frame = client.daily("netflow", date(2024, 1, 2), date(2024, 1, 3))
    assert frame["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    assert frame["value"].to_list() == [None, 12.5]  # one row per date: the first served
