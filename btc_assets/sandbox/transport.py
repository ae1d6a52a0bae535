"""The in-process sandbox: an ``httpx`` transport that answers any host from the route registry.

    client = httpx.Client(transport=SandboxTransport(seed=7, faults='[{"kind": "429"}]'))

Every request is dispatched on its URL path to the vendor route modules, through the fault
plan, and recorded in ``transport.requests`` so tests can count calls at the wire.
With ``request_log`` each request is also appended to a file as one line
``epoch_seconds host path pid``, so a harness can measure request rates per host across every
run process (each line is one ``O_APPEND`` write: concurrent writers interleave whole lines).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx

from btc_assets.clock import epoch_ms
from btc_assets.sandbox import alphavantage as _alphavantage  # noqa: F401  (registers routes)
from btc_assets.sandbox import binance as _binance  # noqa: F401  (registers its routes)
from btc_assets.sandbox import binance_account as _account  # noqa: F401  (registers its routes)
from btc_assets.sandbox import binance_archive as _archive  # noqa: F401  (registers its routes)
from btc_assets.sandbox import binance_exchange_info as _exchange_info  # noqa: F401  (same)
from btc_assets.sandbox import coinapi as _coinapi  # noqa: F401  (registers its routes)
from btc_assets.sandbox import coinglass as _coinglass  # noqa: F401  (registers its routes)
from btc_assets.sandbox import coinglass_heatmap as _heatmap  # noqa: F401  (registers routes)
from btc_assets.sandbox import coinglass_whales as _whales  # noqa: F401  (registers routes)
from btc_assets.sandbox import cryptoquant as _cryptoquant  # noqa: F401  (registers routes)
from btc_assets.sandbox import fred as _fred  # noqa: F401  (registers its routes)
from btc_assets.sandbox import telegram as _telegram  # noqa: F401  (registers its routes)
from btc_assets.sandbox.faults import (
    ARCHIVE_KINDS,
    BODY_KINDS,
    DATA_KINDS,
    HTTP_KINDS,
    NETWORK_KINDS,
    Fault,
    FaultPlan,
)
from btc_assets.sandbox.routes import (
    DEFAULT_LIMITS,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    find_route,
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: Mapping[str, str]
    status: int
    faults: tuple[str, ...]  # kinds of the faults that fired


class SandboxTransport(httpx.BaseTransport):
    """Answers the vendors' URL paths from the synthetic market, with injected faults.

    ``symbols`` lists a few instruments of ``sandbox.universe`` (perp or spot names; None:
    all of them); any other symbol is refused the vendor's way.
    ``now_ms`` is the data clock (what history exists, which candle is still forming);
    ``clock`` (seconds) drives the rate-limit windows, so a test can make both fake.
    ``limits`` overrides usage limits per bucket, e.g. ``{"binance-spot": 20}``.
    ``coinglass_history_days`` models the CoinGlass plan's 15m history depth (None: no
    limit; see ``sandbox.coinglass``). ``latency_seconds`` is waited (through ``sleep``)
    before every in-process request is answered, like a network round trip.
    """

    def __init__(
        self,
        seed: int = 7,
        faults: FaultPlan | str | Sequence[Fault] | None = None,
        symbols: Sequence[str] | None = None,
        now_ms: Callable[[], int] | int | None = None,
        clock: Callable[[], float] = time.time,
        limits: Mapping[str, int] | None = None,
        coinglass_history_days: int | None = None,
        latency_seconds: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        request_log: str | os.PathLike[str] | None = None,
    ) -> None:
        if latency_seconds < 0:
            raise ValueError(f"latency_seconds={latency_seconds}: expected >= 0")
        self.faults = FaultPlan.coerce(faults)
        if isinstance(now_ms, int):
            fixed = now_ms
            now_ms = lambda: fixed  # noqa: E731
        self.state = SandboxState(
            seed, symbols, now_ms or epoch_ms, clock, {**DEFAULT_LIMITS, **(limits or {})},
            coinglass_history_days=coinglass_history_days,
        )  # fmt: skip
        self.latency_seconds = latency_seconds
        self._sleep = sleep
        self._clock = clock
        self.request_log = None if request_log is None else os.fspath(request_log)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def dispatch(
        self, method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]
    ) -> SandboxResponse:
        """Answer one request; shared by this transport and the loopback server."""
        route = find_route(path)
        if route is None:
            response = _not_found()
            self._record(method, path, params, response.status, [])
            return response
        symbol = params.get(route.symbol_param) if route.symbol_param else None
        fired = self.faults.take(route.fault_path(path) if route.fault_path else path, symbol)
        request = SandboxRequest(method, path, params, {k.lower(): v for k, v in headers.items()})
        http_fault = next((f for f in fired if f.kind in HTTP_KINDS), None)
        if http_fault is not None and http_fault.kind == "404":
            response = _not_found()
        elif http_fault is not None:
            response = route.render_fault(http_fault, request, self.state)
        else:
            data_faults = [f for f in fired if f.kind in DATA_KINDS | ARCHIVE_KINDS]
            response = route.handler(request, self.state, data_faults)
        if any(f.kind in BODY_KINDS for f in fired):
            response.body = response.body[: max(1, len(response.body) // 2)]
        network = next((f for f in fired if f.kind in NETWORK_KINDS), None)
        if network is not None:
            response.action = network.kind  # type: ignore[assignment]
            response.delay = network.delay
        self._record(method, path, params, response.status, fired)
        return response

    def _record(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        status: int,
        fired: Sequence[Fault],
    ) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(method, path, dict(params), status, tuple(f.kind for f in fired))
            )

    def count(self, path: str | None = None) -> int:
        """Requests seen so far (to ``path``)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def _log_request(self, log: str, host: str, path: str) -> None:
        line = f"{self._clock():.6f} {host} {path} {os.getpid()}\n".encode()
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of a short line: never split by another writer
        finally:
            os.close(fd)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.request_log is not None:
            self._log_request(self.request_log, request.url.host, request.url.path)
        if self.latency_seconds:
            self._sleep(self.latency_seconds)
        params = dict(request.url.params.multi_items())
        if request.method != "GET" and request.content:
            params.update(_form_or_json(request.headers.get("content-type", ""), request.content))
        response = self.dispatch(request.method, request.url.path, params, dict(request.headers))
        if response.action == "timeout":
            raise httpx.ReadTimeout("sandbox: injected read timeout", request=request)
        if response.action == "reset":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if response.action == "connect":
            raise httpx.ConnectError("sandbox: injected connection refused", request=request)
        return httpx.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )


def _not_found() -> SandboxResponse:
    """What a host that does not serve a path answers: its web server's page, not JSON."""
    body = b"<html><body><h1>404 Not Found</h1></body></html>"
    return SandboxResponse.raw(404, body, content_type="text/html")


def _form_or_json(content_type: str, body: bytes) -> dict[str, str]:
    """POST bodies (Telegram sends JSON or forms) flattened into params."""
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            return {}
        if isinstance(data, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
