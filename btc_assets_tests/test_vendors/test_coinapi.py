"""CoinApiClient against the sandbox: the close-time label and right-closed windows, paging at
the minimum request count, exact ISO parsing, cleaning, every refusal class (in-process and
over a real loopback socket), the credit quota, and agreement with the Binance sandbox."""

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

from btc_assets.core.schema import COINAPI_METRIC_SCHEMA, COINAPI_OHLCV_SCHEMA
from btc_assets.sandbox.credentials import SANDBOX_COINAPI_KEY, SANDBOX_COINAPI_OHLCV_ONLY_KEY
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.coinapi import (
    FUNDING_METRIC,
    METRICS_HISTORY,
    PERP_BTC,
    SPOT_BTC,
    CoinApiClient,
    CoinApiEndpointMissing,
    CoinApiForbidden,
    CoinApiKeyInvalid,
    CoinApiKeyMissing,
    CoinApiNotServed,
    CoinApiQuotaExceeded,
    NoDataWindow,
)
from btc_assets.vendors.coinapi_parse import iso_from_ms, iso_ticks
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

START = datetime(2024, 1, 2, tzinfo=UTC)
END = START + timedelta(days=1)
NOW_MS = int(datetime(2024, 6, 1, 12, 7, 30, tzinfo=UTC).timestamp() * 1000)
KEY = SANDBOX_COINAPI_KEY
SPOT_PATH = f"/v1/ohlcv/{SPOT_BTC}/history"
PERP_PATH = f"/v1/ohlcv/{PERP_BTC}/history"
HOUR = timedelta(hours=1)


def in_process(sandbox: SandboxTransport | None = None, **kw: Any) -> CoinApiClient:
    key = kw.pop("api_key", KEY)
    transport = sandbox or SandboxTransport(now_ms=NOW_MS)
    return CoinApiClient("http://sandbox.coinapi.invalid", key, transport=transport,
                         now_ms=lambda: NOW_MS, **kw)  # fmt: skip


@contextmanager
def served(
    faults: list[dict[str, Any]] | None = None, key: str | None = KEY,
    clock: FakeClock | None = None, limits: dict[str, int] | None = None, **client_kw: Any,
) -> Iterator[tuple[CoinApiClient, SandboxTransport, list[float]]]:  # fmt: skip
    """The sandbox on a loopback socket, the client and the sandbox's quota on one fake
    clock (waits cost nothing and are exact)."""
    clock = clock or FakeClock()
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults or []), clock=clock.time,
                               limits=limits)  # fmt: skip
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {"max_retries": 3, "sleep": clock.sleep, "clock": clock.time,
                                   **client_kw}  # fmt: skip
        client = CoinApiClient(url, key, now_ms=lambda: NOW_MS, **options)
        try:
            yield client, sandbox, clock.sleeps
        finally:
            client.close()


def page_starts(sandbox: SandboxTransport) -> list[str]:
    return [r.params["time_start"] for r in sandbox.requests]


@pytest.fixture(scope="module")
def clean_day() -> pl.DataFrame:
    return in_process().ohlcv(SPOT_BTC, "1HRS", START, END)


# --- the contract ----------------------------------------------------------------------


def test_a_day_is_24_bars_labelled_by_period_end(clean_day: pl.DataFrame) -> None:
    assert clean_day.schema == pl.Schema(COINAPI_OHLCV_SCHEMA)
    assert (
        clean_day.height == 24 and clean_day["ts"].is_sorted() and clean_day["ts"].is_unique().all()
    )
    assert clean_day["ts"].min() == START + HOUR and clean_day["ts"].max() == END  # (D, D+1]
    assert clean_day["symbol_id"].unique().to_list() == [SPOT_BTC]
    assert clean_day.null_count().sum_horizontal().item() == 0
    with httpx.Client(
        transport=SandboxTransport(now_ms=NOW_MS), headers={"X-CoinAPI-Key": KEY}
    ) as h:
        params = {"period_id": "1HRS", "limit": 1, "time_start": iso_from_ms(1704153600000)}
        raw = h.get(f"http://x{SPOT_PATH}", params=params)
    first = raw.json()[0]
    assert first["time_period_start"] == "2024-01-02T00:00:00.0000000Z"  # the period [00:00, 01:00)
    assert clean_day.row(0, named=True)["close"] == first["price_close"]  # ... is ts 01:00


