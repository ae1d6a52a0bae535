"""Telegram Bot API ``sendMessage``: how the pipeline tells people something happened.

A plain client (no Dagster) on the shared :class:`VendorHttpClient`: one POST of JSON to
``/bot<token>/sendMessage`` per message, retried like every vendor call. A 429 waits what
Telegram asks (``parameters.retry_after`` in the body, or a ``Retry-After`` header; the
longer if both), within ``max_wait_seconds``. Telegram's refusals (``{"ok":false,...}``) become
errors that say what to change: :class:`TelegramUnauthorized` (the token),
:class:`TelegramChatNotFound` (the chat), :class:`TelegramChatMigrated` (the new chat id),
:class:`TelegramForbidden` (the bot's membership), else :class:`TelegramError` with
Telegram's description. A missing or malformed token or chat raises
:class:`TelegramConfigMissing` before any request.

The token travels in the URL path, so it is masked everywhere the URL could surface: our
logs and errors (``/bot***/``), httpx's own request log (a filter in ``vendors.http``), and
this client's ``repr``. The chat id is a secret too (it says where the alerts go): it travels
in the JSON body, and is masked in every log line, error and ``repr`` (``chat_id=***``), in
Telegram's own descriptions, and in the hints, which name ``TELEGRAM_CHAT_ID`` instead; a
migrated group's new id is kept on the error (``migrate_to_chat_id``), not shown.

Retries make delivery at-least-once: a timeout after Telegram accepted a message sends it
again, which for an alert beats losing it.

Text over Telegram's 4096-character limit (counted in UTF-16 units, as Telegram counts) is
cut and ends with :data:`TRUNCATION_MARKER`; a cut message goes as plain text, because a
cut through HTML or Markdown markup would make Telegram refuse the whole message.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from btc_assets.vendors.errors import MASK, VendorConfigError, VendorError, VendorResponseError
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget

log = logging.getLogger("btc_assets.vendors")

VENDOR = "telegram"
TOKEN_SETTING, CHAT_SETTING = "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID"
MAX_MESSAGE_LENGTH = 4096  # UTF-16 code units
TRUNCATION_MARKER = "\n… [truncated]"
PARSE_MODES = ("HTML", "MarkdownV2", "Markdown")
# "<bot id>:<secret>" as @BotFather issues it; the shape the shared redaction recognises.
_TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")
_CHAT_SHAPE = re.compile(r"-?\d+|@[A-Za-z][A-Za-z0-9_]{3,}")


class TelegramError(VendorError):
    """Telegram refused the message (``ok: false``); ``str()`` carries its description.

    ``repr`` is ``str`` too: the positional ``args`` (kept for pickling) hold ``details``,
    where a migrated group's new chat id sits."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TelegramConfigMissing(TelegramError, VendorConfigError):
    """No usable bot token or chat id: raised before any request is sent."""


class TelegramUnauthorized(TelegramError):
    """The bot token was rejected (401 "Unauthorized", or 404 for a garbled token)."""


class TelegramChatNotFound(TelegramError):
    """The chat id is unknown to the bot (400 "chat not found")."""


class TelegramChatMigrated(TelegramError):
    """The group became a supergroup with a new id; ``migrate_to_chat_id`` is the one to use."""

    @property
    def migrate_to_chat_id(self) -> int | None:
        value = self.details.get("migrate_to_chat_id")
        return int(value) if value is not None else None


class TelegramForbidden(TelegramError):
    """403: the bot was blocked, removed from the chat, or may not post in the channel."""


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int = MAX_MESSAGE_LENGTH) -> tuple[str, bool]:
    """``text`` cut to ``limit`` UTF-16 units with :data:`TRUNCATION_MARKER` at the end, and
    whether it was cut. Never splits a surrogate pair (an emoji is two units)."""
    if utf16_length(text) <= limit:
        return text, False
    budget = limit - utf16_length(TRUNCATION_MARKER)
    used = 0
    for i, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            return text[:i] + TRUNCATION_MARKER, True
    return text, False  # unreachable: the text was longer than the limit


def _refine(err: VendorError) -> VendorError:
    """Telegram's refusals as errors that say what to change (final errors only). The hints
    name the setting, never the chat id."""
    if type(err) is not VendorError:  # rate limits and outages keep their classes
        return err
    text = err.message.lower()
    if err.status in (401, 404) or err.code in (401, 404):
        return err.evolve(
            TelegramUnauthorized,
            f"Telegram rejected the bot token (not shown); check {TOKEN_SETTING} against the "
            "token @BotFather gave the bot ('<bot id>:<secret>')",
        )
    if err.details.get("migrate_to_chat_id") is not None:
        return err.evolve(
            TelegramChatMigrated,
            f"the group in {CHAT_SETTING} was upgraded to a supergroup, which has a new id; "
            f"set {CHAT_SETTING} to it (Telegram's migrate_to_chat_id, kept on this error and "
            "not shown, like every chat id; getUpdates lists it too)",
        )
    if "chat not found" in text:
        return err.evolve(
            TelegramChatNotFound,
            f"the chat in {CHAT_SETTING} (not shown) is unknown to this bot; check it, and "
            "that the bot was added to the group or channel (a user must have started a chat "
            "with it)",
        )
    if err.status == 403 or err.code == 403:
        return err.evolve(
            TelegramForbidden,
            f"the bot may not post to the chat in {CHAT_SETTING} (blocked, removed, or not an "
            "admin of the channel); check the bot's membership and the setting",
        )
    return err.evolve(TelegramError)


