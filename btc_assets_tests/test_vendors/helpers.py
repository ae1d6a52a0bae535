"""What the vendor tests share: a fake clock, scripted answers, a vendor stuck on one page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from btc_assets.sandbox.transport import SandboxTransport


class FakeClock:
    """Time that only moves when someone sleeps: backoff costs nothing, waits are exact."""

    def __init__(self, start: float = 1_000_020.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Reply = httpx.Response | Exception


def scripted(replies: list[Reply]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with ``replies`` in order (the last one repeats)."""
    seen: list[httpx.Request] = []
    feed: Iterator[Reply] = iter(replies)
    last: list[Reply] = [replies[-1]]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = next(feed, last[0])
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(handler), seen


def stuck_on_first_page(
    sandbox: SandboxTransport, spin_limit: int = 20
) -> tuple[httpx.MockTransport, list[str]]:
    """A vendor that ignores the cursor: every request to a path gets the first real page
    the sandbox served there. Past ``spin_limit`` requests it raises, so a pager that fails
    to refuse the repeat fails its test instead of hanging it."""
    first: dict[str, tuple[int, bytes, dict[str, str]]] = {}
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if len(asked) > spin_limit:
            raise RuntimeError(f"pager spun: {len(asked)} requests for the same page")
        if request.url.path not in first:
            real = sandbox.handle_request(request)
            real.read()
            first[request.url.path] = (real.status_code, real.content, dict(real.headers))
        status, content, headers = first[request.url.path]
        return httpx.Response(status, content=content, headers=headers)

    return httpx.MockTransport(handler), asked
