"""BinanceAccountClient (signed USD-M endpoints) against the sandbox, in-process and over a
real loopback socket: the HMAC of reference §2.6, a signed request accepted, Binance's
refusals (-2014, -2015, -1022, -1021 with one server-time resync, -1121) as errors naming
the setting, rates in exact basis points, and the key, secret and signatures kept out of
every log line, error and repr."""

from __future__ import annotations

import itertools
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from btc_assets.sandbox.binance_account import commission
from btc_assets.sandbox.credentials import SANDBOX_BINANCE_API_KEY, SANDBOX_BINANCE_API_SECRET
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors import binance_signed
from btc_assets.vendors.binance import BinanceSymbolError
from btc_assets.vendors.binance_signed import (
    COMMISSION_RATE,
    SERVER_TIME,
    BinanceAccountClient,
    BinanceClockSkew,
    BinanceCredentialsMissing,
    BinanceKeyRejected,
    BinanceSignatureRejected,
    CommissionRate,
    rate_bps,
    sign,
    signed_query,
)
from btc_assets.vendors.errors import VendorConfigError, VendorResponseError
from btc_assets_tests.test_vendors.helpers import scripted

NOW_MS = 1_704_456_030_000  # 2024-01-05 12:00:30 UTC, the sandbox's clock
KEY, SECRET = SANDBOX_BINANCE_API_KEY, SANDBOX_BINANCE_API_SECRET
# Recognisable values that appear nowhere else: they must never be seen.
FAKE_KEY = "FAKEKEYvmw7Q2xZp9RtL4bN8cJ3hY6dK1sA5eG0uT"
FAKE_SECRET = "FAKESECRETq8Wn3Zr5Tp1Lx7Vb9Mc2Kd4Hf6Js0Ga"


def vector() -> tuple[str, str, str]:
    """Reference §2.6: secret, signed message, signature."""
    return (
        "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    )


@contextmanager
def account(
    wire: str,
    key: str | None = KEY,
    secret: str | None = SECRET,
    now_ms: Callable[[], int] = lambda: NOW_MS,
    faults: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> Iterator[tuple[BinanceAccountClient, SandboxTransport]]:
    """A client on the sandbox, in-process (``wire="memory"``) or over loopback."""
    sandbox = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults or []))
    options: dict[str, Any] = {"now_ms": now_ms, "sleep": lambda _: None, **kw}
    if wire == "memory":
        client = BinanceAccountClient("https://fapi.binance.com", key, secret,
                                      transport=sandbox, **options)  # fmt: skip
        with client:
            yield client, sandbox
        return
    with (
        serve_sandbox(transport=sandbox) as url,
        BinanceAccountClient(url, key, secret, timeout=5.0, **options) as client,
    ):
        yield client, sandbox


WIRES = pytest.mark.parametrize("wire", ["memory", "loopback"])


def paths(sandbox: SandboxTransport) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in sandbox.requests]


# --- signing ------------------------------------------------------------------------------


def test_hmac_matches_the_reference_vector() -> None:
    secret, message, signature = vector()
    assert sign(message, secret) == signature


def test_signature_is_the_last_parameter_and_signs_exactly_what_is_sent() -> None:
    transport, seen = scripted([httpx.Response(200, json=commission("BTCUSDT"))])
    with BinanceAccountClient("https://fapi.binance.com", KEY, SECRET, transport=transport,
                              now_ms=lambda: 1_499_827_319_559) as client:  # fmt: skip
        client.commission_rate("BTCUSDT")
    (request,) = seen
    query = urlsplit(str(request.url)).query
    sent, signature = query.rsplit("&signature=", 1)
    assert sent == "symbol=BTCUSDT&recvWindow=5000&timestamp=1499827319559"
    assert signature == sign(sent, SECRET) and "&" not in signature
    assert request.headers["x-mbx-apikey"] == KEY
    assert list(signed_query({"a": 1, "b": "x"}, SECRET)) == ["a", "b", "signature"]


# --- accepted -----------------------------------------------------------------------------


