"""CoinGlassClient against the sandbox: the contract, paging, request counts, the envelope's
errors (plan, key, codes inside HTTP 200) and every fault class over a real loopback socket."""

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

from btc_assets.core.schema import (
    COINGLASS_AGG_TAKER_SCHEMA,
    COINGLASS_FUNDING_SCHEMA,
    COINGLASS_LIQUIDATION_SCHEMA,
    COINGLASS_OI_SCHEMA,
    COINGLASS_PRICE_SCHEMA,
    COINGLASS_TAKER_SCHEMA,
)
from btc_assets.sandbox.credentials import SANDBOX_COINGLASS_KEY
from btc_assets.sandbox.faults import DATA_KINDS
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.coinglass import (
    FUNDING_OI_WEIGHT,
    FUTURES_AGG_TAKER,
    LIQUIDATION,
    OI_HISTORY,
    PRICE_HISTORY,
    SPOT_AGG_TAKER,
    CoinGlassClient,
    CoinGlassEndpointMissing,
    CoinGlassKeyInvalid,
    CoinGlassKeyMissing,
    CoinGlassPlanError,
    CoinGlassSymbolError,
)
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

START = datetime(2024, 1, 2, tzinfo=UTC)
END = START + timedelta(days=1)
NOW_MS = int(datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC).timestamp() * 1000)
KEY = SANDBOX_COINGLASS_KEY
EXCHANGES = "Binance,OKX,Bybit"
SCHEMAS = {
    "price": COINGLASS_PRICE_SCHEMA, "oi": COINGLASS_OI_SCHEMA,
    "funding": COINGLASS_FUNDING_SCHEMA, "taker": COINGLASS_TAKER_SCHEMA,
    "agg": COINGLASS_AGG_TAKER_SCHEMA, "liq": COINGLASS_LIQUIDATION_SCHEMA,
}  # fmt: skip


def fetch(client: CoinGlassClient, what: str, start: datetime = START, end: datetime = END,
          interval: str = "15m") -> pl.DataFrame:  # fmt: skip
    if what == "price":
        return client.price_history("BTCUSDT", "Binance", start, end, interval)
    if what == "oi":
        return client.open_interest_history("BTCUSDT", "BTC", start, end, interval)
    if what == "funding":
        return client.funding_history("BTCUSDT", "BTC", start, end, "oi", interval)
    if what == "taker":
        return client.pair_taker_history("BTCUSDT", "Binance", start, end, interval)
    if what == "agg":
        return client.aggregated_taker_history("BTCUSDT", "BTC", EXCHANGES, start, end, interval)
    return client.liquidation_history("BTCUSDT", "BTC", EXCHANGES, start, end, interval)


def in_process(sandbox: SandboxTransport | None = None, **kw: Any) -> CoinGlassClient:
    key = kw.pop("api_key", KEY)
    options: dict[str, Any] = {"now_ms": lambda: NOW_MS, **kw}
    transport = sandbox or SandboxTransport(now_ms=NOW_MS)
    return CoinGlassClient("http://sandbox.coinglass.invalid", key, transport=transport, **options)


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    client = in_process()
    return {what: fetch(client, what) for what in SCHEMAS}


@contextmanager
def served(
    faults: list[dict[str, Any]], key: str | None = KEY, **client_kw: Any
) -> Iterator[tuple[CoinGlassClient, SandboxTransport, list[float]]]:
    """The sandbox on a loopback socket and a client on a fake clock (sandbox rate windows
    and client waits alike) that starts 30 s before a minute ends. The timeout is short only
    where a timeout is injected: elsewhere a loaded machine's slow answer would be retried,
    and the request counts these tests assert would be off by one."""
    clock = FakeClock(start=1_000_050.0)
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults), clock=clock.time)
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {
            "timeout": timeout, "max_retries": 3, "sleep": clock.sleep, "clock": clock.time,
            **client_kw,
        }  # fmt: skip
        client = CoinGlassClient(url, key, now_ms=lambda: NOW_MS, **options)
        try:
            yield client, sandbox, clock.sleeps
        finally:
            client.close()


def raw_rows(sandbox: SandboxTransport, path: str, **params: Any) -> list[dict[str, Any]]:
    with httpx.Client(transport=sandbox, headers={"CG-API-KEY": KEY}) as http:
        return http.get(f"http://x{path}", params=params).json()["data"]


