"""Binance USD-M signed (USER_DATA) endpoints: the account's commission rate per symbol.

A plain client (no Dagster) on the shared :class:`VendorHttpClient`, so signed requests get
the same retries, weight budget (``GET /fapi/v1/commissionRate`` costs 20) and redaction as
every other Binance call.

Signing (reference §2.6): the urlencoded query (``symbol``, ``recvWindow``, ``timestamp``) is
signed with HMAC-SHA256 under the API secret, the lowercase hex digest goes last as
``signature``, and the key travels in the ``X-MBX-APIKEY`` header. The secret never leaves
:func:`sign`; the key and every signature are masked in logs, errors and ``repr`` (the HTTP
layer masks the ``signature`` parameter and the key header by name and by value).

Refusals become errors that name the setting to fix and the symbol, never a value:
-2014/-2015 → :class:`BinanceKeyRejected` (``BINANCE_API_KEY``), -1022 →
:class:`BinanceSignatureRejected` (``BINANCE_API_SECRET``), -1021 → :class:`BinanceClockSkew`
after one resync: the client asks ``GET /fapi/v1/time`` once, signs again with the server's
time and retries once; the offset is kept for the client's later calls.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import httpx

from btc_assets.clock import epoch_ms
from btc_assets.vendors.binance import (
    TRANSIENT_CODES,
    VENDOR,
    WEIGHT_HEADER,
    binance_error_hook,
)
from btc_assets.vendors.errors import (
    MASK,
    VendorConfigError,
    VendorError,
    VendorRefused,
    VendorResponseError,
)
from btc_assets.vendors.hosts import LIVE_BINANCE_FUTURES_URL
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

COMMISSION_RATE = "/fapi/v1/commissionRate"
SERVER_TIME = "/fapi/v1/time"
COMMISSION_RATE_WEIGHT, SERVER_TIME_WEIGHT = 20, 1
KEY_SETTING, SECRET_SETTING = "BINANCE_API_KEY", "BINANCE_API_SECRET"
URL_SETTING = "BINANCE_FUTURES_BASE_URL"
DEFAULT_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS = 5000, 60_000
BPS = Decimal(10_000)  # basis points per unit of rate: 0.0002 -> 2 bps


class BinanceCredentialsMissing(VendorConfigError):
    """No API key or secret: raised before any request is sent."""


class BinanceAuthError(VendorRefused):
    """Binance refused a signed request for a reason of this side's configuration: the
    key, the secret or the clock. Retrying the same request cannot change the answer."""


class BinanceKeyRejected(BinanceAuthError):
    """-2014 (key format) or -2015 (unknown key, IP not allowed, or no permission)."""


class BinanceSignatureRejected(BinanceAuthError):
    """-1022: the signature does not match; the secret is not the key's."""


class BinanceClockSkew(BinanceAuthError):
    """-1021: the timestamp is outside ``recvWindow`` even after resyncing with the server."""


@dataclass(frozen=True)
class CommissionRate:
    """The account's current fees for one symbol, in basis points (negative: a rebate)."""

    symbol: str
    maker_bps: float
    taker_bps: float
    rpi_bps: float | None = None  # the RPI order rate, where Binance reports one


