"""BinanceClient against the sandbox: window contract, request counts, and every fault class
over a real loopback socket (retried to the clean answer, or a clear error)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest

from btc_assets.core.schema import FUNDING_SCHEMA, KLINE_SCHEMA
from btc_assets.sandbox.faults import DATA_KINDS
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import (
    BinanceClient,
    BinanceEndpointMissing,
    BinanceGeoBlocked,
    BinanceSymbolError,
)
from btc_assets.vendors.errors import (
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)

START = datetime(2024, 1, 2, tzinfo=UTC)
END = START + timedelta(days=1)
NOW_MS = int(datetime(2024, 1, 5, 12, 0, 30, tzinfo=UTC).timestamp() * 1000)
SPOT, FAPI, CONT, FUNDING = (
    "/api/v3/klines", "/fapi/v1/klines", "/fapi/v1/continuousKlines", "/fapi/v1/fundingRate"
)  # fmt: skip


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(client: BinanceClient, what: str, symbol: str = "BTCUSDT") -> pl.DataFrame:
    if what == "spot":
        return client.spot_klines(symbol, "1m", START, END)
    if what == "perp":
        return client.futures_klines(symbol, "1m", START, END)
    if what == "continuous":
        return client.futures_klines(symbol, "1m", START, END, continuous=True)
    return client.funding_rate(symbol, START, END)


def in_process(sandbox: SandboxTransport | None = None) -> BinanceClient:
    return BinanceClient(
        "http://sandbox.binance.invalid",
        "http://sandbox.fapi.binance.invalid",
        transport=sandbox or SandboxTransport(now_ms=NOW_MS),
        now_ms=lambda: NOW_MS,
    )


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    client = in_process()
    return {w: fetch(client, w) for w in ("spot", "perp", "continuous", "funding")}


@contextmanager
def served(
    faults: list[dict[str, Any]], **client_kw: Any
) -> Iterator[tuple[BinanceClient, SandboxTransport, Sleeps]]:
    """The sandbox on a loopback socket and a client with fake sleep. The timeout is short
    only where a timeout is injected: elsewhere a loaded machine's slow answer would be
    retried, and the request counts these tests assert would be off by one."""
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults))
    sleeps = Sleeps()
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {"timeout": timeout, "max_retries": 3, "sleep": sleeps,
                                   **client_kw}  # fmt: skip
        client = BinanceClient(url, url, now_ms=lambda: NOW_MS, **options)
        try:
            yield client, sandbox, sleeps
        finally:
            client.close()


def test_clean_day_is_the_1440_bars_of_the_day(clean: dict[str, pl.DataFrame]) -> None:
    for what in ("spot", "perp", "continuous"):
        frame = clean[what]
        assert frame.schema == pl.Schema(KLINE_SCHEMA)
        assert frame.height == 1440
        assert frame["ts"].min() == START + timedelta(minutes=1)
        assert frame["ts"].max() == END
        assert frame["ts"].is_sorted() and frame["ts"].n_unique() == 1440
    funding = clean["funding"]
    assert funding.schema == pl.Schema(FUNDING_SCHEMA)
    assert funding["ts"].to_list() == [START + timedelta(hours=h) for h in (8, 16, 24)]
    assert funding["mark_price"].null_count() == 0


def test_requests_per_day_are_2_1_1() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    for offset in range(3):
        day = START - timedelta(days=offset)
        client.spot_klines("BTCUSDT", "1m", day, day + timedelta(days=1))
        client.futures_klines("BTCUSDT", "1m", day, day + timedelta(days=1))
        client.futures_klines("BTCUSDT", "1m", day, day + timedelta(days=1), continuous=True)
        client.funding_rate("BTCUSDT", day, day + timedelta(days=1))
    assert (sandbox.count(SPOT), sandbox.count(FAPI)) == (6, 3)
    assert (sandbox.count(CONT), sandbox.count(FUNDING)) == (3, 3)
    first, second = (r.params for r in sandbox.requests[:2])
    assert first["startTime"] == str(int(START.timestamp() * 1000))
    assert first["endTime"] == str(int(END.timestamp() * 1000) - 1)
    assert int(second["startTime"]) == int(START.timestamp() * 1000) + 999 * 60_000 + 1


@pytest.mark.parametrize(("interval", "bars"), [("15m", 96), ("1h", 24), ("1d", 1)])
def test_coarser_intervals_keep_the_right_closed_window(interval: str, bars: int) -> None:
    frame = in_process().spot_klines("BTCUSDT", interval, START, END)
    assert frame.height == bars
    assert frame["ts"].max() == END
    assert frame["ts"].min() == START + timedelta(minutes=1440 // bars)


def test_unaligned_window_keeps_bars_closing_inside_it(clean: dict[str, pl.DataFrame]) -> None:
    start, end = START + timedelta(seconds=30), START + timedelta(minutes=10, seconds=30)
    frame = in_process().spot_klines("BTCUSDT", "1m", start, end)
    assert frame.equals(clean["spot"].filter((pl.col("ts") > start) & (pl.col("ts") <= end)))
    assert frame.height == 10


def test_forming_candle_is_dropped() -> None:
    today = datetime(2024, 1, 5, tzinfo=UTC)
    frame = in_process().spot_klines("BTCUSDT", "1m", today, today + timedelta(days=1))
    assert frame.height == 720  # 00:00..11:59 opened and closed; 12:00 is still open
    assert frame["ts"].max() == today + timedelta(hours=12)


def test_funding_window_rounds_late_stamps_and_blank_mark_price() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    day = datetime(2019, 12, 1, tzinfo=UTC)
    frame = client.funding_rate("BTCUSDT", day, day + timedelta(days=1))
    assert frame["ts"].to_list() == [day + timedelta(hours=h) for h in (8, 16, 24)]
    assert frame["mark_price"].null_count() == 3  # "" on the venue's old rows
    stamps = json.loads(
        httpx.Client(transport=sandbox)
        .get("http://x/fapi/v1/fundingRate", params={"symbol": "BTCUSDT", "limit": 3})
        .text
    )
    assert any(row["fundingTime"] % 60_000 for row in stamps)  # some really are ms late


# --- faults over a real socket ---------------------------------------------------------


def _id(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['kind']}-x{value.get('count', 1)}"
    return value if isinstance(value, str) else ""


RECOVERS = [
    ("spot", {"kind": "429", "path": SPOT, "count": 2, "retry_after": 1}),
    ("perp", {"kind": "418", "path": FAPI, "count": 1, "retry_after": 2}),
    ("spot", {"kind": "500", "path": SPOT, "count": 2}),
    ("funding", {"kind": "503", "path": FUNDING, "count": 1}),
    ("spot", {"kind": "timeout", "path": SPOT, "count": 1, "delay": 0.6}),
    ("perp", {"kind": "reset", "path": FAPI, "count": 2}),
    ("continuous", {"kind": "connect", "path": CONT, "count": 1}),
    ("spot", {"kind": "error200", "path": SPOT, "count": 2, "code": -1000}),
    (
        "perp",
        {
            "kind": "error200",
            "path": FAPI,
            "count": 1,
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        },
    ),
    (
        "funding",
        {
            "kind": "error200",
            "path": FUNDING,
            "count": 1,
            "code": -1003,
            "msg": "Too much request weight used",
        },
    ),
    ("spot", {"kind": "truncated", "path": SPOT, "count": 2, "skip": 1}),
    ("spot", {"kind": "empty", "path": SPOT, "count": 1, "skip": 1}),
    ("perp", {"kind": "empty", "path": FAPI, "count": 1}),
    ("spot", {"kind": "duplicates", "path": SPOT, "count": -1}),
    ("perp", {"kind": "out_of_order", "path": FAPI, "count": -1}),
    ("spot", {"kind": "extra_field", "path": SPOT, "count": -1}),
    ("spot", {"kind": "microseconds", "path": SPOT, "count": -1}),
    ("funding", {"kind": "microseconds", "path": FUNDING, "count": -1}),
    ("funding", {"kind": "extra_field", "path": FUNDING, "count": -1}),
    ("funding", {"kind": "duplicates", "path": FUNDING, "count": -1}),
    ("funding", {"kind": "out_of_order", "path": FUNDING, "count": -1}),
]


@pytest.mark.parametrize(("what", "fault"), RECOVERS, ids=_id)
def test_fault_is_absorbed_to_the_clean_answer(
    clean: dict[str, pl.DataFrame], what: str, fault: dict[str, Any]
) -> None:
    with served([fault]) as (client, sandbox, sleeps):
        frame = fetch(client, what)
    assert sandbox.faults.fired(fault["kind"]) >= 1
    assert frame.equals(clean[what])
    if fault["kind"] not in DATA_KINDS - {"empty"}:  # the failed attempts were really retried
        assert sandbox.count(fault["path"]) == (2 if what == "spot" else 1) + fault["count"]
    if "retry_after" in fault:  # waited what the venue asked, no more, no less
        assert sleeps == [float(fault["retry_after"])] * fault["count"]


FAILS = [
    ("spot", {"kind": "429", "path": SPOT, "count": -1, "retry_after": 1}, VendorRateLimited,
     "HTTP 429 code -1003: Too much request weight used"),
    ("spot", {"kind": "418", "path": SPOT, "retry_after": 3600}, VendorRateLimited,
     "asks to wait 3600 s"),
    ("perp", {"kind": "500", "path": FAPI, "count": -1}, VendorUnavailable, "HTTP 500"),
    ("funding", {"kind": "503", "path": FUNDING, "count": -1}, VendorUnavailable,
     "code -1008: Server is currently overloaded"),
    ("spot", {"kind": "reset", "path": SPOT, "count": -1}, VendorUnavailable, "connection error"),
    ("spot", {"kind": "truncated", "path": SPOT, "count": -1}, VendorResponseError,
     "malformed JSON"),
    ("spot", {"kind": "error200", "path": SPOT, "code": -1000, "count": -1, "msg": "Busy."},
     VendorUnavailable, "HTTP 200 code -1000: Busy. -- gave up after 4 attempts"),
    ("spot", {"kind": "error200", "path": SPOT, "code": -1130,
              "msg": "Data sent for parameter 'limit' is not valid."},
     VendorError, "HTTP 200 code -1130: Data sent for parameter 'limit' is not valid."),
    ("spot", {"kind": "451", "path": SPOT}, BinanceGeoBlocked, "api.binance.us"),
    ("perp", {"kind": "404", "path": FAPI}, BinanceEndpointMissing,
     "HTTP 404: Not Found -- this host does not serve /fapi/v1/klines"),
    ("spot", {"kind": "429", "path": SPOT, "count": -1, "retry_after": 50}, VendorRateLimited,
     "waiting 50.0 s more would pass max_wait_seconds=120"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "fault", "error", "text"),
    FAILS,
    ids=_id,
)
def test_fault_that_persists_fails_clearly(
    what: str, fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with served([fault]) as (client, _, _), pytest.raises(error) as err:
        fetch(client, what)
    message = str(err.value)
    path = {"spot": SPOT, "perp": FAPI, "funding": FUNDING}[what]
    assert message.startswith(f"binance GET {path} {{symbol=BTCUSDT, ")
    assert text in message
    assert type(err.value) is error


@pytest.mark.parametrize("junk", ["nan", "-5", "inf", "abc"])
def test_junk_retry_after_from_the_venue_falls_back_to_backoff(
    clean: dict[str, pl.DataFrame], junk: Any
) -> None:
    fault = {"kind": "429", "path": SPOT, "count": 1, "retry_after_header": junk}
    with served([fault]) as (client, sandbox, sleeps):
        frame = fetch(client, "spot")
        assert sandbox.count(SPOT) == 3  # the refused page, asked again, and the second page
    assert frame.equals(clean["spot"])
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5  # backoff, not the junk


def test_persistent_timeout_fails_clearly() -> None:
    fault = {"kind": "timeout", "path": SPOT, "count": -1, "delay": 0.5}
    with (
        served([fault], max_retries=1) as (client, _, sleeps),
        pytest.raises(VendorUnavailable) as err,
    ):
        fetch(client, "spot")
    assert "no response: timeout" in str(err.value) and SPOT in str(err.value)
    assert len(sleeps) == 1


def test_definite_error_body_in_200_is_not_retried() -> None:
    fault = {"kind": "error200", "path": SPOT, "count": -1, "code": -1121, "msg": "Invalid symbol."}
    with served([fault]) as (client, sandbox, sleeps):
        with pytest.raises(BinanceSymbolError, match=r"HTTP 200 code -1121: Invalid symbol\."):
            fetch(client, "spot")
        assert sandbox.count(SPOT) == 1 and sleeps == []


def test_missing_endpoint_is_refused_at_once_naming_the_setting() -> None:
    with served([{"kind": "404", "path": FUNDING, "count": -1}]) as (client, sandbox, sleeps):
        with pytest.raises(BinanceEndpointMissing) as err:
            fetch(client, "funding")
        assert sandbox.count(FUNDING) == 1 and sleeps == []  # a definite no: never retried
    assert isinstance(err.value, VendorRefused)
    assert "BINANCE_FUTURES_BASE_URL" in str(err.value) and FUNDING in str(err.value)


def test_geo_block_names_the_settings_to_change() -> None:
    fault = {"kind": "451", "path": FAPI, "count": -1}
    with served([fault]) as (client, _, _), pytest.raises(BinanceGeoBlocked) as err:
        fetch(client, "perp")
    text = str(err.value)
    assert "HTTP 451 code 0: Service unavailable from a restricted location" in text
    for hint in ("api.binance.us", "data-api.binance.vision", "BINANCE_FUTURES_BASE_URL"):
        assert hint in text


def test_unknown_symbol_names_it() -> None:
    with served([]) as (client, sandbox, _), pytest.raises(BinanceSymbolError) as err:
        fetch(client, "perp", symbol="FOOUSDT")
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1  # never retried
    assert "{symbol=FOOUSDT," in str(err.value) and "'FOOUSDT' is not listed" in str(err.value)
    assert "code -1121: Invalid symbol." in str(err.value)


def test_empty_pages_are_not_invented_into_data() -> None:
    with served([{"kind": "empty", "path": SPOT, "count": -1}]) as (client, sandbox, _):
        frame = fetch(client, "spot")
        assert sandbox.count(SPOT) == 2  # one retry of the empty page, then accept it
    assert frame.height == 0 and frame.schema == pl.Schema(KLINE_SCHEMA)


@pytest.mark.parametrize(("what", "path"), [("spot", SPOT), ("perp", FAPI)])
def test_gap_leaves_exactly_the_missing_bars_missing(
    clean: dict[str, pl.DataFrame], what: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    gap = {"kind": "gap", "path": path, "day": "2024-01-02", "start_minute": 600, "minutes": 30}
    caplog.set_level(logging.WARNING, logger="btc_assets.vendors")
    with served([gap]) as (client, sandbox, _):
        frame = fetch(client, what)
        requests = sandbox.count(path)
    # bars opening 10:00..10:29 are labelled 10:01..10:30
    lost = (pl.col("ts") > START + timedelta(hours=10)) & (
        pl.col("ts") <= START + timedelta(hours=10, minutes=30)
    )
    assert frame.equals(clean[what].filter(~lost))
    assert frame.height == 1410
    assert requests == (2 if what == "spot" else 1)
    assert "1410 of 1440 bars (30 missing)" in caplog.text  # a gap is never silent


def test_weight_budget_spaces_a_backfill_instead_of_drawing_429() -> None:
    """fapi klines at limit 1500 cost 10: a budget of 25 allows two days per minute."""
    clock = [1_000_020.0]
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        clock[0] += seconds

    sandbox = SandboxTransport(now_ms=NOW_MS, clock=lambda: clock[0], limits={"binance-fapi": 25})
    client = BinanceClient(
        "http://s", "http://f", transport=sandbox, now_ms=lambda: NOW_MS,
        futures_weight_limit=25, weight_safety=1.0, sleep=sleep, clock=lambda: clock[0],
    )  # fmt: skip
    for offset in range(6):
        day = START - timedelta(days=offset)
        assert client.futures_klines("BTCUSDT", "1m", day, day + timedelta(days=1)).height == 1440
    assert [r.status for r in sandbox.requests] == [200] * 6
    assert len(sleeps) == 2 and all(0 < s <= 60.05 for s in sleeps)
