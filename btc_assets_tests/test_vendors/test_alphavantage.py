"""AlphaVantageClient: the real file parsed, the sandbox's calendars, every error Alpha Vantage
sends inside HTTP 200 with its retry rule, the daily request budget (in memory and shared
through a file), generic faults over a real loopback socket, and the key kept secret."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from btc_assets.core.schema import ALPHAVANTAGE_DAILY_SCHEMA
from btc_assets.sandbox.alphavantage import PREMIUM_ENDPOINT_TEXT
from btc_assets.sandbox.credentials import (
    SANDBOX_ALPHAVANTAGE_KEY,
    SANDBOX_ALPHAVANTAGE_PREMIUM_KEY,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.us_calendar import is_nyse_session
from btc_assets.vendors.alphavantage import (
    AlphaVantageBudgetSpent,
    AlphaVantageClient,
    AlphaVantageDailyLimit,
    AlphaVantageDemoKey,
    AlphaVantageKeyInvalid,
    AlphaVantageKeyMissing,
    AlphaVantagePremiumRequired,
    AlphaVantageSymbolError,
)
from btc_assets.vendors.daily_budget import DailyBudget
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets_tests import fixtures
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

KEY, PREMIUM = SANDBOX_ALPHAVANTAGE_KEY, SANDBOX_ALPHAVANTAGE_PREMIUM_KEY
NOW = datetime(2024, 6, 18, 22, 0, tzinfo=UTC)  # a Tuesday, an hour after the 21:00 cut
NOW_MS = int(NOW.timestamp() * 1000)
IBM = fixtures.path("alphavantage/IBM_TIME_SERIES_DAILY_compact_2024-06-18_truncated.json")
LIVE = "https://www.alphavantage.co"
DAILY_TEXT = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per "
    "day. Please subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."
)
BURST_TEXT = ("Thank you for using Alpha Vantage! Please consider spreading out your free API "
              "requests more sparingly (1 request per second). You may subscribe to any of the "
              "premium plans at https://www.alphavantage.co/premium/ to lift the free key rate "
              "limit (25 requests per day).")  # fmt: skip


def fetch(client: AlphaVantageClient, what: str) -> pl.DataFrame:
    return client.daily("SPY") if what == "spy" else client.fx_daily("EUR", "USD")


def in_process(sandbox: SandboxTransport | None = None, **kw: Any) -> AlphaVantageClient:
    key = kw.pop("api_key", KEY)
    transport = sandbox or SandboxTransport(now_ms=NOW_MS)
    return AlphaVantageClient("http://sandbox.av.invalid", key, transport=transport,
                              now_ms=lambda: NOW_MS, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def clean() -> dict[str, pl.DataFrame]:
    client = in_process()
    return {what: fetch(client, what) for what in ("spy", "fx")}


@contextmanager
def served(
    faults: list[dict[str, Any]] | None = None,
    key: str | None = KEY,
    limits: dict[str, int] | None = None,
    **client_kw: Any,
) -> Iterator[tuple[AlphaVantageClient, SandboxTransport, FakeClock]]:
    """The sandbox on a loopback socket; client waits and sandbox windows on one fake clock.
    The timeout is short only where a timeout is injected (a slow answer on a loaded machine
    would otherwise be retried and the counts asserted here would be off by one)."""
    clock = FakeClock()
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults or []),
                               clock=clock.time, limits=limits)  # fmt: skip
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults or []) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {"timeout": timeout, "max_retries": 3, "sleep": clock.sleep,
                                   "clock": clock.time, **client_kw}  # fmt: skip
        client = AlphaVantageClient(url, key, now_ms=lambda: NOW_MS, **options)
        try:
            yield client, sandbox, clock
        finally:
            client.close()


def fixture_reply() -> httpx.Response:
    return httpx.Response(
        200, content=IBM.read_bytes(), headers={"content-type": "application/json"}
    )


# --- the contract ----------------------------------------------------------------------


def test_real_file_parses_oldest_first_strings_to_floats() -> None:
    transport, seen = scripted([fixture_reply()])
    client = AlphaVantageClient(LIVE, "live-key-1234", transport=transport, now_ms=lambda: NOW_MS)
    frame = client.daily("ibm")
    assert frame.schema == pl.Schema(ALPHAVANTAGE_DAILY_SCHEMA)
    assert frame.height == 74 and frame["date"].is_sorted() and frame["date"].is_unique().all()
    first, last = frame.row(0, named=True), frame.row(-1, named=True)
    assert first == {"symbol": "IBM", "date": date(2024, 3, 5), "time_zone": "US/Eastern",
                     "open": 192.0, "high": 193.94, "low": 190.57, "close": 191.95,
                     "volume": 5653641.0}  # fmt: skip
    assert (last["date"], last["close"], last["volume"]) == (date(2024, 6, 18), 170.55, 3386442.0)
    assert date(2024, 5, 27) not in frame["date"].to_list()  # Memorial Day: no session
    assert len(seen) == 1 and seen[0].url.path == "/query"
    sent = {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "outputsize": "compact",
            "apikey": "live-key-1234"}  # fmt: skip
    assert dict(seen[0].url.params) == sent


@pytest.mark.parametrize(("now", "newest"), [
    (datetime(2024, 6, 18, 20, 59, 59, tzinfo=UTC), date(2024, 6, 17)),
    (datetime(2024, 6, 18, 21, 0, tzinfo=UTC), date(2024, 6, 18)),
])  # fmt: skip
def test_a_session_is_kept_only_once_closed(now: datetime, newest: date) -> None:
    """The vendor may print today's bar while the session runs: it is not final before
    16:00 US/Eastern, taken as 21:00 UTC (never early, also under daylight saving)."""
    transport, _ = scripted([fixture_reply()])
    now_ms = int(now.timestamp() * 1000)
    frame = AlphaVantageClient(LIVE, "k-1234", transport=transport, now_ms=lambda: now_ms).daily(
        "IBM"
    )
    assert frame["date"].max() == newest


def test_spy_has_every_nyse_session_and_nothing_else() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    full = in_process(sandbox, api_key=PREMIUM, outputsize="full").daily("SPY")
    days = full["date"].to_list()
    first, last = days[0], days[-1]
    calendar = [first + timedelta(d) for d in range((last - first).days + 1)]
    assert days == [d for d in calendar if is_nyse_session(d)]  # no weekend, no holiday, no gap
    assert last == date(2024, 6, 18) and first == date(2017, 1, 3)
    for holiday in ("2024-01-15", "2024-03-29", "2024-05-27", "2024-06-19", "2023-12-25"):
        assert date.fromisoformat(holiday) not in days
    assert full["close"].filter(full["date"].dt.year() == 2024).is_between(300, 800).all()
    compact = in_process(sandbox).daily("SPY")
    assert compact.height == 100 and compact.equals(full.tail(100))
    assert full["volume"].null_count() == 0 and (full["volume"] > 0).all()


def test_fx_is_served_on_weekdays_including_us_holidays(clean: dict[str, pl.DataFrame]) -> None:
    fx = in_process(outputsize="full").fx_daily("eur", "usd")  # full FX needs no premium
    days = fx["date"].to_list()
    calendar = [days[0] + timedelta(d) for d in range((days[-1] - days[0]).days + 1)]
    assert days == [d for d in calendar if d.weekday() < 5]
    assert date(2024, 3, 29) in days and date(2023, 12, 25) in days  # FX trades, NYSE not
    assert days[-1] == date(2024, 6, 17)  # Tuesday's UTC day is not over at 22:00
    assert fx["volume"].null_count() == fx.height
    assert set(fx["symbol"]) == {"EURUSD"} and set(fx["time_zone"]) == {"UTC"}
    assert fx["close"].is_between(0.9, 1.3).all()
    assert clean["fx"].equals(fx.tail(100))


@pytest.mark.parametrize(("body", "text"), [
    ({"Meta Data": {}, "Time Series (5min)": {}}, "the answer lacks 'Time Series (Daily)'"),
    ({"Time Series (Daily)": {"2024-06-18": {"1. open": "1", "2. high": "1", "3. low": "1",
                                             "5. volume": "1"}}},
     "Time Series (Daily) 2024-06-18 lacks ['4. close']"),
    ({"Time Series (Daily)": {"2024-06-18": {"1. open": "1", "2. high": "n/a", "3. low": "1",
                                             "4. close": "1", "5. volume": "1"}}},
     "Time Series (Daily) 2024-06-18 '2. high' is not a number: 'n/a'"),
    ({"Time Series (Daily)": {"18/06/2024": {}}}, "has a key that is no date: '18/06/2024'"),
    ({"Meta Data": {"2. Symbol": "QQQ"}, "Time Series (Daily)": {}},
     "Meta Data names symbol 'QQQ', asked for 'SPY'"),
    ({}, "expected a JSON dict, got '{}'"),
])  # fmt: skip
def test_a_drifted_answer_fails_naming_what_drifted(body: dict[str, Any], text: str) -> None:
    transport, seen = scripted([httpx.Response(200, json=body)])
    with pytest.raises(VendorResponseError) as err:
        AlphaVantageClient(LIVE, "k-1234", transport=transport, now_ms=lambda: NOW_MS).daily("SPY")
    assert text in str(err.value) and len(seen) == 1  # a shape error is not retried


# --- errors inside HTTP 200 ------------------------------------------------------------


def test_call_frequency_note_is_retried_at_the_next_minute(clean: dict[str, pl.DataFrame]) -> None:
    note = [{"kind": "error200", "path": "/query", "count": 2}]
    # Two minute windows of waiting need more than the default max_wait_seconds=120.
    with served(note, max_wait_seconds=300) as (client, sandbox, clock):
        frame = fetch(client, "spy")
    assert frame.equals(clean["spy"])
    assert sandbox.count() == 3 == client.request_count
    # waits for the per-minute window to turn, not 0.5 s of backoff
    assert len(clock.sleeps) == 2 and all(s >= 30 for s in clock.sleeps)


def test_the_free_keys_minute_limit_is_waited_out(clean: dict[str, pl.DataFrame]) -> None:
    # A client spacing requests for a premium plan (100/min) meets the free key's 5/min.
    with served(requests_per_minute=100) as (client, sandbox, clock):
        frames = [fetch(client, "spy") for _ in range(7)]
    assert all(f.equals(clean["spy"]) for f in frames)
    assert sandbox.count() == 8 and len(clock.sleeps) == 1  # one Note, one wait, then on
    with served() as (client, sandbox, clock):  # the default spacing (5/min) meets none
        [fetch(client, "spy") for _ in range(7)]
    assert sandbox.count() == 7 and len(clock.sleeps) == 1


def test_burst_notice_is_a_throttle_not_the_daily_quota() -> None:
    """The burst notice names "25 requests per day" and "premium" too, yet asks only to
    slow down: retried, not taken for a spent quota or a plan refusal."""
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, json={"Information": BURST_TEXT}),
                                fixture_reply()])  # fmt: skip
    client = AlphaVantageClient(LIVE, "k-1234", transport=transport, sleep=clock.sleep,
                                clock=clock.time, now_ms=lambda: NOW_MS)  # fmt: skip
    assert client.daily("IBM").height == 74 and len(seen) == 2 and len(clock.sleeps) == 1


def test_daily_quota_is_not_retried_and_spends_the_days_budget() -> None:
    with served(limits={"alphavantage-day": 2}) as (client, sandbox, clock):
        fetch(client, "spy")
        fetch(client, "fx")
        with pytest.raises(AlphaVantageDailyLimit) as err:
            fetch(client, "spy")
        assert sandbox.count() == 3 and clock.sleeps == []  # asked once, no retry
        with pytest.raises(AlphaVantageBudgetSpent):  # nor asked again today
            fetch(client, "fx")
        assert sandbox.count() == 3 and client.daily_budget.remaining() == 0
    text = str(err.value)
    assert isinstance(err.value, VendorRateLimited) and type(err.value) is AlphaVantageDailyLimit
    assert "rate limit is 2 requests per day" in text
    assert "daily request quota of the plan behind ALPHAVANTAGE_API_KEY is spent" in text
    assert KEY not in text + repr(err.value.args) and "apikey=***" in text


def test_daily_notice_that_echoes_the_key_is_masked() -> None:
    secret = "LIVEKEY0123456789"
    echo = {"Information": f"We have detected your API key as {secret} and our standard API "
                           "rate limit is 25 requests per day."}  # fmt: skip
    transport, seen = scripted([httpx.Response(200, json=echo)])
    with pytest.raises(AlphaVantageDailyLimit) as err:
        AlphaVantageClient(LIVE, secret, transport=transport).daily("SPY")
    assert secret not in str(err.value) + repr(err.value.args) and len(seen) == 1
    assert "your API key as *** and" in str(err.value)


def test_premium_feature_is_refused_naming_the_parameter() -> None:
    with (
        served(outputsize="full") as (client, sandbox, _),
        pytest.raises(AlphaVantagePremiumRequired) as err,
    ):
        fetch(client, "spy")
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1
    assert "outputsize=full on TIME_SERIES_DAILY is a premium feature the plan behind " \
           "ALPHAVANTAGE_API_KEY does not include" in str(err.value)  # fmt: skip
    endpoint = {"kind": "error200", "code": "Information", "msg": PREMIUM_ENDPOINT_TEXT}
    with (
        served([endpoint]) as (client, sandbox, _),
        pytest.raises(AlphaVantagePremiumRequired) as e2,
    ):
        fetch(client, "spy")
    assert "function=TIME_SERIES_DAILY is a premium feature" in str(e2.value)
    assert sandbox.count() == 1


@pytest.mark.parametrize(("call", "named"), [
    (lambda c: c.daily("NOPE"), "symbol=NOPE with function=TIME_SERIES_DAILY"),
    (lambda c: c.fx_daily("EUR", "XXX"), "from_symbol=EUR, to_symbol=XXX with function=FX_DAILY"),
])  # fmt: skip
def test_error_message_is_refused_naming_the_symbol(call: Any, named: str) -> None:
    with served() as (client, sandbox, clock), pytest.raises(AlphaVantageSymbolError) as err:
        call(client)
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1 and clock.sleeps == []
    assert "HTTP 200: Error Message: Invalid API call." in str(err.value)
    assert f"does not serve {named}" in str(err.value)


def test_key_problems_are_config_errors_naming_the_setting() -> None:
    with served(key="demo") as (client, sandbox, _), pytest.raises(AlphaVantageDemoKey) as demo:
        fetch(client, "spy")
    assert isinstance(demo.value, VendorConfigError) and sandbox.count() == 1
    assert "ALPHAVANTAGE_API_KEY holds Alpha Vantage's public example key" in str(demo.value)
    with served(key="not-a-key") as (client, _, _), pytest.raises(AlphaVantageKeyInvalid) as bad:
        fetch(client, "fx")
    assert "apikey is invalid or missing" in str(bad.value) and "not-a-key" not in str(bad.value)
    with served(key=None) as (client, sandbox, _), pytest.raises(AlphaVantageKeyMissing) as none:
        fetch(client, "spy")
    assert sandbox.count() == 0 and "set ALPHAVANTAGE_API_KEY" in str(none.value)
    assert isinstance(none.value, VendorConfigError)


# --- the daily request budget ----------------------------------------------------------


def test_budget_stops_the_26th_request_without_sending_it() -> None:
    clock = FakeClock()
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=clock.time)
    client = in_process(sandbox, sleep=clock.sleep, clock=clock.time)
    for i in range(25):
        fetch(client, "spy" if i % 2 else "fx")
    with pytest.raises(AlphaVantageBudgetSpent) as err:
        fetch(client, "spy")
    assert sandbox.count() == 25 == client.request_count  # the 26th never reached the wire
    assert {r.status for r in sandbox.requests} == {200}
    assert "25 of 25 requests used on 1970-01-12 (UTC); nothing sent" in str(err.value)
    assert "ALPHAVANTAGE_API_KEY allows 25 requests a day" in str(err.value)
    assert KEY not in str(err.value)


def test_budget_file_is_shared_by_two_clients_and_renews_next_day(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state" / "alphavantage_budget.json"
    # No per-minute limit in the way: this test is about the day.
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=clock.time, limits={"alphavantage-minute": 99})

    def client() -> AlphaVantageClient:  # another process would build its own budget
        budget = DailyBudget(25, path=path, clock=clock.time)
        return in_process(sandbox, daily_budget=budget, sleep=clock.sleep, clock=clock.time)

    first, second = client(), client()
    for _ in range(20):
        fetch(first, "fx")
    for _ in range(5):
        fetch(second, "spy")
    with pytest.raises(AlphaVantageBudgetSpent):
        fetch(second, "spy")
    with pytest.raises(AlphaVantageBudgetSpent):
        fetch(first, "spy")
    assert sandbox.count() == 25
    assert json.loads(path.read_text()) == {"day": "1970-01-12", "used": 25, "limit": 25}
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]
    clock.now += 86_400  # the next UTC day: both budgets, and the vendor's quota, renew
    fetch(second, "spy")
    assert json.loads(path.read_text())["used"] == 1 and sandbox.count() == 26


def test_budget_counts_every_attempt_on_the_wire() -> None:
    with served([{"kind": "503", "path": "/query", "count": 2}]) as (client, sandbox, _):
        fetch(client, "spy")
    assert sandbox.count() == 3 and client.daily_budget.used_today() == 3


def test_budget_refuses_a_retry_it_cannot_afford() -> None:
    budget_clock = FakeClock()
    budget = DailyBudget(2, clock=budget_clock.time)
    with (
        served([{"kind": "500", "count": -1}], daily_budget=budget) as (client, sandbox, _),
        pytest.raises(AlphaVantageBudgetSpent),
    ):
        fetch(client, "spy")
    assert sandbox.count() == 2


def test_budget_file_holds_between_concurrent_processes(tmp_path: Path) -> None:
    """Three processes race for 25 requests, 15 attempts each: exactly 25 are granted
    (the file lock makes each read-and-count one step)."""
    path = tmp_path / "budget.json"
    script = (
        "import sys\n"
        "from btc_assets.vendors.daily_budget import DailyBudget, DailyBudgetSpent\n"
        "budget, granted = DailyBudget(25, path=sys.argv[1]), 0\n"
        "for _ in range(15):\n"
        "    try:\n"
        "        budget.acquire()\n"
        "        granted += 1\n"
        "    except DailyBudgetSpent:\n"
        "        pass\n"
        "print(granted)\n"
    )
    racers = [
        subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                         text=True)
        for _ in range(3)
    ]  # fmt: skip
    granted = [int(r.communicate(timeout=60)[0]) for r in racers]
    assert sum(granted) == 25 and json.loads(path.read_text())["used"] == 25


def test_unreadable_budget_file_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"budget\.json is unreadable"):
        DailyBudget(path=path).remaining()
    with pytest.raises(ValueError, match="limit=0"):
        DailyBudget(0)


# --- generic faults on /query over a real socket ---------------------------------------


def _id(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['kind']}-x{value.get('count', 1)}"
    return value if value in ("spy", "fx") else ""


RECOVERS = [
    {"kind": "429", "path": "/query", "count": 2, "retry_after": 1},
    {"kind": "500", "path": "/query", "count": 2},
    {"kind": "503", "path": "/query", "count": 1},
    {"kind": "timeout", "path": "/query", "count": 1, "delay": 0.6},
    {"kind": "reset", "path": "/query", "count": 1},
    {"kind": "truncated", "path": "/query", "count": 1},
    {"kind": "out_of_order", "path": "/query", "count": -1},
    {"kind": "duplicates", "path": "/query", "count": -1},
    {"kind": "extra_field", "path": "/query", "count": -1},
]


@pytest.mark.parametrize("fault", RECOVERS, ids=_id)
@pytest.mark.parametrize("what", ["spy", "fx"])
def test_fault_is_absorbed_to_the_clean_answer(
    clean: dict[str, pl.DataFrame], fault: dict[str, Any], what: str
) -> None:
    with served([fault]) as (client, sandbox, clock):
        frame = fetch(client, what)
    assert sandbox.faults.fired(fault["kind"]) >= 1 and frame.equals(clean[what])
    if fault["count"] > 0:  # the failed attempts were really retried, and counted
        assert sandbox.count() == client.request_count == 1 + fault["count"]
        assert client.daily_budget.used_today() == 1 + fault["count"]
    if "retry_after" in fault:
        assert clock.sleeps == [float(fault["retry_after"])] * fault["count"]


# (fault, error, text, requests sent): max_retries=3 (1 for the timeout), 2 for malformed
# bodies; a call-frequency Note waits for the next minute, and a third wait would pass
# max_wait_seconds=120.
FAILS = [
    ({"kind": "429", "count": -1, "retry_after": 1}, VendorRateLimited, "HTTP 429", 4),
    ({"kind": "503", "count": -1}, VendorUnavailable, "HTTP 503: Service Unavailable", 4),
    ({"kind": "timeout", "count": -1, "delay": 0.5}, VendorUnavailable, "no response: timeout",
     2),
    ({"kind": "truncated", "count": -1}, VendorResponseError, "malformed JSON", 3),
    ({"kind": "error200", "count": -1}, VendorRateLimited,
     "HTTP 200: Note: Thank you for using Alpha Vantage! Our standard API call frequency is 5",
     2),
    ({"kind": "404"}, VendorError, "HTTP 404: Not Found", 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "error", "text", "sent"), FAILS, ids=[f[0]["kind"] for f in FAILS]
)
def test_fault_that_persists_fails_clearly(
    fault: dict[str, Any], error: type[VendorError], text: str, sent: int
) -> None:
    retries = 1 if fault["kind"] == "timeout" else 3
    with (
        served([{**fault, "path": "/query"}], max_retries=retries) as (client, sandbox, _),
        pytest.raises(error) as err,
    ):
        fetch(client, "spy")
    message = str(err.value)
    assert type(err.value) is error and text in message and KEY not in message
    assert message.startswith("alphavantage GET /query {function=TIME_SERIES_DAILY, symbol=SPY,")
    assert sandbox.count() == sent == client.daily_budget.used_today()


def test_a_missing_session_stays_missing(clean: dict[str, pl.DataFrame]) -> None:
    gap = {"kind": "gap", "path": "/query", "day": "2024-06-12"}
    with served([gap]) as (client, _, _):
        frame = fetch(client, "spy")
    assert frame.equals(clean["spy"].filter(pl.col("date") != date(2024, 6, 12)))
    with served([{"kind": "empty", "path": "/query"}]) as (client, _, _):
        empty = fetch(client, "spy")
    assert empty.height == 0 and empty.schema == pl.Schema(ALPHAVANTAGE_DAILY_SCHEMA)


# --- the key stays secret --------------------------------------------------------------


def test_key_never_in_errors_or_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's request log, the sandbox's
    texts: list[str] = []
    faults = [{"kind": "429", "path": "/query", "retry_after": 1},
              {"kind": "error200", "path": "/query", "skip": 1}]  # fmt: skip
    with served(faults, limits={"alphavantage-day": 2}) as (client, _, _):
        fetch(client, "spy")  # through a 429 and a call-frequency Note
        for call in (lambda: client.daily("NOPE"), lambda: fetch(client, "fx"),
                     lambda: fetch(client, "fx")):  # fmt: skip
            with pytest.raises(VendorError) as err:
                call()
            texts += [str(err.value), repr(err.value), repr(err.value.args)]
    with served(key="wrong-key-5678") as (client, _, _), pytest.raises(VendorError) as err:
        fetch(client, "spy")
    texts += [str(err.value), repr(err.value.args)]
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged and "apikey=***" in logged  # it was logged, masked
    for secret in (KEY, "wrong-key-5678"):
        assert secret not in logged
        assert not [t for t in texts if secret in t]