# --- the contract ----------------------------------------------------------------------


def test_every_table_is_the_96_closed_bars_of_the_day(clean: dict[str, pl.DataFrame]) -> None:
    for what, frame in clean.items():
        assert frame.schema == pl.Schema(SCHEMAS[what]), what
        assert frame.height == 96 and frame["ts"].n_unique() == 96 and frame["ts"].is_sorted()
        assert frame["ts"].min() == START + timedelta(minutes=15) and frame["ts"].max() == END
        assert frame["symbol"].unique().to_list() == ["BTCUSDT"]  # even when asked for "BTC"
        assert frame.null_count().sum_horizontal().item() == 0


def test_close_time_label_and_funding_in_fraction(clean: dict[str, pl.DataFrame]) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    start_ms = int(START.timestamp() * 1000)
    price = raw_rows(sandbox, PRICE_HISTORY, exchange="Binance", symbol="BTCUSDT",
                     interval="15m", start_time=start_ms, limit=1)[0]  # fmt: skip
    assert price["time"] == start_ms  # the bar opening 00:00 ...
    first = clean["price"].row(0, named=True)
    assert first["ts"] == START + timedelta(minutes=15)  # ... is labelled 00:15
    assert first["close"] == float(price["close"])
    funding = raw_rows(sandbox, FUNDING_OI_WEIGHT, symbol="BTC", interval="15m",
                       start_time=start_ms, limit=96)  # fmt: skip
    assert isinstance(funding[0]["close"], str)
    percent = [float(r["close"]) for r in funding]
    assert clean["funding"]["funding_rate"].to_list() == pytest.approx([p / 100 for p in percent])
    assert clean["funding"]["funding_rate"].abs().max() < 0.001  # a fraction, ~0.0001
    assert clean["funding"]["funding_source"].unique().to_list() == ["coinglass_oi_weight"]


def test_price_tracks_the_binance_perp_within_a_few_bp(clean: dict[str, pl.DataFrame]) -> None:
    binance = BinanceClient("http://s", "http://f", transport=SandboxTransport(now_ms=NOW_MS),
                            now_ms=lambda: NOW_MS)  # fmt: skip
    perp = binance.futures_klines("BTCUSDT", "15m", START, END)
    both = clean["price"].join(perp, on="ts", suffix="_perp")
    assert both.height == 96
    bp = ((both["close"] / both["close_perp"] - 1).abs() * 1e4).max()
    assert 0 <= bp < 3  # close, but CoinGlass samples its own feed: not bit-identical
    volume = (both["volume_usd"] / both["quote_volume"] - 1).abs().max()
    assert volume < 0.02


def test_365_days_of_15m_take_36_requests_without_429() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    end = datetime(2024, 6, 1, tzinfo=UTC)
    frame = client.price_history("BTCUSDT", "Binance", end - timedelta(days=365), end)
    assert frame.height == 365 * 96 and frame["ts"].is_unique().all()
    assert client.request_count == 36 == sandbox.count(PRICE_HISTORY)  # ceil(35040 / 1000)
    assert {r.status for r in sandbox.requests} == {200}
    windows = [(int(r.params["start_time"]), int(r.params["end_time"])) for r in sandbox.requests]
    assert all(b - a < 1000 * 900_000 for a, b in windows)  # never more than limit bars
    assert all(windows[i][1] + 1 == windows[i + 1][0] for i in range(35))  # no overlap or hole


def test_open_bar_and_future_are_dropped() -> None:
    today = datetime(2024, 6, 1, tzinfo=UTC)
    sandbox = SandboxTransport(now_ms=NOW_MS)
    frame = in_process(sandbox).price_history("BTCUSDT", "Binance", today, today + timedelta(1))
    assert frame["ts"].max() == today + timedelta(hours=12)  # 12:00-12:15 is still open
    assert frame.height == 48 and sandbox.count() == 1