def sign(query: str, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``query`` (the urlencoded parameters) under ``secret``."""
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def signed_query(params: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """``params`` with ``signature`` appended last. The signed text is the query as httpx
    sends it for these values (``urlencode`` of the same items in the same order)."""
    return {**params, "signature": sign(urlencode(list(params.items())), secret)}


def rate_bps(value: Any, field: str, symbol: str) -> float:
    """A decimal rate (JSON string or number) in basis points, multiplied exactly:
    ``"0.00018"`` is 1.8 bps, not the 1.7999999999999998 of binary floats."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad_answer(symbol, f"{field} is {value!r}, not a decimal rate")
    try:
        rate = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise _bad_answer(symbol, f"{field} is {value!r}, not a decimal rate") from None
    if not rate.is_finite():
        raise _bad_answer(symbol, f"{field} is {value!r}, not a finite rate")
    return float(rate * BPS)


def _bad_answer(symbol: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, COMMISSION_RATE, {"symbol": symbol}, status=200,
                               message=message)  # fmt: skip


def _signed_refine(err: VendorError) -> VendorError:
    """Binance's refusals of a signed request as errors naming the setting to fix; the
    others as every Binance client refines them (-1121, 404, 451)."""
    symbol = (err.params or {}).get("symbol", "?")
    if err.code in (-2014, -2015):
        return err.evolve(
            BinanceKeyRejected,
            f"Binance rejected the API key (not shown) for {symbol}: check {KEY_SETTING} "
            "(a USD-M futures key, with this host's IP allowed if the key is IP-restricted)",
        )
    if err.code == -1022:
        return err.evolve(
            BinanceSignatureRejected,
            f"the request for {symbol} was signed with a secret that is not the key's: check "
            f"{SECRET_SETTING} (the secret shown once when the key was created)",
        )
    if err.code == -1021:
        return err.evolve(
            BinanceClockSkew,
            f"the request for {symbol} was stamped outside Binance's recvWindow: this "
            "host's clock is off the server's",
        )
    return binance_error_hook(URL_SETTING)(err)


class BinanceAccountClient(SessionClient):
    """The account's signed USD-M endpoints, with one API key and its secret.

    ``now_ms`` is the clock the timestamps come from (the project's, so tests can skew it);
    ``recv_window_ms`` how late Binance may receive a request (at most 60000).
    """

    def __init__(
        self,
        futures_base_url: str = LIVE_BINANCE_FUTURES_URL,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        now_ms: Callable[[], int] = epoch_ms,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_wait_seconds: float = 120.0,
        weight_limit: int = 2400,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        budget_store: WindowStore | None = None,
    ) -> None:
        if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise VendorConfigError(
                f"binance: recvWindow {recv_window_ms} ms; Binance takes 1..{MAX_RECV_WINDOW_MS}"
            )
        self._key = (api_key or "").strip()
        self._secret = (api_secret or "").strip()
        self.recv_window_ms = recv_window_ms
        self.now_ms = now_ms
        self.offset_ms = 0  # server time minus ours, learnt from /fapi/v1/time on a -1021
        self.budget = WeightBudget(
            weight_limit, 60, header=WEIGHT_HEADER, safety=0.9, clock=clock, sleep=sleep,
            name=budget_name(futures_base_url, "weight"), store=budget_store,
        )  # fmt: skip
        self.http = VendorHttpClient(
            VENDOR, futures_base_url, transport=transport, timeout=timeout,
            max_retries=max_retries, max_wait_seconds=max_wait_seconds,
            headers={"X-MBX-APIKEY": self._key} if self._key else {}, limiter=self.budget,
            sleep=sleep, clock=clock, base_url_setting=URL_SETTING, error_hook=_signed_refine,
            transient_codes=TRANSIENT_CODES,
        )  # fmt: skip

    def __repr__(self) -> str:
        key = MASK if self._key else "(none)"
        secret = MASK if self._secret else "(none)"
        return f"BinanceAccountClient({self.http.base_url!r}, api_key={key}, api_secret={secret})"

    @property
    def has_credentials(self) -> bool:
        return bool(self._key and self._secret)

    def commission_rate(self, symbol: str) -> CommissionRate:
        """The account's current maker and taker rates for ``symbol`` (weight 20)."""
        answer = self._signed_get(COMMISSION_RATE, {"symbol": symbol}, COMMISSION_RATE_WEIGHT)
        if answer.get("symbol", symbol) != symbol:
            raise _bad_answer(symbol, f"answered for symbol {answer.get('symbol')!r}")
        for field in ("makerCommissionRate", "takerCommissionRate"):
            if field not in answer:
                raise _bad_answer(symbol, f"no {field} in the answer (has {sorted(answer)})")
        rpi = answer.get("rpiCommissionRate")  # only in newer answers: optional
        return CommissionRate(
            symbol,
            rate_bps(answer["makerCommissionRate"], "makerCommissionRate", symbol),
            rate_bps(answer["takerCommissionRate"], "takerCommissionRate", symbol),
            None if rpi in (None, "") else rate_bps(rpi, "rpiCommissionRate", symbol),
        )

    def server_time_ms(self) -> int:
        """Binance's clock (``GET /fapi/v1/time``, weight 1, unsigned)."""
        answer = self.http.get_json(SERVER_TIME, {}, weight=SERVER_TIME_WEIGHT, expect=dict)
        server = answer.get("serverTime")
        if isinstance(server, bool) or not isinstance(server, int):
            raise VendorResponseError(
                VENDOR, SERVER_TIME, {}, status=200, message=f"serverTime is {server!r}"
            )
        return server

    def _signed_get(self, path: str, params: Mapping[str, Any], weight: int) -> dict[str, Any]:
        self._require_credentials(path, params)
        for attempt in (1, 2):
            query = {**params, "recvWindow": self.recv_window_ms,
                     "timestamp": self.now_ms() + self.offset_ms}  # fmt: skip
            try:
                return self.http.get_json(  # type: ignore[no-any-return]
                    path, signed_query(query, self._secret), weight=weight, expect=dict
                )
            except BinanceClockSkew as exc:
                if attempt == 2:
                    raise exc.evolve(
                        BinanceClockSkew,
                        f"still outside recvWindow ({self.recv_window_ms} ms) after resyncing "
                        f"with {SERVER_TIME} (offset {self.offset_ms:+d} ms): this host's "
                        "clock is unsteady; check its time sync (NTP)",
                    ) from None
                self._resync(path, params)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _resync(self, path: str, params: Mapping[str, Any]) -> None:
        before = self.now_ms()
        server = self.server_time_ms()
        after = self.now_ms()
        # The server read its clock somewhere in the round trip: its middle is the best guess.
        self.offset_ms = server - (before + after) // 2
        log.warning(
            "%s %s: -1021, the local clock is %+d ms off Binance's; signing again with the "
            "server's time", VENDOR, self.http.describe(path, params), -self.offset_ms,
        )  # fmt: skip

    def _require_credentials(self, path: str, params: Mapping[str, Any]) -> None:
        given = ((KEY_SETTING, self._key), (SECRET_SETTING, self._secret))
        missing = [name for name, value in given if not value]
        if missing:
            raise BinanceCredentialsMissing(
                f"{VENDOR} {self.http.describe(path, params)}: {' and '.join(missing)} not set; "
                "a signed endpoint needs both (nothing was sent)"
            )