def test_windows_are_right_closed_and_stop_at_the_clock() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    odd = client.ohlcv(
        SPOT_BTC, "1HRS", START + timedelta(minutes=30), START + timedelta(hours=3, minutes=30)
    )
    assert odd["ts"].to_list() == [START + k * HOUR for k in (1, 2, 3)]
    today = datetime(2024, 6, 1, tzinfo=UTC)
    late = client.ohlcv(SPOT_BTC, "1HRS", today, today + timedelta(days=3))
    assert late["ts"].max() == today + 12 * HOUR and late.height == 12  # 12:00-13:00 is open
    assert client.ohlcv(SPOT_BTC, "1HRS", today + 13 * HOUR, today + 20 * HOUR).height == 0
    assert sandbox.count() == 2  # a window wholly after the clock is not asked for


def test_paging_sends_the_minimum_requests_and_credits() -> None:
    """2400 hours at limit=1000: 3 requests (ceil), 24 credits (one per 100 items), each page
    starting at the previous page's last period end; 2000 hours: 2, not a third empty one."""
    with served() as (client, sandbox, sleeps):
        frame = client.ohlcv(SPOT_BTC, "1HRS", START, START + timedelta(days=100))
        assert frame.height == 2400 and frame["ts"].is_unique().all() and sleeps == []
        assert client.request_count == sandbox.count(SPOT_PATH) == 3
        assert page_starts(sandbox) == [iso_from_ms(1704153600000 + k * 3_600_000_000)
                                        for k in (0, 1, 2)]  # fmt: skip
        assert [r.params["limit"] for r in sandbox.requests] == ["1000"] * 3
        assert client.credits_used == 24
        quota = client.quota
        assert quota is not None and (quota.used, quota.remaining, quota.request_cost) == (
            24,
            100_000 - 24,
            4,
        )
        assert quota.limit == 100_000 and quota.reset == datetime(
            1970, 1, 13, tzinfo=UTC
        )  # fake clock
        exact = client.ohlcv(SPOT_BTC, "1HRS", START, START + 2000 * HOUR)
        assert exact.height == 2000 and sandbox.count(SPOT_PATH) == 5


def test_iso_times_parse_exactly_to_100_ns() -> None:
    base = iso_ticks("2024-01-02T00:00:00.0000000Z")
    assert base == 1_704_153_600 * 10_000_000
    assert iso_ticks("2024-01-02T00:00:00.0000001Z") - base == 1  # a float would lose this tick
    assert float("1704153600.0000001") * 1e7 - base != 1
    assert iso_ticks("2024-01-02T00:00:00.1234567Z") - base == 1_234_567
    assert iso_ticks("2024-01-02T00:00:00Z") == base == iso_ticks("2024-01-02T00:00:00.000000000Z")
    for bad in ("2024-01-02T00:00:00", "2024-01-02T01:00:00+01:00", "2024-02-30T00:00:00Z",
                "2024-01-02T00:00:00.000000012Z", "2024-01-02 00:00:00Z"):  # fmt: skip
        with pytest.raises(ValueError):
            iso_ticks(bad)
    assert iso_from_ms(1_704_153_600_123) == "2024-01-02T00:00:00.1230000Z"


def _row(start: str, end: str, **over: Any) -> dict[str, Any]:
    row = {"time_period_start": start, "time_period_end": end, "time_open": start,
           "time_close": end, "price_open": 1.0, "price_high": 2.0, "price_low": 0.5,
           "price_close": 1.5, "volume_traded": 10.0, "trades_count": 3}  # fmt: skip
    return {**row, **over}