class TelegramClient(SessionClient):
    """Sends messages to one chat as one bot.

    ``messages_per_minute`` is a client-side budget per chat (Telegram allows about 20 a
    minute into a group and publishes no exact figure), so a burst of alerts is spaced out
    instead of drawing flood-control waits.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        chat_id: str | int | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait_seconds: float = 120.0,
        messages_per_minute: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._token = (token or "").strip()
        self.chat_id = str(chat_id if chat_id is not None else "").strip()
        self.budget = WeightBudget(
            messages_per_minute, 60, safety=1.0, clock=clock, sleep=sleep,
            name="telegram messages/min",
        )  # fmt: skip
        self.http = VendorHttpClient(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap, max_wait_seconds=max_wait_seconds,
            limiter=self.budget, sleep=sleep, base_url_setting="TELEGRAM_BASE_URL",
            error_hook=_refine, rng=rng, secret_params=("chat_id",),
        )  # fmt: skip

    def __repr__(self) -> str:
        token = MASK if self._token else "(none)"
        chat = MASK if self.chat_id else "(none)"
        return f"TelegramClient({self.http.base_url!r}, token={token}, chat_id={chat})"

    def send_message(
        self, text: str, *, parse_mode: str | None = None, disable_notification: bool = False
    ) -> dict[str, Any]:
        """Send ``text`` to the chat; return Telegram's Message (``message_id``, ``date``,
        ``chat``, ``text``). ``parse_mode``: ``HTML``, ``MarkdownV2`` or ``Markdown``."""
        path = self._path()
        if not text or not text.strip():
            raise ValueError("telegram: the message text is empty (Telegram refuses it)")
        if parse_mode is not None and parse_mode not in PARSE_MODES:
            raise ValueError(f"telegram: parse_mode {parse_mode!r}; use one of {PARSE_MODES}")
        sent, cut = truncate(text)
        if cut:
            log.warning(
                "telegram: message of %d characters cut to Telegram's limit of %d%s",
                utf16_length(text), MAX_MESSAGE_LENGTH,
                f"; sent as plain text, not {parse_mode}" if parse_mode else "",
            )  # fmt: skip
            parse_mode = None
        body: dict[str, Any] = {"chat_id": _chat_value(self.chat_id), "text": sent}
        if parse_mode is not None:
            body["parse_mode"] = parse_mode
        if disable_notification:
            body["disable_notification"] = True
        answer = self.http.post_json(path, body, expect=dict)
        result = answer.get("result")
        if answer.get("ok") is not True:  # an ok:false inside HTTP 200: not retried
            raise _refine(self._refusal(answer, body))
        if not isinstance(result, dict) or "message_id" not in result:
            keys = sorted(result) if isinstance(result, dict) else type(result).__name__
            raise VendorResponseError(
                VENDOR, _shown_path(), self._shown(body), "POST", 200,
                message=f"'result' is not a Message (has {keys})",
            )  # fmt: skip
        return result

    def _path(self) -> str:
        """The method's path, after checking the settings (nothing is sent if they are bad)."""
        problems = []
        if not self._token:
            problems.append(f"no bot token: set {TOKEN_SETTING}")
        elif not _TOKEN_SHAPE.fullmatch(self._token):
            problems.append(f"{TOKEN_SETTING} is not a bot token of the form '<bot id>:<secret>'")
        if not self.chat_id:
            problems.append(f"no chat: set {CHAT_SETTING}")
        elif not _CHAT_SHAPE.fullmatch(self.chat_id):
            problems.append(
                f"{CHAT_SETTING} (not shown, a secret) is neither a numeric chat id such as "
                "-1001234567890 nor @channelname"
            )
        if problems:
            raise TelegramConfigMissing(
                VENDOR, _shown_path(), {"chat_id": MASK if self.chat_id else ""}, "POST",
                message="; ".join(problems), hint="nothing was sent",
            )  # fmt: skip
        return f"/bot{self._token}/sendMessage"

    def _shown(self, body: dict[str, Any]) -> dict[str, str]:
        """The body as errors show it: secrets masked, a long text clipped."""
        clipped = {k: v if len(str(v)) <= 80 else f"{str(v)[:80]}..." for k, v in body.items()}
        return self.http.shown_params(clipped)

    def _refusal(self, answer: dict[str, Any], body: dict[str, Any]) -> VendorError:
        params = answer.get("parameters")
        return VendorError(
            VENDOR, _shown_path(), self._shown(body), "POST", 200, answer.get("error_code"),
            self.http.redact(str(answer.get("description") or "ok is not true")),
            details=params if isinstance(params, dict) else None,
        )  # fmt: skip


def _shown_path() -> str:
    return f"/bot{MASK}/sendMessage"


def _chat_value(chat_id: str) -> int | str:
    """Numeric ids go as JSON numbers (Telegram takes both); ``@channel`` stays text."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