def test_full_join_keeps_a_one_sided_bar_null() -> None:
    gap = {"kind": "gap", "path": SPOT_AGG_TAKER, "day": "2024-01-02", "start_minute": 60,
           "minutes": 15}  # fmt: skip
    frame = fetch(in_process(SandboxTransport(now_ms=NOW_MS, faults=json.dumps([gap]))), "agg")
    assert frame.height == 96
    hole = frame.filter(pl.col("ts") == START + timedelta(hours=1, minutes=15))
    assert hole["spot_buy_volume_usd"].to_list() == [None]  # not invented
    assert hole["futures_buy_volume_usd"].null_count() == 0
    assert frame["spot_buy_volume_usd"].null_count() == 1


def test_bad_arguments_fail_before_any_request() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    with pytest.raises(ValueError, match="interval '1w' not supported"):
        fetch(client, "price", interval="1w")
    with pytest.raises(ValueError, match="weighting"):
        client.funding_history("BTCUSDT", "BTC", START, END, "mark")  # type: ignore[arg-type]
    assert sandbox.count() == 0


# --- keys, plans, rate limits ----------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_raises_before_any_request(key: str | None) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    with pytest.raises(CoinGlassKeyMissing) as err:
        fetch(in_process(sandbox, api_key=key), "agg")
    assert sandbox.count() == 0  # nothing reached the wire
    assert isinstance(err.value, VendorConfigError) and isinstance(err.value, VendorError)
    assert "set COINGLASS_API_KEY" in str(err.value) and SPOT_AGG_TAKER in str(err.value)


def test_bad_key_is_named_never_shown() -> None:
    secret = "cg-live-0123456789abcdef"
    with served([], key=secret) as (client, sandbox, _), pytest.raises(CoinGlassKeyInvalid) as err:
        fetch(client, "price")
    text = str(err.value) + repr(err.value.args)
    assert secret not in text
    assert "code 400: Invalid API key provided" in text and "COINGLASS_API_KEY" in text
    assert sandbox.count() == 1  # asking again gives the same answer


def test_plan_error_says_the_interval_needs_a_higher_plan() -> None:
    with served([], key="sandbox-coinglass-hobbyist") as (client, _, _):
        with pytest.raises(CoinGlassPlanError) as err:
            fetch(client, "oi")
        assert fetch(client, "oi", interval="4h").height == 6  # the plan's own intervals work
    text = str(err.value)
    assert text.startswith(
        "coinglass GET /api/futures/open-interest/aggregated-history {symbol=BTC"
    )
    assert "HTTP 200 code 401: Upgrade plan" in text and "interval=15m needs a higher" in text
    assert isinstance(err.value, VendorRefused)  # the definite no a fallback may act on


@pytest.mark.parametrize(("what", "kw"), [("price", {"pair": "FOOUSDT"}), ("oi", {"coin": "FOO"})])
def test_unknown_symbol_is_refused_at_once(what: str, kw: dict[str, str]) -> None:
    with served([]) as (client, sandbox, sleeps), pytest.raises(CoinGlassSymbolError) as err:
        if what == "price":
            client.price_history("BTCUSDT", "Binance", START, END, pair=kw["pair"])
        else:
            client.open_interest_history("BTCUSDT", kw["coin"], START, END)
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1 and sleeps == []
    assert "code 400: Unsupported symbol" in str(err.value)
    assert f"does not list symbol={next(iter(kw.values()))}" in str(err.value)


def test_rate_limiter_keeps_a_burst_under_a_small_plan_without_429() -> None:
    clock = FakeClock()
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=clock.time, limits={"coinglass": 10})
    # Configured for Standard (300) while the key's plan allows 10: the client follows
    # API-KEY-MAX-LIMIT from the first answer on.
    client = in_process(sandbox, sleep=clock.sleep, clock=clock.time)
    frame = fetch(client, "price", START, START + timedelta(days=15), interval="1m")
    assert frame.height == 15 * 1440 and sandbox.count() == 22
    assert {r.status for r in sandbox.requests} == {200}
    sleeps = clock.sleeps
    assert client.budget.limit == 10 and len(sleeps) == 2 and all(0 < s <= 61 for s in sleeps)


