"""The route registry every sandbox vendor module adds to, and the request/response types.

A vendor module (``sandbox/binance.py``, later ``coinglass.py``, ``fred.py`` ...) registers a
:class:`Route` per URL path at import time. The in-process transport and the loopback
server both dispatch through :func:`find_route`, so the two can never drift apart.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from btc_assets.sandbox.universe import Universe

if TYPE_CHECKING:
    from btc_assets.sandbox.faults import Fault

# What the wire layer should do instead of (or before) answering normally.
Action = Literal["timeout", "reset", "connect"]


@dataclass(frozen=True)
class SandboxRequest:
    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names


@dataclass
class SandboxResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    action: Action | None = None
    delay: float = 0.0  # seconds the loopback server really waits before acting

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> SandboxResponse:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls.raw(status, body, headers)

    @classmethod
    def raw(
        cls,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json;charset=UTF-8",
    ) -> SandboxResponse:
        return cls(status, body, {"content-type": content_type, **(headers or {})})


class WindowCounter:
    """A fixed-window usage counter (Binance counts weight per clock minute)."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._window = -1
        self._used = 0

    def _roll(self, now: float) -> None:
        window = int(now // self.window_seconds)
        if window != self._window:
            self._window, self._used = window, 0

    def add(self, now: float, amount: int) -> int:
        self._roll(now)
        self._used += amount
        return self._used

    def used(self, now: float) -> int:
        self._roll(now)
        return self._used

    def seconds_left(self, now: float) -> float:
        return (int(now // self.window_seconds) + 1) * self.window_seconds - now


class SandboxState:
    """What all routes of one sandbox instance share: seed, the instruments it lists,
    clocks, counters, and the vendor plan it models (CoinGlass's 15m history depth)."""

    def __init__(
        self,
        seed: int,
        symbols: Sequence[str] | None,
        now_ms: Callable[[], int],
        clock: Callable[[], float],
        limits: Mapping[str, int],
        coinglass_history_days: int | None = None,
    ) -> None:
        self.seed = seed
        self.universe = Universe(symbols)
        # Every symbol listed on either market (perp and spot names).
        self.symbols = frozenset(self.universe.perp_symbols + self.universe.spot_symbols)
        if coinglass_history_days is not None and coinglass_history_days < 1:
            raise ValueError(f"coinglass_history_days={coinglass_history_days}: expected >= 1")
        self.coinglass_history_days = coinglass_history_days
        self.now_ms = now_ms
        self.clock = clock  # rate-limit windows run on this (seconds), data on now_ms
        self.limits = dict(limits)
        self._counters: dict[str, WindowCounter] = {}
        self._lock = threading.Lock()

    def charge(self, bucket: str, amount: int, window_seconds: float) -> tuple[int, float | None]:
        """Add ``amount`` to ``bucket``; return (used, retry_after or None if allowed).

        A refused request does not count, so a client that waits out the window recovers.
        """
        limit = self.limits.get(bucket)
        with self._lock:
            counter = self._counters.setdefault(bucket, WindowCounter(window_seconds))
            now = self.clock()
            used = counter.used(now)
            if limit is not None and used + amount > limit:
                return used, counter.seconds_left(now)
            return counter.add(now, amount), None

    def used(self, bucket: str, window_seconds: float) -> int:
        with self._lock:
            counter = self._counters.setdefault(bucket, WindowCounter(window_seconds))
            return counter.used(self.clock())


Handler = Callable[[SandboxRequest, SandboxState, "Sequence[Fault]"], SandboxResponse]
FaultRenderer = Callable[["Fault", SandboxRequest, SandboxState], SandboxResponse]


@dataclass(frozen=True)
class Route:
    """One URL path of one vendor.

    ``handler`` answers normally and applies the data faults it understands;
    ``render_fault`` answers HTTP-level faults (429, 418, 451, 5xx, error bodies) in the
    vendor's own error shape.
    """

    vendor: str
    path: str
    handler: Handler
    render_fault: FaultRenderer
    pattern: re.Pattern[str] | None = None  # for paths with a variable part (bot<token>)
    symbol_param: str | None = None  # lets a fault target one symbol
    # The path faults are matched on, when a request stands for another (an archive's
    # X.zip.CHECKSUM answers for X.zip, so one fault governs both).
    fault_path: Callable[[str], str] | None = None


_EXACT: dict[str, Route] = {}
_PATTERNS: list[Route] = []
# Each vendor's usage limits (bucket -> units per window), merged into every new sandbox.
DEFAULT_LIMITS: dict[str, int] = {}


def register(route: Route) -> None:
    if route.pattern is not None:
        _PATTERNS.append(route)
    else:
        _EXACT[route.path] = route


def find_route(path: str) -> Route | None:
    route = _EXACT.get(path)
    if route is not None:
        return route
    return next((r for r in _PATTERNS if r.pattern and r.pattern.fullmatch(path)), None)


def routes() -> list[Route]:
    return [*_EXACT.values(), *_PATTERNS]
