"""The sandbox's kline websocket on a real loopback socket (``websockets``' sync server).

    with serve_sandbox_stream(SandboxStream(seed=7)) as (spot_url, futures_url):
        collector connects to f"{futures_url}/stream?streams=btcusdt@kline_1m"

``futures_url`` ends in ``/futures/market`` (the routed endpoint); ``/futures/stream``
is the unrouted one, which stays silent. The server pings every ``ping_interval`` seconds
and drops a client that does not answer within ``ping_timeout``, as Binance does; a
``drop`` fault resets the TCP connection without a close frame, ``close`` sends 1001.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.server import ServerConnection, serve

from btc_assets.sandbox.binance_stream import SandboxStream, ServerClosed, StreamDropped

log = logging.getLogger("btc_assets.sandbox")


@contextmanager
def serve_sandbox_stream(
    hub: SandboxStream,
    host: str = "127.0.0.1",
    port: int = 0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
) -> Iterator[tuple[str, str]]:
    """Serve ``hub``'s feed; yield the spot and USD-M base URLs."""

    def handler(connection: ServerConnection) -> None:
        request = connection.request
        path = request.path if request is not None else "/"
        feed = hub(f"ws://{host}{path}")
        try:
            while True:
                try:
                    message = feed.recv(timeout=0.2)
                except TimeoutError:
                    # A silent feed (stalled, unrouted) never sends, so it must look for
                    # itself whether the client left or the server is shutting down.
                    if connection.state is not State.OPEN:
                        raise ConnectionClosed(None, None) from None
                    continue
                connection.send(message)
        except StreamDropped:
            feed.log.ended = "dropped"
            raw = connection.socket
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()  # RST: the client sees a reset, not a close frame
        except ServerClosed as exc:
            feed.log.ended = f"server closed: {exc}"
            connection.close(1001, str(exc))
        except ConnectionClosed as exc:
            feed.log.ended = f"client gone: {exc}"
        finally:
            feed.close()

    server = serve(handler, host, port, ping_interval=ping_interval, ping_timeout=ping_timeout)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bound = server.socket.getsockname()[1]
    try:
        yield f"ws://{host}:{bound}/spot", f"ws://{host}:{bound}/futures/market"
    finally:
        server.shutdown()
        thread.join(timeout=5)