@pytest.mark.parametrize(
    ("row", "text"),
    [
        (_row("2024-01-02T00:00:00Z", "2024-01-02T01:00:00.0000001Z"), "not one 3600 s period"),
        (_row("2024-01-02T00:00:00Z", "2024-01-02T02:00:00.0000000Z"), "not one 3600 s period"),
        (_row("2024-01-02T00:00:00Z", "yesterday"), "not a UTC ISO-8601 time: 'yesterday'"),
        ({k: v for k, v in _row("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z").items()
          if k != "price_close"}, "row 0 lacks required key(s) ['price_close']"),
        (_row("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z", trades_count=1.5), "is not a count"),
        (_row("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z", price_open="abc"), "not a number"),
    ],
)  # fmt: skip
def test_a_row_that_drifted_is_refused_naming_the_endpoint(row: dict[str, Any], text: str) -> None:
    transport, seen = scripted([httpx.Response(200, json=[row])])
    client = CoinApiClient(api_key=KEY, transport=transport, now_ms=lambda: NOW_MS)
    with pytest.raises(VendorResponseError) as err:
        client.ohlcv(SPOT_BTC, "1HRS", START, END)
    assert str(err.value).startswith(f"coinapi GET {SPOT_PATH} {{period_id=1HRS, time_start=")
    assert text in str(err.value) and len(seen) == 1 and KEY not in str(err.value)
    assert str(seen[0].url).startswith("https://rest.coinapi.io/v1/ohlcv/")  # the live default


def test_seven_digit_times_and_numbers_from_the_wire_parse_into_the_contract() -> None:
    rows = [_row("2024-01-02T01:00:00.0000000Z", "2024-01-02T02:00:00.0000000Z",
                 time_open="2024-01-02T01:00:00.1234567Z", trades_count="7", price_close="1.25"),
            _row("2024-01-02T00:00:00.0000000Z", "2024-01-02T01:00:00.0000000Z")]  # fmt: skip
    transport, _ = scripted([httpx.Response(200, json=rows)])
    frame = CoinApiClient(api_key=KEY, transport=transport, now_ms=lambda: NOW_MS).ohlcv(
        SPOT_BTC, "1HRS", START, END
    )
    assert frame["ts"].to_list() == [START + HOUR, START + 2 * HOUR]  # sorted
    assert frame["trades"].to_list() == [3, 7] and frame["close"].to_list() == [1.5, 1.25]


@pytest.mark.parametrize(
    "kinds", [["duplicates"], ["out_of_order"], ["duplicates", "out_of_order"], ["extra_field"]]
)
def test_duplicated_shuffled_or_extended_rows_are_cleaned(kinds: list[str]) -> None:
    """Over two pages: the next page starts at the newest period end, not the last row's."""
    end = START + timedelta(days=60)
    clean = in_process().ohlcv(SPOT_BTC, "1HRS", START, end)
    with served([{"kind": k, "path": "/v1/ohlcv/*", "count": -1} for k in kinds]) as (c, sb, _):
        frame = c.ohlcv(SPOT_BTC, "1HRS", START, end)
        assert sb.count() == 2 and page_starts(sb)[1] == iso_from_ms(1704153600000 + 3_600_000_000)
    assert all(sb.faults.fired(k) == 2 for k in kinds)
    assert frame.equals(clean)


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_raises_before_any_request(key: str | None) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    with pytest.raises(CoinApiKeyMissing) as err:
        in_process(sandbox, api_key=key).ohlcv(SPOT_BTC, "1HRS", START, END)
    assert sandbox.count() == 0 and isinstance(err.value, VendorConfigError)
    assert "set COINAPI_API_KEY" in str(err.value)


def test_bad_arguments_fail_before_any_request() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    client = in_process(sandbox)
    with pytest.raises(ValueError, match="period_id '1MTH' not supported"):
        client.ohlcv(SPOT_BTC, "1MTH", START, END)
    with pytest.raises(ValueError, match="symbol_id='BTC/USDT'"):
        client.ohlcv("BTC/USDT", "1HRS", START, END)
    with pytest.raises(VendorConfigError, match="page_limit=0"):
        in_process(sandbox, page_limit=0)
    assert sandbox.count() == 0


