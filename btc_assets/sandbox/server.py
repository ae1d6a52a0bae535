"""The sandbox on a real loopback socket, for faults that only exist on a wire.

    with serve_sandbox(seed=7, faults='[{"kind": "timeout", "delay": 1}]') as base_url:
        client = BinanceClient(spot_base_url=base_url, futures_base_url=base_url)

Same routes and fault plan as :class:`SandboxTransport`; here a ``timeout`` fault really
stalls for ``delay`` seconds and ``reset``/``connect`` close the socket with a TCP RST and
no response, so the client's own timeout and error handling are what is tested.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from btc_assets.sandbox.faults import Fault, FaultPlan
from btc_assets.sandbox.transport import SandboxTransport, _form_or_json

log = logging.getLogger("btc_assets.sandbox")


class _Server(ThreadingHTTPServer):
    # A handler stalled by a timeout fault must not hold up shutdown.
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


def _handler_class(app: SandboxTransport) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive like real vendor front-ends, so faults also hit reused connections.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            length = int(self.headers.get("content-length") or 0)
            if length:
                body = self.rfile.read(length)
                params.update(_form_or_json(self.headers.get("content-type", ""), body))
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = app.dispatch(method, url.path, params, headers)
            if response.action in ("reset", "connect"):
                # linger 0 makes close() send RST: the client sees a reset, not a clean EOF.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
                return
            if response.action == "timeout":
                time.sleep(response.delay)
            try:
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
            except OSError:  # the client gave up waiting (timeout fault): nothing to tell it
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            log.debug("sandbox %s - %s", self.address_string(), format % args)

    return Handler


@contextmanager
def serve_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    transport: SandboxTransport | None = None,
    seed: int = 7,
    faults: FaultPlan | str | Sequence[Fault] | None = None,
    symbols: Sequence[str] | None = None,
    now_ms: Callable[[], int] | int | None = None,
    clock: Callable[[], float] = time.time,
    limits: Mapping[str, int] | None = None,
) -> Iterator[str]:
    """Serve the sandbox on ``host:port`` (0 = a free port); yield the base URL.

    Pass ``transport`` to share one instance (and its request log and fault plan) with a
    test; otherwise one is built from the other arguments.
    """
    app = transport or SandboxTransport(
        seed=seed, faults=faults, symbols=symbols, now_ms=now_ms, clock=clock, limits=limits
    )
    server = _Server((host, port), _handler_class(app))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
