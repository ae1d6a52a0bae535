"""The shared vendor HTTP session: retries, Retry-After, rate budget, redaction, errors."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest

from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorResponseError,
    VendorUnavailable,
    redact,
)
from btc_assets.vendors.http import VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

NOW_MS = 1_704_456_030_000  # 2024-01-05 12:00:30 UTC


def client(transport: httpx.BaseTransport, clock: FakeClock, **kw: object) -> VendorHttpClient:
    return VendorHttpClient(
        "binance", "https://api.binance.com", transport=transport, sleep=clock.sleep, **kw
    )


OK = httpx.Response(200, json=[[1, "2"]])
BAD_SYMBOL = httpx.Response(400, json={"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize("url", ["", "   ", "ftp://example.com", "api.binance.com"])
def test_base_url_must_be_http_and_names_the_setting(url: str) -> None:
    with pytest.raises(VendorConfigError) as err:
        VendorHttpClient("binance", url, base_url_setting="BINANCE_SPOT_BASE_URL")
    assert "binance" in str(err.value)
    assert "BINANCE_SPOT_BASE_URL" in str(err.value)


def test_client_error_is_final_and_reads_well() -> None:
    clock = FakeClock()
    transport, seen = scripted([BAD_SYMBOL])
    with pytest.raises(VendorError) as err:
        client(transport, clock).get_json(
            "/api/v3/klines", {"symbol": "FOO", "interval": "1m"}, expect=list
        )
    assert str(err.value) == (
        "binance GET /api/v3/klines {symbol=FOO, interval=1m} -> HTTP 400 code -1121: "
        "Invalid symbol."
    )
    assert (err.value.status, err.value.code, err.value.message) == (400, -1121, "Invalid symbol.")
    assert len(seen) == 1 and clock.sleeps == []


def test_429_waits_exactly_retry_after_then_succeeds() -> None:
    clock = FakeClock()
    limited = httpx.Response(429, headers={"Retry-After": "3"}, json={"code": -1003, "msg": "x"})
    transport, seen = scripted([limited, limited, OK])
    assert client(transport, clock).get_json("/p") == [[1, "2"]]
    assert clock.sleeps == [3.0, 3.0]
    assert len(seen) == 3


def test_ban_longer_than_max_wait_fails_at_once() -> None:
    clock = FakeClock()
    banned = httpx.Response(
        418, headers={"Retry-After": "7200"}, json={"code": -1003, "msg": "IP banned until x."}
    )
    transport, seen = scripted([banned])
    with pytest.raises(VendorRateLimited) as err:
        client(transport, clock, max_wait_seconds=120).get_json("/api/v3/klines", {"symbol": "X"})
    text = str(err.value)
    assert text.startswith("binance GET /api/v3/klines {symbol=X} -> HTTP 418 code -1003")
    assert "asks to wait 7200 s" in text and "max_wait_seconds=120" in text
    assert clock.sleeps == [] and len(seen) == 1


def test_5xx_backoff_grows_with_jitter_and_gives_up() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(503, text="<html>busy</html>")])
    http = client(transport, clock, max_retries=4, backoff_base=1.0, backoff_cap=5.0)
    with pytest.raises(VendorUnavailable) as err:
        http.get_json("/fapi/v1/klines", {"symbol": "BTCUSDT"})
    assert len(seen) == 5
    ceilings = [1.0, 2.0, 4.0, 5.0]  # base * 2**n, capped
    assert len(clock.sleeps) == 4
    for slept, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    assert "HTTP 503" in str(err.value) and "gave up after 5 attempts" in str(err.value)
    assert "/fapi/v1/klines" in str(err.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_network_errors_are_retried(exc: Exception) -> None:
    clock = FakeClock()
    transport, seen = scripted([exc, exc, OK])
    assert client(transport, clock).get_json("/p") == [[1, "2"]]
    assert len(seen) == 3 and len(clock.sleeps) == 2


def test_network_errors_exhausted_say_so() -> None:
    clock = FakeClock()
    transport, _ = scripted([httpx.ReadTimeout("timed out")])
    with pytest.raises(VendorUnavailable) as err:
        client(transport, clock, max_retries=2).get_json("/api/v3/klines", {"symbol": "BTCUSDT"})
    text = str(err.value)
    assert text.startswith("binance GET /api/v3/klines {symbol=BTCUSDT} -> no response")
    assert "timeout" in text and "gave up after 3 attempts" in text


def test_truncated_json_retried_then_recovers() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, text='[[1,"2"],[3,'), OK])
    assert client(transport, clock).get_json("/p") == [[1, "2"]]
    assert len(seen) == 2


def test_truncated_json_every_time_is_a_response_error() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, text='[[1,"2"],[3,')])
    with pytest.raises(VendorResponseError) as err:
        client(transport, clock, malformed_retries=2).get_json("/api/v3/klines")
    assert len(seen) == 3
    assert "/api/v3/klines" in str(err.value) and "malformed JSON" in str(err.value)


UNKNOWN_ERROR = {"code": -1000, "msg": "An unknown error occurred while processing the request."}
TRANSIENT = {-1000: VendorUnavailable, "-1003": VendorRateLimited}


def test_definite_error_body_in_http_200_is_not_retried() -> None:
    clock = FakeClock()
    body = {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
    transport, seen = scripted([httpx.Response(200, json=body)])
    with pytest.raises(VendorError) as err:
        client(transport, clock, transient_codes=TRANSIENT).get_json("/api/v3/klines", expect=list)
    assert type(err.value) is VendorError
    assert "HTTP 200 code -1130: Data sent for parameter 'limit'" in str(err.value)
    assert len(seen) == 1 and clock.sleeps == []


def test_transient_code_in_http_200_is_retried_then_succeeds() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, json=UNKNOWN_ERROR)] * 2 + [OK])
    http = client(transport, clock, transient_codes=TRANSIENT)
    assert http.get_json("/api/v3/klines", expect=list) == [[1, "2"]]
    assert len(seen) == 3 and len(clock.sleeps) == 2


def test_transient_code_in_http_200_that_persists_is_unavailable() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, json=UNKNOWN_ERROR)])
    http = client(transport, clock, transient_codes=TRANSIENT, max_retries=2)
    with pytest.raises(VendorUnavailable) as err:
        http.get_json("/api/v3/klines", {"symbol": "BTCUSDT"}, expect=list)
    assert str(err.value).startswith(
        "binance GET /api/v3/klines {symbol=BTCUSDT} -> HTTP 200 code -1000: An unknown error"
    )
    assert "gave up after 3 attempts" in str(err.value) and len(seen) == 3


def test_transient_rate_limit_code_in_a_400_is_rate_limited() -> None:
    clock = FakeClock()
    body = {"code": -1003, "msg": "Too much request weight used."}
    transport, seen = scripted([httpx.Response(400, json=body)])
    with pytest.raises(VendorRateLimited, match="HTTP 400 code -1003"):
        client(transport, clock, transient_codes=TRANSIENT, max_retries=1).get_json("/p")
    assert len(seen) == 2


def test_without_transient_codes_a_code_in_http_200_is_final() -> None:
    clock = FakeClock()
    transport, seen = scripted([httpx.Response(200, json=UNKNOWN_ERROR)])
    with pytest.raises(VendorError) as err:
        client(transport, clock).get_json("/api/v3/klines", expect=list)
    assert type(err.value) is VendorError and len(seen) == 1


def test_wrong_shape_without_error_message_is_a_response_error() -> None:
    clock = FakeClock()
    transport, _ = scripted([httpx.Response(200, json={"unexpected": True})])
    with pytest.raises(VendorResponseError, match="expected a JSON list"):
        client(transport, clock).get_json("/p", expect=list)


def test_error_survives_pickling() -> None:
    err = VendorRateLimited("binance", "/p", {"a": "1"}, status=429, code=-1003, message="m")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is VendorRateLimited and str(copy) == str(err)


# --- redaction -------------------------------------------------------------------------


def test_redact_masks_params_headers_telegram_and_known_secrets() -> None:
    text = (
        "GET /q?apikey=AV123&api_key=fred456&symbol=BTC X-MBX-APIKEY: mbxkey "
        "CG-API-KEY=cgkey Authorization: Bearer tok.en https://api.telegram.org/"
        "bot123456:ABC-def_ghi/sendMessage literal s3cr3tvalue"
    )
    out = redact(text, secrets=["s3cr3tvalue"])
    for secret in ("AV123", "fred456", "mbxkey", "cgkey", "tok.en", "ABC-def_ghi", "s3cr3tvalue"):
        assert secret not in out
    assert "symbol=BTC" in out and "/bot***/sendMessage" in out


def test_secrets_never_reach_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    key, token, param_key = "HDRSECRET-abc123", "123456:TOKENsecret_x", "PARAMSECRET99"
    echo = {"code": -2015, "msg": f"Invalid API-key {key}, token {token}, apikey={param_key}."}
    transport, seen = scripted([httpx.Response(500, text="oops"), httpx.Response(401, json=echo)])
    http = VendorHttpClient(
        "coinglass", "https://open-api-v4.coinglass.com", transport=transport,
        sleep=clock.sleep, headers={"CG-API-KEY": key}, secret_params=["apikey"],
    )  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="btc_assets.vendors")
    with pytest.raises(VendorError) as err:
        http.get_json(f"/bot{token}/sendMessage", {"apikey": param_key, "chat_id": "1"})
    assert seen[0].headers["CG-API-KEY"] == key  # really sent...
    everything = str(err.value) + repr(err.value.args) + caplog.text
    for secret in (key, token, param_key, "TOKENsecret_x"):
        assert secret not in everything  # ...never shown
    assert "apikey=***" in str(err.value) and "chat_id=1" in str(err.value)
    assert "retry" in caplog.text  # the 500 was logged, redacted


# --- rate budget -----------------------------------------------------------------------


def test_budget_sleeps_to_next_window_before_overspending() -> None:
    clock = FakeClock(start=120.0)
    budget = WeightBudget(10, 60, safety=1.0, clock=clock.time, sleep=clock.sleep)
    for _ in range(5):
        assert budget.acquire(2) == 0.0
    waited = budget.acquire(2)
    assert waited == pytest.approx(60.05)  # to 180 s, the next window, plus a hair
    assert budget.used == 2


def test_budget_follows_the_server_counter_header_case_insensitively() -> None:
    clock = FakeClock(start=120.0)
    budget = WeightBudget(
        100, 60, header="X-MBX-USED-WEIGHT-1M", safety=0.5, clock=clock.time, sleep=clock.sleep
    )
    budget.observe(httpx.Headers({"x-mbx-used-weight-1m": "49"}))  # someone else used it
    assert budget.used == 49
    budget.acquire(2)
    assert clock.sleeps and budget.used == 2


def test_budget_without_header_is_a_requests_per_window_limiter() -> None:
    clock = FakeClock(start=0.0)
    budget = WeightBudget(3, 1.0, safety=1.0, clock=clock.time, sleep=clock.sleep)
    for _ in range(9):
        budget.acquire()
        clock.now += 0.01
    assert len(clock.sleeps) == 2  # 3 per second, 9 requests → two waits


def _sandbox_client(
    clock: FakeClock, budget: int, limits: dict[str, int]
) -> tuple[VendorHttpClient, SandboxTransport]:
    sandbox = SandboxTransport(now_ms=NOW_MS, clock=clock.time, limits=limits)
    limiter = WeightBudget(
        budget, 60, header="X-MBX-USED-WEIGHT-1M", safety=1.0, clock=clock.time, sleep=clock.sleep
    )
    http = VendorHttpClient(
        "binance", "http://sandbox", transport=sandbox, limiter=limiter, sleep=clock.sleep
    )
    return http, sandbox


def _many_requests(http: VendorHttpClient, n: int) -> None:
    for i in range(n):
        params = {"symbol": "BTCUSDT", "interval": "1m", "limit": 5, "endTime": NOW_MS - i}
        http.get_json("/api/v3/klines", params, weight=2, expect=list)


@pytest.mark.parametrize("budget", [20, 15])
def test_limiter_sleeps_instead_of_hitting_429(budget: int) -> None:
    clock = FakeClock()
    http, sandbox = _sandbox_client(clock, budget, {"binance-spot": 20})
    _many_requests(http, 25)
    statuses = [r.status for r in sandbox.requests]
    assert statuses == [200] * 25  # never refused...
    assert len(clock.sleeps) >= 2  # ...because the client waited for new windows


def test_without_budget_the_server_refuses_and_retry_after_recovers() -> None:
    clock = FakeClock()
    http, sandbox = _sandbox_client(clock, 10**9, {"binance-spot": 20})
    _many_requests(http, 25)
    statuses = [r.status for r in sandbox.requests]
    assert 429 in statuses and statuses.count(200) == 25