def test_401_names_the_setting_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    secret = "coinapi-live-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    with served(key=secret) as (client, sandbox, sleeps), pytest.raises(CoinApiKeyInvalid) as err:
        client.ohlcv(SPOT_BTC, "1HRS", START, END)
    text = str(err.value) + repr(err.value.args)
    assert "HTTP 401: Invalid API key" in text and "check COINAPI_API_KEY" in text
    assert isinstance(err.value, VendorConfigError) and isinstance(err.value, VendorError)
    assert secret not in text and secret not in caplog.text
    assert caplog.records  # DEBUG was on: the request was logged, without the key
    assert sandbox.count() == 1 and sleeps == []  # the same key gives the same answer


def test_403_is_a_plan_refusal_not_retried() -> None:
    with served(key=SANDBOX_COINAPI_OHLCV_ONLY_KEY) as (client, sandbox, sleeps):
        with pytest.raises(CoinApiForbidden) as err:
            client.metric(FUNDING_METRIC, PERP_BTC, "8HRS", START, END)
        assert client.ohlcv(SPOT_BTC, "1HRS", START, END).height == 24  # its plan's data
        assert sandbox.count(METRICS_HISTORY) == 1 and sleeps == []
    assert isinstance(err.value, VendorRefused) and "HTTP 403: Forbidden" in str(err.value)
    assert "plan does not include /v1/metrics/symbol/history" in str(err.value)


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda c: c.ohlcv("BINANCE_SPOT_FOO_USDT", "1HRS", START, END), "Unknown symbol_id"),
        (lambda c: c.ohlcv("BINANCEFTS_PERP_BTCUSDT_261225", "1HRS", START, END), "Unknown symbol"),
        (lambda c: c.metric("DERIVATIVES_FOO", PERP_BTC, "8HRS", START, END), "Unknown metric_id"),
        (
            lambda c: c.metric(FUNDING_METRIC, SPOT_BTC, "8HRS", START, END),
            "Metric DERIVATIVES_FUNDING",
        ),
    ],
    ids=["symbol", "dated-future", "metric", "metric-on-spot"],
)
def test_404_is_recorded_as_not_served(call: Any, text: str) -> None:
    with served() as (client, sandbox, sleeps), pytest.raises(CoinApiNotServed) as err:
        call(client)
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1 and sleeps == []
    assert "HTTP 404: " + text in str(err.value) and "not served" in str(err.value)


def test_404_page_without_coinapi_json_is_a_wrong_base_url() -> None:
    with served([{"kind": "404", "path": SPOT_PATH}]) as (client, _, _), pytest.raises(
        CoinApiEndpointMissing
    ) as err:  # fmt: skip
        client.ohlcv(SPOT_BTC, "1HRS", START, END)
    assert "check COINAPI_BASE_URL" in str(err.value)
    assert not isinstance(err.value, CoinApiNotServed)  # a config problem, not "not served"


def test_550_is_an_empty_window_with_a_flag_not_an_error() -> None:
    before = datetime(2019, 1, 1, tzinfo=UTC)  # the perp listed on 2019-09-08
    with served() as (client, sandbox, sleeps):
        frame = client.ohlcv(PERP_BTC, "1HRS", before, before + timedelta(days=2))
        assert frame.schema == pl.Schema(COINAPI_OHLCV_SCHEMA) and frame.height == 0
        assert sandbox.count() == 1 and sleeps == [] and sandbox.requests[0].status == 550
        assert client.no_data == [NoDataWindow(PERP_PATH, PERP_BTC, None, "1HRS", before,
                                               before + timedelta(days=2),
                                               "You requested specific single item that we "
                                               "don't have at this moment.")]  # fmt: skip
        listing = datetime(2019, 9, 8, tzinfo=UTC)
        straddle = client.ohlcv(
            PERP_BTC, "1HRS", listing - timedelta(days=1), listing + timedelta(days=1)
        )
        assert straddle["ts"].min() == listing + HOUR and straddle.height == 24
        metric = client.metric(FUNDING_METRIC, PERP_BTC, "8HRS", before, before + timedelta(days=1))
        assert metric.schema == pl.Schema(COINAPI_METRIC_SCHEMA) and metric.height == 0
        assert len(client.no_data) == 2 and client.no_data[1].metric_id == FUNDING_METRIC


