"""The sandbox's signed Binance route, ``/fapi/v1/commissionRate``: the key header, the
HMAC over the query, the recvWindow rule at its edges, Binance's error bodies, weight 20."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from btc_assets.sandbox.binance_account import commission, expected_signature
from btc_assets.sandbox.credentials import SANDBOX_BINANCE_API_KEY, SANDBOX_BINANCE_API_SECRET
from btc_assets.sandbox.transport import SandboxTransport

NOW_MS = 1_704_456_030_000  # 2024-01-05 12:00:30 UTC
PATH = "/fapi/v1/commissionRate"


def signed(params: dict[str, Any], secret: str = SANDBOX_BINANCE_API_SECRET) -> dict[str, Any]:
    query = urlencode(params)
    digest = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return {**params, "signature": digest}


def ask(
    sandbox: SandboxTransport,
    params: dict[str, Any],
    key: str | None = SANDBOX_BINANCE_API_KEY,
) -> httpx.Response:
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    with httpx.Client(transport=sandbox, base_url="http://any.host") as client:
        return client.get(PATH, params=params, headers=headers)


def body(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


def at(timestamp: int, symbol: str = "BTCUSDT", **more: Any) -> dict[str, Any]:
    return {"symbol": symbol, **more, "timestamp": timestamp}


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS)


def test_a_signed_request_gets_the_accounts_rates(sandbox: SandboxTransport) -> None:
    response = ask(sandbox, signed(at(NOW_MS, recvWindow=5000)))
    assert body(response) == (200, {"symbol": "BTCUSDT", "makerCommissionRate": "0.0002",
                                    "takerCommissionRate": "0.0005",
                                    "rpiCommissionRate": "0.00005"})  # fmt: skip
    assert response.headers["x-mbx-used-weight-1m"] == "20"
    again = ask(sandbox, signed(at(NOW_MS, "SOLUSDT")))
    assert again.json() == commission("SOLUSDT") and "rpiCommissionRate" not in again.json()
    assert again.headers["x-mbx-used-weight-1m"] == "40"


def test_the_signature_may_be_upper_case(sandbox: SandboxTransport) -> None:
    params = signed(at(NOW_MS))
    params["signature"] = params["signature"].upper()
    assert ask(sandbox, params).status_code == 200


def test_the_key_header_missing_is_2014_and_unknown_is_2015(sandbox: SandboxTransport) -> None:
    params = signed(at(NOW_MS))
    assert body(ask(sandbox, params, key=None)) == (
        401, {"code": -2014, "msg": "API-key format invalid."}
    )  # fmt: skip
    assert body(ask(sandbox, params, key="someone-elses-key")) == (
        401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
    )  # fmt: skip


def test_a_signature_by_another_secret_or_over_other_params_is_1022(
    sandbox: SandboxTransport,
) -> None:
    wrong = (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert body(ask(sandbox, signed(at(NOW_MS), secret="not-the-secret"))) == wrong
    tampered = {**signed(at(NOW_MS)), "symbol": "ETHUSDT"}  # signed for BTCUSDT
    assert body(ask(sandbox, tampered)) == wrong
    # The order of the query is what was signed: the same pairs in another order differ.
    reordered = signed(at(NOW_MS))
    reordered = {"timestamp": reordered.pop("timestamp"), **reordered}
    assert body(ask(sandbox, reordered)) == wrong


def test_missing_timestamp_or_signature_and_a_too_long_window(sandbox: SandboxTransport) -> None:
    assert body(ask(sandbox, {"symbol": "BTCUSDT", "signature": "00"}))[1]["code"] == -1102
    assert "'signature'" in ask(sandbox, at(NOW_MS)).json()["msg"]
    too_long = body(ask(sandbox, signed(at(NOW_MS, recvWindow=60_001))))
    assert too_long == (400, {"code": -1131, "msg": "recvWindow must be less than 60000."})


@pytest.mark.parametrize(
    ("offset_ms", "window", "accepted"),
    [
        (999, None, True),  # may run up to 1000 ms ahead
        (1000, None, False),
        (-5000, None, True),  # default recvWindow 5000
        (-5001, None, False),
        (-60_000, 60_000, True),
        (-10_000, 5000, False),
    ],
)
def test_the_timestamp_must_fall_inside_recv_window(
    sandbox: SandboxTransport, offset_ms: int, window: int | None, accepted: bool
) -> None:
    extra = {"recvWindow": window} if window is not None else {}
    response = ask(sandbox, signed(at(NOW_MS + offset_ms, **extra)))
    if accepted:
        assert response.status_code == 200
    else:
        status, answer = body(response)
        assert status == 400 and answer["code"] == -1021
        assert answer["msg"] == (
            "Timestamp for this request was 1000ms ahead of the server's time."
            if offset_ms > 0
            else "Timestamp for this request is outside of the recvWindow."
        )


def test_an_unknown_symbol_is_1121(sandbox: SandboxTransport) -> None:
    assert body(ask(sandbox, signed(at(NOW_MS, "NOPEUSDT")))) == (
        400, {"code": -1121, "msg": "Invalid symbol."}
    )  # fmt: skip


def test_the_fault_plan_applies_to_the_signed_route() -> None:
    sandbox = SandboxTransport(now_ms=NOW_MS, faults='[{"kind": "503", "path": "' + PATH + '"}]')
    assert ask(sandbox, signed(at(NOW_MS))).json()["code"] == -1008
    assert ask(sandbox, signed(at(NOW_MS))).status_code == 200  # count 1 by default


def test_expected_signature_is_the_hmac_over_the_rest_of_the_query() -> None:
    params = signed(at(NOW_MS))
    assert expected_signature({k: str(v) for k, v in params.items()}) == params["signature"]