def test_one_retry_loop_per_page_whatever_the_failure_looks_like() -> None:
    """HTTP 503 and code 500 inside HTTP 200, alternating: one budget of 1 + max_retries
    attempts for the page, not one loop inside the other (retries x retries)."""
    clock = FakeClock()
    outage = httpx.Response(503, text="<html>503</html>")
    envelope = httpx.Response(200, json={"code": "500", "msg": "Server Error"})
    transport, seen = scripted([outage, envelope] * 20)
    client = CoinGlassClient("https://open-api-v4.coinglass.com", KEY, transport=transport,
                             now_ms=lambda: NOW_MS, sleep=clock.sleep, clock=clock.time,
                             max_retries=3)  # fmt: skip
    with pytest.raises(VendorUnavailable) as err:
        fetch(client, "price")
    assert len(seen) == 4 and len(clock.sleeps) == 3
    assert "code 500: Server Error -- gave up after 4 attempts" in str(err.value)


def test_total_wait_per_page_is_bounded() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(429, headers={"Retry-After": "40"}, json={
        "code": "429", "msg": "Too Many Requests"})])  # fmt: skip
    client = CoinGlassClient("https://open-api-v4.coinglass.com", KEY, transport=transport,
                             now_ms=lambda: NOW_MS, sleep=clock.sleep, clock=clock.time,
                             max_retries=10, max_wait_seconds=100)  # fmt: skip
    with pytest.raises(VendorRateLimited) as err:
        fetch(client, "price")
    assert clock.sleeps == [40.0, 40.0] and len(seen) == 3
    text = str(err.value)
    assert text.startswith(f"coinglass GET {PRICE_HISTORY} {{exchange=Binance, symbol=BTCUSDT")
    assert "waiting 40.0 s more would pass max_wait_seconds=100" in text


# --- faults over a real socket ---------------------------------------------------------


def _id(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['kind']}{value.get('code', '')}-x{value.get('count', 1)}"
    return value if value in SCHEMAS else ""