# --- 429, 5xx, malformed bodies ----------------------------------------------------------


def test_429_waits_for_the_quota_reset_then_succeeds(clean_day: pl.DataFrame) -> None:
    with served([{"kind": "429", "path": SPOT_PATH, "count": 2, "retry_after": 5}]) as (
        c,
        sb,
        sleeps,
    ):
        frame = c.ohlcv(SPOT_BTC, "1HRS", START, END)
        assert [r.status for r in sb.requests] == [429, 429, 200]
    assert sleeps == [6.0, 6.0]  # to x-ratelimit-reset, plus a second for clock skew
    assert frame.equals(clean_day)


def test_daily_credit_quota_spent_mid_backfill_waits_for_midnight() -> None:
    """12 credits a day: pages cost 10 + 10 (the second crosses the quota and is served),
    the third is refused until the sandbox's day rolls over, 600 s later."""
    clock = FakeClock(start=86_400.0 * 30 - 600)
    with served(clock=clock, limits={"coinapi": 12}, max_wait_seconds=3600) as (c, sb, sleeps):
        frame = c.ohlcv(SPOT_BTC, "1HRS", START, START + timedelta(days=100))
        assert [r.status for r in sb.requests] == [200, 200, 429, 200]
        assert frame.height == 2400 and sleeps == [601.0]
        assert c.quota is not None and (c.quota.used, c.quota.remaining) == (4, 8)
        assert c.credits_used == 24


def test_quota_resetting_later_than_we_may_wait_fails_saying_when() -> None:
    clock = FakeClock(start=86_400.0 * 30 - 7200)
    with served(clock=clock, limits={"coinapi": 1}) as (client, sandbox, sleeps):
        client.ohlcv(SPOT_BTC, "1HRS", START, END)
        with pytest.raises(CoinApiQuotaExceeded) as err:
            client.ohlcv(SPOT_BTC, "1HRS", END, END + timedelta(days=1))
        assert sandbox.count() == 2 and sleeps == []
    text = str(err.value)
    assert "HTTP 429: Too many requests" in text and "resets at 1970-01-31T00:00:00+00:00" in text
    assert "more than max_wait_seconds=120; not waiting" in text


