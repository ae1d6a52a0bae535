"""Telegram Bot API ``sendMessage`` in the sandbox, with Telegram's own shapes and refusals.

Serves ``/bot<token>/sendMessage`` (GET query, form or JSON body; the method name is
case-insensitive as on the real API) and answers ``{"ok":true,"result":{Message}}``. Refusals
come as ``{"ok":false,"error_code":N,"description":...}`` with ``error_code`` equal to the HTTP
status: 404 "Not Found" for a malformed token, 401 "Unauthorized" for an unknown one, 400
"Bad Request: chat not found", 400 "group chat was upgraded to a supergroup chat" with
``parameters.migrate_to_chat_id``, 400 for an empty or over-long text or an unknown
``parse_mode``, and past a chat's flood limit HTTP 429 with ``parameters.retry_after``.

What a sandbox accepts and what it delivered live on its :class:`TelegramDesk`::

    desk = telegram_desk(transport)          # or the transport's .state
    desk.tokens.add("42:other-token"); desk.chats["7"] = private_chat(7, "Ann")
    ... send ...
    assert desk.messages[-1].text == "hello"

Limits (bucket -> messages per window, overridable through ``SandboxTransport(limits=...)``):
``telegram-chat`` 20 per 60 s per chat (the documented group limit; the real one is
unpublished) and ``telegram-bot`` 30 per second across chats.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from btc_assets.sandbox import routes
from btc_assets.sandbox.credentials import (
    SANDBOX_MIGRATED_CHAT_ID,
    SANDBOX_TELEGRAM_CHAT_ID,
    SANDBOX_TELEGRAM_TOKEN,
)
from btc_assets.sandbox.faults import Fault
from btc_assets.sandbox.routes import (
    Route,
    SandboxRequest,
    SandboxResponse,
    SandboxState,
    WindowCounter,
)
from btc_assets.vendors.errors import RedactingFilter

# The sandbox's bot: the token has the real "<bot id>:<secret>" shape, so every redaction
# rule that protects a real token is exercised by this one.
CHAT_BUCKET, BOT_BUCKET = "telegram-chat", "telegram-bot"
DEFAULT_LIMITS = {CHAT_BUCKET: 20, BOT_BUCKET: 30}
CHAT_WINDOW_SECONDS, BOT_WINDOW_SECONDS = 60.0, 1.0
MAX_TEXT = 4096  # UTF-16 code units, the way Telegram measures text
PARSE_MODES = frozenset({"HTML", "MarkdownV2", "Markdown"})
PATH_RE = re.compile(r"/bot([^/]*)/(?i:sendMessage)")
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")


def supergroup_chat(chat_id: int, title: str) -> dict[str, Any]:
    return {"id": chat_id, "title": title, "type": "supergroup"}


def private_chat(chat_id: int, first_name: str) -> dict[str, Any]:
    return {"id": chat_id, "first_name": first_name, "type": "private"}


def _default_chats() -> dict[str, dict[str, Any]]:
    channel = {"id": -1009876543210, "title": "btc_assets alerts", "type": "channel",
               "username": "btc_assets_alerts"}  # fmt: skip
    return {
        SANDBOX_TELEGRAM_CHAT_ID: supergroup_chat(int(SANDBOX_TELEGRAM_CHAT_ID), "btc alerts"),
        "@btc_assets_alerts": channel,
    }


@dataclass(frozen=True)
class DeliveredMessage:
    """One message the sandbox accepted, as a test wants to read it back."""

    token: str
    chat_id: int
    message_id: int
    date: int
    text: str
    parse_mode: str | None
    disable_notification: bool


@dataclass
class TelegramDesk:
    """The bot's world in one sandbox: valid tokens, chats (by ``chat_id`` as sent: a number
    or ``@username``), upgraded groups, and every delivered message."""

    tokens: set[str] = field(default_factory=lambda: {SANDBOX_TELEGRAM_TOKEN})
    chats: dict[str, dict[str, Any]] = field(default_factory=_default_chats)
    migrated: dict[str, int] = field(
        default_factory=lambda: {SANDBOX_MIGRATED_CHAT_ID: int(SANDBOX_TELEGRAM_CHAT_ID)}
    )
    messages: list[DeliveredMessage] = field(default_factory=list)
    _counters: dict[int, WindowCounter] = field(default_factory=dict, repr=False)
    _next_id: dict[int, int] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """Delivered texts (to one chat), oldest first."""
        with self._lock:
            return [m.text for m in self.messages if chat_id is None or m.chat_id == int(chat_id)]

    def _deliver(
        self, state: SandboxState, token: str, chat: Mapping[str, Any], params: Mapping[str, str]
    ) -> DeliveredMessage | float:
        """Record the message, or return the seconds to wait if the chat is over its limit."""
        chat_id = int(chat["id"])
        limit = state.limits.get(CHAT_BUCKET)
        with self._lock:
            counter = self._counters.setdefault(chat_id, WindowCounter(CHAT_WINDOW_SECONDS))
            now = state.clock()
            if limit is not None and counter.used(now) >= limit:
                return counter.seconds_left(now)
            counter.add(now, 1)
            self._next_id[chat_id] = self._next_id.get(chat_id, 0) + 1
            message = DeliveredMessage(
                token=token,
                chat_id=chat_id,
                message_id=self._next_id[chat_id],
                date=int(now),
                text=params["text"],
                parse_mode=params.get("parse_mode") or None,
                disable_notification=params.get("disable_notification", "").lower() == "true",
            )
            self.messages.append(message)
            return message


_DESKS: weakref.WeakKeyDictionary[SandboxState, TelegramDesk] = weakref.WeakKeyDictionary()
_DESKS_LOCK = threading.Lock()


def telegram_desk(target: Any) -> TelegramDesk:
    """The desk of a sandbox: pass its ``SandboxState`` or anything with ``.state`` (the
    transport). Kept beside the state rather than on it, so the shared state stays generic."""
    state = target if isinstance(target, SandboxState) else target.state
    with _DESKS_LOCK:
        desk = _DESKS.get(state)
        if desk is None:
            desk = _DESKS[state] = TelegramDesk()
        return desk


def _refusal(
    status: int, description: str, parameters: Mapping[str, Any] | None = None
) -> SandboxResponse:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = dict(parameters)
    return SandboxResponse.json(status, body)


def _too_many(retry_after: float) -> SandboxResponse:
    seconds = max(1, int(retry_after + 0.999))  # Telegram counts whole seconds, rounding up
    return _refusal(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _bot(token: str) -> dict[str, Any]:
    return {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": "btc_assets",
            "username": "btc_assets_sandbox_bot"}  # fmt: skip


def handle(req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> SandboxResponse:
    match = PATH_RE.fullmatch(req.path)
    token = match.group(1) if match else ""
    desk = telegram_desk(state)
    if not _TOKEN_SHAPE.fullmatch(token):
        return _refusal(404, "Not Found")  # what api.telegram.org answers to a garbled token
    if token not in desk.tokens:
        return _refusal(401, "Unauthorized")
    _, wait = state.charge(BOT_BUCKET, 1, BOT_WINDOW_SECONDS)
    if wait is not None:
        return _too_many(wait)
    params = req.params
    chat_key = (params.get("chat_id") or "").strip()
    text = params.get("text") or ""
    parse_mode = params.get("parse_mode") or None
    if not chat_key:
        return _refusal(400, "Bad Request: chat_id is empty")
    if not text.strip():
        return _refusal(400, "Bad Request: message text is empty")
    if _utf16_len(text) > MAX_TEXT:
        return _refusal(400, "Bad Request: message is too long")
    if parse_mode is not None and parse_mode not in PARSE_MODES:
        return _refusal(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
    if chat_key in desk.migrated:
        return _refusal(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": desk.migrated[chat_key]},
        )
    chat = desk.chats.get(chat_key)
    if chat is None:
        return _refusal(400, "Bad Request: chat not found")
    delivered = desk._deliver(state, token, chat, {**params, "text": text})
    if not isinstance(delivered, DeliveredMessage):
        return _too_many(delivered)
    result = {
        "message_id": delivered.message_id,
        "from": _bot(token),
        "chat": dict(chat),
        "date": delivered.date,
        "text": text,
    }
    return SandboxResponse.json(200, {"ok": True, "result": result})


def render_fault(fault: Fault, req: SandboxRequest, state: SandboxState) -> SandboxResponse:
    """HTTP-level faults the Telegram way. A 429 with ``retry_after`` carries it in
    ``parameters`` (no header, as Telegram sends it); without, only the description, which
    is the case the client must survive with its own backoff."""
    if fault.kind == "429":
        if fault.retry_after is None:
            return _refusal(429, "Too Many Requests")
        return _too_many(fault.retry_after)
    if fault.kind in ("500", "503"):  # Telegram's nginx front answers these as HTML
        title = "500 Internal Server Error" if fault.kind == "500" else "503 Service Unavailable"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return SandboxResponse.raw(int(fault.kind), page.encode(), content_type="text/html")
    if fault.kind == "error200":
        code = fault.code if fault.code is not None else 400
        body = {"ok": False, "error_code": code, "description": fault.msg or "Bad Request"}
        return SandboxResponse.json(200, body)
    status = int(fault.kind)  # 418 / 451: not Telegram's, but in its error shape
    return _refusal(status, fault.msg or f"Error {status}")


routes.register(
    Route(
        "telegram",
        "/bot<token>/sendMessage",
        handle,
        render_fault,
        pattern=PATH_RE,
        symbol_param="chat_id",  # a fault plan's "symbol" targets one chat
    )
)
routes.DEFAULT_LIMITS.update(DEFAULT_LIMITS)
# The loopback server's access log prints request paths; the token is in this one.
logging.getLogger("btc_assets.sandbox").addFilter(RedactingFilter())