@WIRES
def test_a_signed_request_is_accepted_with_rates_in_basis_points(wire: str) -> None:
    with account(wire) as (client, sandbox):
        btc = client.commission_rate("BTCUSDT")
        pepe = client.commission_rate("1000PEPEUSDT")
        doge = client.commission_rate("DOGEUSDT")
    assert btc == CommissionRate("BTCUSDT", 2.0, 5.0, 0.5)  # 0.0002, 0.0005, rpi 0.00005
    assert pepe == CommissionRate("1000PEPEUSDT", 1.8, 4.5, None)  # no rpi field: optional
    assert doge.maker_bps == 0.0 and doge.taker_bps == 4.0
    assert paths(sandbox) == [(COMMISSION_RATE, 200)] * 3
    assert client.request_count == 3 and client.budget.used == 60  # weight 20 each


def test_rates_are_parsed_as_exact_decimals() -> None:
    assert rate_bps("0.00018", "f", "X") == 1.8  # a binary float product gives 1.7999...
    assert rate_bps(0.0004, "f", "X") == 4.0 and rate_bps(" 0.0002 ", "f", "X") == 2.0
    assert rate_bps("-0.00005", "f", "X") == -0.5  # a maker rebate
    for junk in ("", "abc", "NaN", None, True, [1]):
        with pytest.raises(VendorResponseError, match="not a"):
            rate_bps(junk, "makerCommissionRate", "BTCUSDT")
    answer = {"symbol": "BTCUSDT", "makerCommissionRate": "0.0002"}  # taker missing
    transport, _ = scripted([httpx.Response(200, json=answer)])
    with pytest.raises(VendorResponseError, match="no takerCommissionRate"):
        BinanceAccountClient(
            "https://fapi.binance.com", KEY, SECRET, transport=transport
        ).commission_rate("BTCUSDT")


@WIRES
def test_a_transient_failure_is_retried_to_the_answer(wire: str) -> None:
    faults = [{"kind": "503", "path": COMMISSION_RATE, "count": 1}]
    with account(wire, faults=faults) as (client, sandbox):
        assert client.commission_rate("BTCUSDT").taker_bps == 5.0
    assert paths(sandbox) == [(COMMISSION_RATE, 503), (COMMISSION_RATE, 200)]


# --- refused ------------------------------------------------------------------------------


@WIRES
def test_a_wrong_secret_is_1022_naming_the_secret_setting(wire: str) -> None:
    with (
        account(wire, secret=FAKE_SECRET) as (client, sandbox),
        pytest.raises(BinanceSignatureRejected) as err,
    ):
        client.commission_rate("BTCUSDT")
    text = str(err.value)
    assert "HTTP 400 code -1022: Signature for this request is not valid." in text
    assert "BINANCE_API_SECRET" in text and "BTCUSDT" in text
    assert paths(sandbox) == [(COMMISSION_RATE, 400)]  # a definite answer: not retried


@WIRES
def test_a_wrong_key_is_2015_naming_the_key_setting(wire: str) -> None:
    with account(wire, key=FAKE_KEY) as (client, sandbox), pytest.raises(BinanceKeyRejected) as err:
        client.commission_rate("ETHUSDT")
    text = str(err.value)
    assert "HTTP 401 code -2015: Invalid API-key, IP, or permissions for action." in text
    assert "BINANCE_API_KEY" in text and "ETHUSDT" in text
    assert paths(sandbox) == [(COMMISSION_RATE, 401)]


def test_no_key_is_2014_from_binance_and_refused_before_sending_by_the_client() -> None:
    body = {"code": -2014, "msg": "API-key format invalid."}
    transport, _ = scripted([httpx.Response(401, json=body)])
    with pytest.raises(BinanceKeyRejected, match=r"code -2014.*BINANCE_API_KEY"):
        BinanceAccountClient(
            "https://fapi.binance.com", "x", SECRET, transport=transport
        ).commission_rate("BTCUSDT")
    for key, secret, missing in ((None, SECRET, "BINANCE_API_KEY not set"),
                                 (KEY, "  ", "BINANCE_API_SECRET not set"),
                                 ("", None, "BINANCE_API_KEY and BINANCE_API_SECRET")):  # fmt: skip
        with account("memory", key=key, secret=secret) as (client, sandbox):
            with pytest.raises(BinanceCredentialsMissing, match=missing):
                client.commission_rate("BTCUSDT")
            assert sandbox.requests == [] and not client.has_credentials


def test_an_unknown_symbol_is_1121_naming_it() -> None:
    with account("memory") as (client, _), pytest.raises(BinanceSymbolError, match="NOPEUSDT"):
        client.commission_rate("NOPEUSDT")