@pytest.mark.parametrize(
    "fault",
    [{"kind": "500", "count": 2}, {"kind": "503", "count": 1}, {"kind": "truncated", "count": 2},
     {"kind": "reset", "count": 1}, {"kind": "429", "count": 1, "retry_after_header": "2"}],
    ids=lambda f: f["kind"],
)  # fmt: skip
def test_transient_failures_are_retried_to_the_clean_answer(
    clean_day: pl.DataFrame, fault: dict[str, Any]
) -> None:
    with served([{**fault, "path": SPOT_PATH}]) as (client, sandbox, sleeps):
        frame = client.ohlcv(SPOT_BTC, "1HRS", START, END)
        assert client.request_count == sandbox.count() == 1 + fault["count"]
    assert frame.equals(clean_day) and len(sleeps) == fault["count"]


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [({"kind": "500", "count": -1}, VendorUnavailable, "HTTP 500: Error 500 -- gave up after 4"),
     ({"kind": "truncated", "count": -1}, VendorResponseError, "malformed JSON"),
     ({"kind": "error200", "msg": "Invalid symbol"}, VendorError, "HTTP 200: Invalid symbol")],
    ids=["5xx", "malformed", "error-in-200"],
)  # fmt: skip
def test_persistent_failures_fail_naming_the_endpoint(
    fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with (
        served([{**fault, "path": SPOT_PATH}]) as (client, sandbox, _),
        pytest.raises(error) as err,
    ):
        client.ohlcv(SPOT_BTC, "1HRS", START, END)
    assert type(err.value) is error and text in str(err.value)
    assert str(err.value).startswith(f"coinapi GET {SPOT_PATH} {{period_id=1HRS,")
    if error is VendorError:
        assert sandbox.count() == 1  # an error body in a 200 is not retried


# --- agreement with the Binance sandbox ----------------------------------------------------


@pytest.mark.parametrize(
    ("symbol_id", "spot", "tick"), [(SPOT_BTC, True, 0.01), (PERP_BTC, False, 0.1)]
)
def test_hourly_bars_agree_with_binance_within_the_feed_noise(
    symbol_id: str, spot: bool, tick: float
) -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    end = START + timedelta(days=7)
    ours = in_process(sandbox).ohlcv(symbol_id, "1HRS", START, end)
    binance = BinanceClient("http://s", "http://f", transport=sandbox, now_ms=lambda: NOW_MS)
    kl = (binance.spot_klines if spot else binance.futures_klines)("BTCUSDT", "1h", START, end)
    both = ours.join(kl, on="ts", suffix="_bn", how="full", coalesce=True)
    assert both.height == ours.height == kl.height == 168
    assert (
        both.select((pl.col("high") == pl.col("high_bn")) & (pl.col("low") == pl.col("low_bn")))
        .to_series()
        .all()
    )
    for col in ("open", "close"):
        off = (both[col] - both[f"{col}_bn"]).abs()
        assert off.max() <= tick * 1.001 and 0 < (off > 0).sum() < 60  # measurable, small
    volume = (both["volume"] / both["volume_bn"] - 1).abs()
    assert 0 < volume.max() < 0.003
    trades = (both["trades"] / both["trades_bn"] - 1).abs()
    assert 0 < trades.max() < 0.005


def test_bad_ohlc_fault_is_a_disagreement_only_a_cross_check_sees() -> None:
    fault = {"kind": "bad_ohlc", "path": SPOT_PATH, "day": "2024-01-02", "start_minute": 600,
             "minutes": 90}  # fmt: skip
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps([fault]))
    ours = in_process(sandbox).ohlcv(SPOT_BTC, "1HRS", START, END)
    binance = BinanceClient("http://s", "http://f", transport=sandbox, now_ms=lambda: NOW_MS)
    both = ours.join(binance.spot_klines("BTCUSDT", "1h", START, END), on="ts", suffix="_bn")
    off = both.filter((both["close"] / both["close_bn"] - 1).abs() > 0.005)["ts"].to_list()
    assert off == [START + k * HOUR for k in (11, 12)]  # the periods 10:00-11:00, 11:00-12:00
    assert (ours["low"] <= ours["open"]).all() and (ours["high"] >= ours["close"]).all()


def test_funding_metric_last_is_binance_settlement() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS)
    end = START + timedelta(days=30)
    metric = in_process(sandbox).metric(FUNDING_METRIC, PERP_BTC, "8HRS", START, end)
    assert metric.schema == pl.Schema(COINAPI_METRIC_SCHEMA) and metric.height == 90
    assert metric["count"].unique().to_list() == [480] and sandbox.count() == 1
    binance = BinanceClient("http://s", "http://f", transport=sandbox, now_ms=lambda: NOW_MS)
    settled = binance.funding_rate("BTCUSDT", START, end)
    both = metric.join(settled, on="ts")
    assert both.height == 90 and (both["last"] == both["funding_rate"]).all()
    assert (metric["min"] <= metric["first"]).all() and (metric["max"] >= metric["last"]).all()
    mean = metric["sum"] / metric["count"]
    assert ((metric["min"] <= mean + 1e-12) & (mean <= metric["max"] + 1e-12)).all()
