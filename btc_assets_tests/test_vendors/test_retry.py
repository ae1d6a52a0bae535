"""The one retry policy (vendors/retry.py) through the shared HTTP session: Retry-After in
every form a server may send it (junk included), the bound on a request's total time, the
rate-limit window wait, and knobs that are refused with their name."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import httpx
import pytest

from btc_assets.vendors.errors import VendorConfigError, VendorRateLimited, VendorUnavailable
from btc_assets.vendors.http import VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget
from btc_assets.vendors.retry import body_retry_after, parse_retry_after
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

OK = httpx.Response(200, json=[[1, "2"]])
KLINES = "/api/v3/klines"


def client(transport: httpx.BaseTransport, clock: FakeClock, **kw: Any) -> VendorHttpClient:
    return VendorHttpClient(
        "binance", "https://api.binance.com", transport=transport, sleep=clock.sleep,
        clock=clock.time, **kw,
    )  # fmt: skip


def limited(retry_after: str | None = None, status: int = 429) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, headers=headers, json={"code": -1003, "msg": "Too much weight"})


def http_date(epoch_seconds: float) -> str:
    return email.utils.formatdate(epoch_seconds, usegmt=True)


# --- Retry-After ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("3", 3.0), (" 7 ", 7.0), ("0.5", 0.5), ("0", 0.0), ("99999999999", 99999999999.0),
        (None, None), ("", None), ("nan", None), ("NaN", None), ("-5", None), ("abc", None),
        ("inf", None), ("-inf", None), ("1e400", None), ("Tue, 99 Foo 2024 99:99:99 GMT", None),
    ],
)  # fmt: skip
def test_retry_after_seconds_and_junk(raw: str | None, seconds: float | None) -> None:
    assert parse_retry_after(raw, now=1_000_000.0) == seconds


def test_retry_after_http_date_counts_from_the_clock() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(http_date(now + 42), now) == 42.0
    assert parse_retry_after(http_date(now - 42), now) == 0.0  # already past: go now
    naive = "Tue, 14 Nov 2023 22:14:02"  # no zone: an HTTP date is GMT
    assert parse_retry_after(naive, now) == pytest.approx(1_700_000_042.0 - now)


def test_body_retry_after_ignores_non_finite_numbers() -> None:
    for junk in (math.nan, math.inf, -3, True, "5"):
        assert body_retry_after({"parameters": {"retry_after": junk}}, None) is None
    assert body_retry_after({"parameters": {"retry_after": 35}}, None) == 35.0
    assert body_retry_after({}, "Too Many Requests: retry after 12") == 12.0


@pytest.mark.parametrize("junk", ["nan", "-5", "abc", "inf", "", "Tue, 99 Foo"])
def test_junk_retry_after_falls_back_to_backoff(junk: str) -> None:
    clock = FakeClock()
    transport, seen = scripted([limited(junk), OK])
    http = client(transport, clock, backoff_base=0.5)
    assert http.get_json(KLINES) == [[1, "2"]]
    assert len(seen) == 2
    assert len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5  # the backoff, not junk


def test_junk_retry_after_in_a_telegram_body_is_ignored() -> None:
    clock = FakeClock()
    body = b'{"ok":false,"error_code":429,"description":"Flood","parameters":{"retry_after":NaN}}'
    transport, _ = scripted([httpx.Response(429, content=body), OK])
    assert client(transport, clock, backoff_base=0.5).get_json("/p") == [[1, "2"]]
    assert len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5


def test_huge_retry_after_fails_at_once_naming_the_wait() -> None:
    clock = FakeClock()
    transport, seen = scripted([limited("99999999999", status=418)])
    with pytest.raises(VendorRateLimited) as err:
        client(transport, clock).get_json(KLINES, {"symbol": "BTCUSDT"})
    text = str(err.value)
    assert text.startswith(f"binance GET {KLINES} {{symbol=BTCUSDT}} -> HTTP 418 code -1003")
    assert "asks to wait 99999999999 s" in text and "max_wait_seconds=120" in text
    assert clock.sleeps == [] and len(seen) == 1


def test_http_date_retry_after_is_waited_exactly() -> None:
    clock = FakeClock(start=1_700_000_000.0)
    transport, _ = scripted([limited(http_date(clock.now + 42)), OK])
    assert client(transport, clock).get_json(KLINES) == [[1, "2"]]
    assert clock.sleeps == [42.0]


# --- the bound on a request's total time -----------------------------------------------


def test_retry_afters_that_add_up_past_the_bound_fail_before_sleeping_past_it() -> None:
    clock = FakeClock()
    transport, seen = scripted([limited("50")])
    http = client(transport, clock, max_retries=10, max_wait_seconds=120)
    with pytest.raises(VendorRateLimited) as err:
        http.get_json(KLINES, {"symbol": "BTCUSDT"})
    assert clock.sleeps == [50.0, 50.0] and len(seen) == 3  # a third 50 s would pass 120
    text = str(err.value)
    assert text.startswith(f"binance GET {KLINES} {{symbol=BTCUSDT}} -> HTTP 429")
    assert "gave up after 3 attempts in 100.0 s: waiting 50.0 s more would pass" in text
    assert "max_wait_seconds=120" in text


def test_backoff_stops_at_the_bound_not_at_the_retry_count() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(503, text="busy")])
    http = client(transport, clock, max_retries=50, backoff_base=8, backoff_cap=64,
                  max_wait_seconds=60)  # fmt: skip
    with pytest.raises(VendorUnavailable) as err:
        http.get_json(KLINES)
    assert 0 < sum(clock.sleeps) <= 60 and len(seen) < 6
    assert "HTTP 503" in str(err.value) and "max_wait_seconds=60" in str(err.value)


def test_time_on_the_wire_counts_toward_the_bound() -> None:
    """Timeouts cost real time even when no one sleeps: the bound is on the whole request."""
    seen: list[httpx.Request] = []

    def slow_timeout(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        time.sleep(0.1)
        raise httpx.ReadTimeout("timed out", request=request)

    clock = FakeClock()
    http = client(httpx.MockTransport(slow_timeout), clock, max_retries=100, backoff_base=0,
                  max_wait_seconds=0.35)  # fmt: skip
    with pytest.raises(VendorUnavailable) as err:
        http.get_json(KLINES)
    assert 3 <= len(seen) <= 5 and sum(clock.sleeps) == 0
    assert "timeout" in str(err.value) and "max_wait_seconds=0.35" in str(err.value)


def test_every_request_gets_its_own_budget() -> None:
    clock = FakeClock()
    transport, seen = scripted([limited("50"), limited("50"), OK, limited("50"), limited("50"), OK])
    http = client(transport, clock, max_wait_seconds=120)
    assert http.get_json(KLINES) == http.get_json(KLINES) == [[1, "2"]]
    assert clock.sleeps == [50.0] * 4 and len(seen) == 6


def test_rate_limit_without_a_wait_waits_for_the_limiters_next_window() -> None:
    clock = FakeClock(start=1_000_050.0)  # 30 s before a minute ends
    budget = WeightBudget(100, 60, clock=clock.time, sleep=clock.sleep)
    transport, _ = scripted([limited(), OK])
    http = client(transport, clock, limiter=budget, wait_window_on_rate_limit=True)
    assert http.get_json(KLINES) == [[1, "2"]]
    assert clock.sleeps == [pytest.approx(30.05)]  # not a 0.5 s backoff into the same window
    transport, _ = scripted([limited(), OK])
    plain = client(transport, clock, limiter=budget, backoff_base=0.5)
    plain.get_json(KLINES)
    assert 0.25 <= clock.sleeps[-1] <= 0.5  # without the option: the ordinary backoff


@pytest.mark.parametrize(
    ("knob", "value"),
    [("max_retries", -1), ("max_wait_seconds", math.nan), ("backoff_base", -0.5),
     ("malformed_retries", 1.5), ("backoff_cap", math.inf)],
)  # fmt: skip
def test_bad_knobs_are_refused_by_name(knob: str, value: float) -> None:
    with pytest.raises(VendorConfigError) as err:
        VendorHttpClient("binance", "https://api.binance.com", **{knob: value})
    assert f"{knob}={value!r}" in str(err.value) and "binance" in str(err.value)