RECOVERS = [
    ("price", {"kind": "429", "path": PRICE_HISTORY, "count": 2, "retry_after": 1}),
    ("price", {"kind": "429", "path": PRICE_HISTORY, "count": 1}),
    ("liq", {"kind": "error200", "path": LIQUIDATION, "code": 429, "count": 2}),
    ("price", {"kind": "418", "path": PRICE_HISTORY, "count": 1, "retry_after": 2}),
    ("oi", {"kind": "500", "path": "/api/futures/open-interest/*", "count": 2}),
    ("funding", {"kind": "503", "path": FUNDING_OI_WEIGHT, "count": 1}),
    ("price", {"kind": "error200", "path": PRICE_HISTORY, "code": 500, "count": 2}),
    ("oi", {"kind": "error200", "path": OI_HISTORY, "code": 502, "count": 1, "msg": "Bad Gateway"}),
    ("taker", {"kind": "timeout", "path": "/api/futures/v2/*", "count": 1, "delay": 0.6}),
    ("price", {"kind": "reset", "path": PRICE_HISTORY, "count": 2}),
    ("liq", {"kind": "truncated", "path": LIQUIDATION, "count": 1}),
    ("price", {"kind": "empty", "path": PRICE_HISTORY, "count": 1}),
    ("agg", {"kind": "duplicates", "path": "*", "count": -1}),
    ("price", {"kind": "out_of_order", "path": PRICE_HISTORY, "count": -1}),
    ("agg", {"kind": "extra_field", "path": "*", "count": -1}),
    ("funding", {"kind": "microseconds", "path": FUNDING_OI_WEIGHT, "count": -1}),
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
        assert client.request_count == sandbox.count() == 1 + fault["count"]
    if "retry_after" in fault:  # waited what the vendor asked
        assert sleeps == [float(fault["retry_after"])] * fault["count"]
    if fault.get("code") == 429:  # a rate-limit body waits for a fresh window, not 0.5 s
        assert sleeps == [pytest.approx(30.05), pytest.approx(60.0)]


FAILS = [
    ("price", {"kind": "429", "path": PRICE_HISTORY, "count": -1, "retry_after": 1},
     VendorRateLimited, "HTTP 429 code 429: Too Many Requests"),
    ("price", {"kind": "error200", "path": PRICE_HISTORY, "code": 429, "count": -1},
     VendorRateLimited, "HTTP 200 code 429: Too Many Requests -- gave up after 3 attempts in 9"),
    ("price", {"kind": "429", "path": PRICE_HISTORY, "retry_after": 3600}, VendorRateLimited,
     "asks to wait 3600 s (Retry-After), more than max_wait_seconds=120; not waiting"),
    ("price", {"kind": "error200", "path": PRICE_HISTORY, "code": 500, "count": -1},
     VendorUnavailable, "HTTP 200 code 500: Server Error -- gave up after 4 attempts"),
    ("price", {"kind": "503", "path": PRICE_HISTORY, "count": -1}, VendorUnavailable,
     "HTTP 503: Service Unavailable"),
    ("price", {"kind": "reset", "path": PRICE_HISTORY, "count": -1}, VendorUnavailable,
     "connection error"),
    ("price", {"kind": "truncated", "path": PRICE_HISTORY, "count": -1}, VendorResponseError,
     "malformed JSON"),
    ("price", {"kind": "error200", "path": PRICE_HISTORY}, CoinGlassPlanError,
     "code 401: Upgrade plan -- /api/futures/price/history at interval=15m needs a higher"),
    ("price", {"kind": "error200", "path": PRICE_HISTORY, "code": 400, "msg": "Bad thing"},
     VendorError, "HTTP 200 code 400: Bad thing"),
    ("price", {"kind": "error200", "path": PRICE_HISTORY, "code": 404,
               "msg": "Endpoint not found"}, CoinGlassEndpointMissing,
     "HTTP 200 code 404: Endpoint not found -- CoinGlass does not serve"),
    ("price", {"kind": "404", "path": PRICE_HISTORY}, CoinGlassEndpointMissing,
     "HTTP 404: Not Found -- CoinGlass does not serve /api/futures/price/history"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "fault", "error", "text"), FAILS, ids=_id)
def test_fault_that_persists_fails_clearly(
    what: str, fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with served([fault]) as (client, sandbox, _), pytest.raises(error) as err:
        fetch(client, what)
    message = str(err.value)
    assert type(err.value) is error
    assert message.startswith(f"coinglass GET {PRICE_HISTORY} {{exchange=Binance, symbol=BTCUSDT,")
    assert text in message and KEY not in message
    if isinstance(err.value, VendorRefused) or type(err.value) is VendorError:
        assert sandbox.count() == 1  # a plan, path or parameter error is not retried


def test_persistent_timeout_fails_clearly() -> None:
    fault = {"kind": "timeout", "path": PRICE_HISTORY, "count": -1, "delay": 0.5}
    with (
        served([fault], max_retries=1) as (client, _, sleeps),
        pytest.raises(VendorUnavailable) as err,
    ):
        fetch(client, "price")
    assert "no response: timeout" in str(err.value) and len(sleeps) == 1


def test_gap_leaves_exactly_the_missing_bars_missing(
    clean: dict[str, pl.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    gap = {"kind": "gap", "path": LIQUIDATION, "day": "2024-01-02", "start_minute": 600,
           "minutes": 30}  # fmt: skip
    caplog.set_level(logging.WARNING, logger="btc_assets.vendors")
    with served([gap]) as (client, sandbox, _):
        frame = fetch(client, "liq")
        assert sandbox.count() == 1
    # bars opening 10:00 and 10:15 are labelled 10:15 and 10:30
    lost = pl.col("ts").is_in([START + timedelta(hours=10, minutes=m) for m in (15, 30)])
    assert frame.equals(clean["liq"].filter(~lost)) and frame.height == 94
    assert "94 of 96 bars (2 missing)" in caplog.text  # a gap is never silent


def test_empty_pages_are_not_invented_into_data() -> None:
    with served([{"kind": "empty", "path": FUTURES_AGG_TAKER, "count": -1}]) as (client, sb, _):
        frame = fetch(client, "agg")
        assert sb.count(FUTURES_AGG_TAKER) == 2  # one retry of the empty page, then accept it
    assert frame.height == 96 and frame["futures_buy_volume_usd"].null_count() == 96


def test_debug_logs_params_and_keys_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="btc_assets.vendors")
    with served([{"kind": "extra_field", "count": -1}], debug=True) as (client, _, _):
        fetch(client, "price")
    assert KEY not in caplog.text
    line = next(r.getMessage() for r in caplog.records if "top-level keys" in r.getMessage())
    assert "CG-API-KEY=***" in line and "interval=15m, limit=1000, start_time=" in line
    assert "top-level keys ['code', 'data', 'msg', 'success']; 96 rows" in line
    keys = ["close", "high", "low", "new_metric", "open", "time", "volume_usd"]
    assert f"first row keys {keys}" in line
