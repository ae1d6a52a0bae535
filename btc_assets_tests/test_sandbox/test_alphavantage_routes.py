"""The sandbox's Alpha Vantage route: the real shapes (Meta Data, newest first, strings), the
calendars and the close cut-off, keys, quotas and plans with the vendor's exact texts, the
synthetic series' character, and faults in Alpha Vantage's shape."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from btc_assets.sandbox.credentials import (
    SANDBOX_ALPHAVANTAGE_KEY,
    SANDBOX_ALPHAVANTAGE_PREMIUM_KEY,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.us_calendar import is_nyse_session
from btc_assets_tests.test_vendors.helpers import FakeClock

KEY, PREMIUM = SANDBOX_ALPHAVANTAGE_KEY, SANDBOX_ALPHAVANTAGE_PREMIUM_KEY
SPY = {"function": "TIME_SERIES_DAILY", "symbol": "SPY"}
EURUSD = {"function": "FX_DAILY", "from_symbol": "EUR", "to_symbol": "USD"}
DAILY, FX = "Time Series (Daily)", "Time Series FX (Daily)"
# The texts of vendor-apis.md §6, verbatim.
QUOTA = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
    "to instantly remove all daily rate limits."
)
FULL = (
    "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium "
    "feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium "
    "plans at https://www.alphavantage.co/premium/ to instantly unlock all premium features"
)
ENDPOINT = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to "
    "any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
    "unlock all premium endpoints"
)
INVALID = (
    "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for {}."
)
BAD_KEY = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


NOW = datetime(2024, 6, 18, 22, 0, tzinfo=UTC)  # a Tuesday, after the close


def get(sandbox: SandboxTransport, key: str | None = KEY, **params: str) -> httpx.Response:
    query = {**params, **({"apikey": key} if key is not None else {})}
    with httpx.Client(transport=sandbox, base_url="http://any.host") as client:
        return client.get("/query", params=query)


def body(sandbox: SandboxTransport, key: str | None = KEY, **params: str) -> dict[str, Any]:
    response = get(sandbox, key, **params)
    assert response.status_code == 200  # errors too: Alpha Vantage answers them all with 200
    return response.json()


def dates(answer: dict[str, Any], series: str = DAILY) -> list[date]:
    return [date.fromisoformat(d) for d in answer[series]]


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=ms(NOW))


# --- the shapes ------------------------------------------------------------------------


def test_daily_shape_is_the_real_one(sandbox: SandboxTransport) -> None:
    response = get(sandbox, **SPY)
    assert response.text.startswith('{\n    "Meta Data": {\n        "1. Information"')  # indent 4
    answer = response.json()
    assert list(answer) == ["Meta Data", DAILY]
    assert answer["Meta Data"] == {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "SPY", "3. Last Refreshed": "2024-06-18", "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern",
    }  # fmt: skip
    days = dates(answer)
    assert len(days) == 100 and days == sorted(days, reverse=True)  # newest first
    row = answer[DAILY]["2024-06-18"]
    assert list(row) == ["1. open", "2. high", "3. low", "4. close", "5. volume"]
    prices = [row[k] for k in list(row)[:4]]
    assert all(isinstance(v, str) and len(v.split(".")[1]) == 4 for v in prices)
    assert row["5. volume"].isdigit()
    assert float(row["2. high"]) >= max(float(row["1. open"]), float(row["4. close"]))
    assert float(row["3. low"]) <= min(float(row["1. open"]), float(row["4. close"]))


def test_fx_shape_is_the_real_one(sandbox: SandboxTransport) -> None:
    answer = body(sandbox, **EURUSD)
    assert list(answer) == ["Meta Data", FX]
    assert answer["Meta Data"] == {
        "1. Information": "Forex Daily Prices (open, high, low, close)", "2. From Symbol": "EUR",
        "3. To Symbol": "USD", "4. Output Size": "Compact", "5. Last Refreshed": "2024-06-17",
        "6. Time Zone": "UTC",
    }  # fmt: skip
    row = answer[FX]["2024-06-17"]
    assert list(row) == ["1. open", "2. high", "3. low", "4. close"]  # no volume on FX
    assert all(len(v.split(".")[1]) == 5 for v in row.values())  # as a 2026 capture prints
    assert 0.9 < float(row["4. close"]) < 1.3


# --- calendars and the close -----------------------------------------------------------


@pytest.mark.parametrize(("now", "spy", "fx"), [
    (datetime(2024, 6, 18, 20, 59, 59, tzinfo=UTC), "2024-06-17", "2024-06-17"),
    (datetime(2024, 6, 18, 21, 0, tzinfo=UTC), "2024-06-18", "2024-06-17"),
    (datetime(2024, 6, 19, 0, 0, tzinfo=UTC), "2024-06-18", "2024-06-18"),
    (datetime(2024, 6, 20, 12, 0, tzinfo=UTC), "2024-06-18", "2024-06-19"),  # Juneteenth: NYSE shut
    (datetime(2024, 6, 23, 12, 0, tzinfo=UTC), "2024-06-21", "2024-06-21"),  # a Sunday
])  # fmt: skip
def test_nothing_before_its_close_nor_after_today(now: datetime, spy: str, fx: str) -> None:
    sandbox = SandboxTransport(now_ms=ms(now))
    daily, pair = body(sandbox, **SPY), body(sandbox, **EURUSD)
    assert next(iter(daily[DAILY])) == daily["Meta Data"]["3. Last Refreshed"] == spy
    assert next(iter(pair[FX])) == pair["Meta Data"]["5. Last Refreshed"] == fx


def test_full_history_holds_exactly_the_nyse_sessions_and_weekdays() -> None:
    sandbox = SandboxTransport(now_ms=ms(NOW))
    spy = sorted(dates(body(sandbox, PREMIUM, **SPY, outputsize="full")))
    span = [spy[0] + timedelta(d) for d in range((spy[-1] - spy[0]).days + 1)]
    assert spy[0] == date(2017, 1, 3)  # the sandbox market's first session
    assert spy == [d for d in span if is_nyse_session(d)]
    fx = sorted(dates(body(sandbox, KEY, **EURUSD, outputsize="full"), FX))  # free on FX
    span = [fx[0] + timedelta(d) for d in range((fx[-1] - fx[0]).days + 1)]
    assert fx == [d for d in span if d.weekday() < 5] and date(2024, 3, 29) in fx  # Good Friday


# --- keys, quotas, plans ---------------------------------------------------------------


def test_free_key_gets_25_a_day_then_the_exact_quota_text() -> None:
    clock = FakeClock()
    sandbox = SandboxTransport(now_ms=ms(NOW), clock=clock.time, limits={"alphavantage-minute": 99})
    assert all(DAILY in body(sandbox, **SPY) for _ in range(25))
    assert body(sandbox, **SPY) == {"Information": QUOTA}
    assert DAILY in body(sandbox, PREMIUM, **SPY)  # the premium key has no daily quota
    clock.now += 86_400  # the next UTC day
    assert DAILY in body(sandbox, **SPY)


def test_per_minute_limit_answers_the_call_frequency_note() -> None:
    clock = FakeClock()
    sandbox = SandboxTransport(now_ms=ms(NOW), clock=clock.time)
    assert all(FX in body(sandbox, **EURUSD) for _ in range(5))
    note = body(sandbox, **EURUSD)
    assert list(note) == ["Note"] and "API call frequency is 5 calls per minute" in note["Note"]
    assert sandbox.state.used("alphavantage-day", 86_400) == 5  # a refused call is not counted
    clock.now += 60
    assert FX in body(sandbox, **EURUSD)


def test_full_output_is_premium_on_daily_only(sandbox: SandboxTransport) -> None:
    assert body(sandbox, **SPY, outputsize="full") == {"Information": FULL}
    assert len(body(sandbox, PREMIUM, **SPY, outputsize="full")[DAILY]) > 1800
    assert len(body(sandbox, **EURUSD, outputsize="full")[FX]) > 1900


@pytest.mark.parametrize(("key", "answer"), [
    (None, {"Error Message": BAD_KEY}),
    ("", {"Error Message": BAD_KEY}),
    ("not-a-sandbox-key", {"Error Message": BAD_KEY}),
])  # fmt: skip
def test_missing_or_wrong_key(sandbox: SandboxTransport, key: str | None, answer: Any) -> None:
    assert body(sandbox, key, **SPY) == answer


def test_demo_key(sandbox: SandboxTransport) -> None:
    answer = body(sandbox, "demo", **SPY)
    assert list(answer) == ["Information"]
    assert answer["Information"].startswith("The **demo** API key is for demo purposes only.")


@pytest.mark.parametrize(("params", "answer"), [
    ({"function": "TIME_SERIES_DAILY", "symbol": "NOPE"},
     {"Error Message": INVALID.format("TIME_SERIES_DAILY")}),
    ({"function": "TIME_SERIES_DAILY"}, {"Error Message": INVALID.format("TIME_SERIES_DAILY")}),
    ({"function": "TIME_SERIES_DAILY", "symbol": "^GSPC"},
     {"Error Message": INVALID.format("TIME_SERIES_DAILY")}),  # no index: SPY is the proxy
    ({"function": "FX_DAILY", "from_symbol": "EUR", "to_symbol": "XXX"},
     {"Error Message": INVALID.format("FX_DAILY")}),
    ({"function": "FX_DAILY", "from_symbol": "EUR"}, {"Error Message": INVALID.format("FX_DAILY")}),
    ({"function": "NO_SUCH_THING"},
     {"Error Message": "This API function (NO_SUCH_THING) does not exist."}),
    ({}, {"Error Message": "This API function () does not exist."}),
    ({"function": "TIME_SERIES_INTRADAY", "symbol": "SPY", "interval": "5min"},
     {"Information": ENDPOINT}),
    ({"function": "TIME_SERIES_DAILY_ADJUSTED", "symbol": "SPY"}, {"Information": ENDPOINT}),
])  # fmt: skip
def test_bad_calls_answer_the_vendors_error(
    sandbox: SandboxTransport, params: dict[str, str], answer: dict[str, str]
) -> None:
    assert body(sandbox, **params) == answer


# --- the series ------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_prices() -> None:
    one, two = SandboxTransport(seed=7, now_ms=ms(NOW)), SandboxTransport(seed=7, now_ms=ms(NOW))
    other = SandboxTransport(seed=8, now_ms=ms(NOW))
    assert get(one, **SPY).content == get(two, **SPY).content
    assert get(one, **EURUSD).content == get(two, **EURUSD).content
    assert get(one, **SPY).content != get(other, **SPY).content


def test_spy_is_near_500_fat_tailed_and_goes_with_btc() -> None:
    sandbox = SandboxTransport(now_ms=ms(NOW))
    series = body(sandbox, PREMIUM, **SPY, outputsize="full")[DAILY]
    year = sorted(d for d in series if d >= "2023-06-01")
    close = np.array([float(series[d]["4. close"]) for d in year])
    assert 350 < close.mean() < 650
    returns = np.diff(np.log(close))
    assert 0.006 < returns.std() < 0.02
    excess_kurtosis = ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2 - 3
    assert excess_kurtosis > 0.5  # fatter tails than a normal day
    start = ms(datetime.fromisoformat(year[0]).replace(tzinfo=UTC))
    with httpx.Client(transport=sandbox, base_url="http://binance") as http:
        query = {"symbol": "BTCUSDT", "interval": "1d", "startTime": start, "limit": 400}
        klines = http.get("/api/v3/klines", params=query).json()
    btc = {datetime.fromtimestamp(k[0] / 1000, UTC).date().isoformat(): float(k[4]) for k in klines}
    btc_returns = np.diff(np.log([btc[d] for d in year]))  # close to close, same sessions
    assert np.corrcoef(returns, btc_returns)[0, 1] > 0.1


# --- faults in Alpha Vantage's shape ---------------------------------------------------


def faulty(*faults: dict[str, Any]) -> SandboxTransport:
    return SandboxTransport(now_ms=ms(NOW), faults=json.dumps(list(faults)))


def test_error200_fault_sends_the_chosen_message_key() -> None:
    sandbox = faulty({"kind": "error200"}, {"kind": "error200", "code": "Information",
                                            "msg": "Thank you", "skip": 1})  # fmt: skip
    note = body(sandbox, **SPY)
    assert list(note) == ["Note"] and "call frequency" in note["Note"]
    assert body(sandbox, **SPY) == {"Information": "Thank you"}
    assert DAILY in body(sandbox, **SPY)


def test_a_fault_can_target_one_symbol() -> None:
    sandbox = faulty({"kind": "error200", "symbol": "SPY", "count": -1})
    assert "Note" in body(sandbox, **SPY)
    assert FX in body(sandbox, **EURUSD)


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503)])
def test_http_faults_answer_the_front_ends_page(kind: str, status: int) -> None:
    response = get(faulty({"kind": kind, "retry_after": 3} if kind == "429" else {"kind": kind}),
                   **SPY)  # fmt: skip
    assert response.status_code == status and response.headers["content-type"] == "text/html"
    assert response.headers.get("retry-after") == ("3" if kind == "429" else None)


def test_data_faults_change_the_series() -> None:
    clean = body(SandboxTransport(now_ms=ms(NOW)), **SPY)[DAILY]
    gap = body(faulty({"kind": "gap", "day": "2024-06-12"}), **SPY)[DAILY]
    assert "2024-06-12" not in gap and len(gap) == 99
    bad = body(faulty({"kind": "bad_ohlc", "day": "2024-06-12"}), **SPY)[DAILY]["2024-06-12"]
    assert (bad["2. high"], bad["3. low"]) == (clean["2024-06-12"]["3. low"],
                                               clean["2024-06-12"]["2. high"])  # fmt: skip
    assert body(faulty({"kind": "empty"}), **SPY)[DAILY] == {}
    shuffled = body(faulty({"kind": "out_of_order"}), **SPY)[DAILY]
    assert shuffled == clean and list(shuffled) != list(clean)
    extra = body(faulty({"kind": "extra_field"}), **SPY)[DAILY]
    assert all(row["6. extra"] == "0.0000" for row in extra.values())
    text = get(faulty({"kind": "duplicates"}), **SPY).text
    assert text.count('"2024-06-18": {') == 2  # a key twice, which only raw text can show


def test_the_loopback_server_answers_the_same_bytes() -> None:
    sandbox = SandboxTransport(now_ms=ms(NOW))
    with serve_sandbox(transport=sandbox) as url, httpx.Client(base_url=url) as client:
        over_socket = client.get("/query", params={**SPY, "apikey": KEY})
    assert over_socket.status_code == 200
    assert over_socket.content == get(SandboxTransport(now_ms=ms(NOW)), **SPY).content
    assert sandbox.count("/query") == 1