def test_recv_window_is_checked_before_anything_is_sent() -> None:
    for window in (0, 60_001):
        with pytest.raises(VendorConfigError, match="recvWindow"):
            BinanceAccountClient("https://fapi.binance.com", KEY, SECRET, recv_window_ms=window)


# --- the clock ----------------------------------------------------------------------------


@WIRES
@pytest.mark.parametrize("skew_ms", [10_000, -10_000])
def test_a_skewed_clock_is_resynced_once_with_the_server_time(wire: str, skew_ms: int) -> None:
    with account(wire, now_ms=lambda: NOW_MS + skew_ms) as (client, sandbox):
        first = client.commission_rate("BTCUSDT")
        second = client.commission_rate("ETHUSDT")  # the offset is kept: no new resync
    assert first.maker_bps == 2.0 and second.taker_bps == 5.0
    assert paths(sandbox) == [
        (COMMISSION_RATE, 400), (SERVER_TIME, 200), (COMMISSION_RATE, 200), (COMMISSION_RATE, 200)
    ]  # fmt: skip
    assert client.offset_ms == -skew_ms


@WIRES
def test_a_clock_that_keeps_jumping_fails_after_one_resync_with_a_clear_message(
    wire: str,
) -> None:
    ticks = itertools.count(1)
    # Ten seconds further ahead at every reading: the offset learnt is stale at once.
    jumpy = lambda: NOW_MS + 10_000 * next(ticks)  # noqa: E731
    with account(wire, now_ms=jumpy) as (client, sandbox), pytest.raises(BinanceClockSkew) as err:
        client.commission_rate("BTCUSDT")
    text = str(err.value)
    assert "code -1021" in text and "still outside recvWindow (5000 ms)" in text
    assert "NTP" in text and "offset" in text
    assert [p for p, _ in paths(sandbox)] == [COMMISSION_RATE, SERVER_TIME, COMMISSION_RATE]


# --- secrets --------------------------------------------------------------------------------


def test_key_secret_and_signatures_never_in_logs_errors_or_repr(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # ours, httpx's request log, the sandbox's
    signatures: list[str] = []
    real_sign = binance_signed.sign

    def recording_sign(query: str, secret: str) -> str:
        signatures.append(real_sign(query, secret))
        return signatures[-1]

    monkeypatch.setattr(binance_signed, "sign", recording_sign)
    texts: list[str] = []
    faults = [{"kind": "503", "path": COMMISSION_RATE, "count": 1}]  # a retry is logged
    with account("loopback", key=FAKE_KEY, secret=FAKE_SECRET, faults=faults) as (c, _):
        texts.append(repr(c))
        with pytest.raises(BinanceKeyRejected) as key_err:
            c.commission_rate("BTCUSDT")
    with (
        account("loopback", secret=FAKE_SECRET) as (c, _),
        pytest.raises(BinanceSignatureRejected) as secret_err,
    ):
        c.commission_rate("BTCUSDT")
    ticks = itertools.count(1)
    jumpy = lambda: NOW_MS + 10_000 * next(ticks)  # noqa: E731
    # A resync (logged) and a final -1021, signed with the sandbox's own secret.
    with account("loopback", now_ms=jumpy) as (c, _), pytest.raises(BinanceClockSkew) as skew_err:
        c.commission_rate("BTCUSDT")
    down = BinanceAccountClient("http://127.0.0.1:9", FAKE_KEY, FAKE_SECRET, max_retries=0,
                                timeout=0.5)  # fmt: skip
    with pytest.raises(Exception) as down_err:
        down.commission_rate("BTCUSDT")
    texts.append(repr(down))
    for err in (key_err, secret_err, skew_err, down_err):
        e = err.value
        texts += [str(e), repr(e), repr(getattr(e, "args", "")),
                  repr(pickle.loads(pickle.dumps(e)))]  # fmt: skip
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: GET" in logged and "signature=***" in logged  # it was logged
    assert "off Binance's" in logged and "retry 1" in logged  # the resync and the retry too
    assert "signature=***" in texts[2]  # the error names the parameter, masked
    assert len(signatures) == 5  # 2 refusals (a retry resends the same), 2 for the skew, 1 down
    for secret in (FAKE_KEY, FAKE_SECRET, *signatures):
        assert secret not in logged, secret
        assert not [t for t in texts if secret in t], secret
