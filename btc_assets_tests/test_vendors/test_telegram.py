"""TelegramClient against the sandbox's sendMessage over a real loopback socket: delivery,
flood control (429 + retry_after), Telegram's refusals, settings checked before sending,
truncation, and the token kept out of every log line, error and repr."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from btc_assets.sandbox.credentials import (
    SANDBOX_MIGRATED_CHAT_ID,
    SANDBOX_TELEGRAM_CHAT_ID,
    SANDBOX_TELEGRAM_TOKEN,
)
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.telegram import telegram_desk
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.errors import VendorRateLimited, VendorResponseError
from btc_assets.vendors.telegram import (
    MAX_MESSAGE_LENGTH,
    TRUNCATION_MARKER,
    TelegramChatMigrated,
    TelegramChatNotFound,
    TelegramClient,
    TelegramConfigMissing,
    TelegramError,
    TelegramForbidden,
    TelegramUnauthorized,
    truncate,
    utf16_length,
)

TOKEN, CHAT = SANDBOX_TELEGRAM_TOKEN, SANDBOX_TELEGRAM_CHAT_ID
SECRET = TOKEN.split(":", 1)[1]  # the part that must never be seen
PATH = f"/bot{TOKEN}/sendMessage"


class FakeClock:
    """Shared by the sandbox's rate windows and the client's sleep: a wait costs nothing
    and is recorded exactly."""

    def __init__(self, start: float = 1_000_050.0) -> None:  # 30 s before a minute ends
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@contextmanager
def served(
    faults: list[dict[str, Any]] | None = None,
    token: str | None = TOKEN,
    chat: str | int | None = CHAT,
    limits: dict[str, int] | None = None,
    **client_kw: Any,
) -> Iterator[tuple[TelegramClient, SandboxTransport, FakeClock]]:
    clock = FakeClock()
    sandbox = SandboxTransport(faults=json.dumps(faults or []), clock=clock.time, limits=limits)
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {"timeout": 2.0, "sleep": clock.sleep, "clock": clock.time}
        client = TelegramClient(url, token, chat, **{**options, **client_kw})
        try:
            yield client, sandbox, clock
        finally:
            client.close()


def statuses(sandbox: SandboxTransport) -> list[int]:
    return [r.status for r in sandbox.requests]


def refused(
    cls: type[Exception], faults: list[dict[str, Any]] | None = None, **kw: Any
) -> tuple[Any, SandboxTransport, FakeClock, TelegramClient]:
    """Send one message that must fail with ``cls``: (the error, sandbox, clock, client)."""
    with served(faults, **kw) as (client, sandbox, clock), pytest.raises(cls) as err:
        client.send_message("x")
    return err.value, sandbox, clock, client


# --- delivery ---------------------------------------------------------------------------


def test_message_is_delivered_with_telegrams_shape() -> None:
    with served() as (client, sandbox, clock):
        message = client.send_message(
            "<b>BTC</b> gap on 2024-03-02", parse_mode="HTML", disable_notification=True
        )
    assert message["message_id"] == 1 and message["text"] == "<b>BTC</b> gap on 2024-03-02"
    assert message["chat"] == {"id": int(CHAT), "title": "btc alerts", "type": "supergroup"}
    assert message["from"]["is_bot"] is True and message["date"] == int(clock.now)
    (delivered,) = telegram_desk(sandbox).messages
    assert (delivered.chat_id, delivered.parse_mode, delivered.disable_notification) == (
        int(CHAT), "HTML", True,
    )  # fmt: skip
    (request,) = sandbox.requests
    assert (request.method, request.path, request.status) == ("POST", PATH, 200)
    assert client.request_count == 1 and clock.sleeps == []


def test_channel_username_and_message_ids_per_chat() -> None:
    with served(chat="@btc_assets_alerts") as (client, sandbox, _):
        ids = [client.send_message(f"m{i}")["message_id"] for i in range(3)]
    assert ids == [1, 2, 3]
    assert telegram_desk(sandbox).texts(-1009876543210) == ["m0", "m1", "m2"]


def test_sandbox_takes_get_and_forms_and_any_case_of_the_method() -> None:
    sandbox = SandboxTransport()
    with httpx.Client(transport=sandbox, base_url="http://tg.invalid") as http:
        got = http.get(f"/bot{TOKEN}/SENDMESSAGE", params={"chat_id": CHAT, "text": "a"})
        form = http.post(PATH, data={"chat_id": CHAT, "text": "b"})
        garbled = http.post(f"/bot{SECRET}/sendMessage", json={"chat_id": CHAT, "text": "c"})
        long = http.post(PATH, json={"chat_id": CHAT, "text": "x" * (MAX_MESSAGE_LENGTH + 1)})
    assert got.json()["ok"] is True and form.json()["result"]["text"] == "b"
    assert garbled.status_code == 404 and garbled.json()["description"] == "Not Found"
    assert long.json() == {
        "ok": False, "error_code": 400, "description": "Bad Request: message is too long",
    }  # fmt: skip
    assert telegram_desk(sandbox).texts() == ["a", "b"]


# --- flood control ----------------------------------------------------------------------


def test_429_waits_exactly_retry_after_then_delivers() -> None:
    # Two messages a minute per chat: the third is refused until the window (30 s) ends.
    with served(limits={"telegram-chat": 2}) as (client, sandbox, clock):
        for i in range(3):
            client.send_message(f"alert {i}")
    assert statuses(sandbox) == [200, 200, 429, 200]
    assert clock.sleeps == [30.0]  # parameters.retry_after, not a guessed backoff
    assert telegram_desk(sandbox).texts() == ["alert 0", "alert 1", "alert 2"]


def test_retry_after_from_a_fault_and_the_sandboxs_429_body() -> None:
    with served([{"kind": "429", "path": "/bot*", "retry_after": 7}]) as (client, sandbox, clock):
        client.send_message("after the flood")
    assert clock.sleeps == [7.0] and statuses(sandbox) == [429, 200]
    sandbox = SandboxTransport(limits={"telegram-chat": 0})
    with httpx.Client(transport=sandbox) as http:
        body = http.post(f"http://tg.invalid{PATH}", json={"chat_id": CHAT, "text": "x"}).json()
    assert body["error_code"] == 429 and body["parameters"]["retry_after"] >= 1
    assert (
        body["description"] == f"Too Many Requests: retry after {body['parameters']['retry_after']}"
    )


def test_429_without_parameters_falls_back_to_backoff() -> None:
    with served([{"kind": "429", "path": "/bot*"}], backoff_base=0.5) as (client, _, clock):
        client.send_message("x")
    assert len(clock.sleeps) == 1 and 0.25 <= clock.sleeps[0] <= 0.5


def test_header_and_body_both_name_a_wait_the_longer_wins() -> None:
    clock = FakeClock()
    replies = iter([
        httpx.Response(429, headers={"Retry-After": "3"}, json={
            "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5",
            "parameters": {"retry_after": 5}}),
        httpx.Response(200, json={"ok": True, "result": {"message_id": 9, "text": "x"}}),
    ])  # fmt: skip
    transport = httpx.MockTransport(lambda request: next(replies))
    client = TelegramClient("https://api.telegram.org", TOKEN, CHAT, transport=transport,
                            sleep=clock.sleep, clock=clock.time)  # fmt: skip
    assert client.send_message("x")["message_id"] == 9
    assert clock.sleeps == [5.0]


def test_flood_wait_longer_than_max_retry_after_fails_at_once() -> None:
    fault = [{"kind": "429", "path": "/bot*", "retry_after": 300}]
    err, sandbox, clock, _ = refused(VendorRateLimited, fault, max_wait_seconds=60)
    assert "300 s" in str(err) and clock.sleeps == [] and statuses(sandbox) == [429]


def test_outage_is_retried_then_delivered() -> None:
    with served([{"kind": "500", "path": "/bot*"}]) as (client, sandbox, clock):
        client.send_message("still here")
    assert statuses(sandbox) == [500, 200] and len(clock.sleeps) == 1
    assert telegram_desk(sandbox).texts() == ["still here"]


# --- Telegram's refusals ----------------------------------------------------------------


def test_chat_not_found_names_the_chat_setting_not_the_chat_and_is_not_retried() -> None:
    err, sandbox, _, _ = refused(TelegramChatNotFound, chat="-100999")
    text = str(err)
    assert "Bad Request: chat not found" in text and "TELEGRAM_CHAT_ID" in text
    assert "-100999" not in text + repr(err) and statuses(sandbox) == [400]
    assert telegram_desk(sandbox).messages == []


def test_upgraded_group_keeps_the_new_chat_id_on_the_error_not_in_its_text() -> None:
    err, sandbox, _, _ = refused(TelegramChatMigrated, chat=SANDBOX_MIGRATED_CHAT_ID)
    assert err.migrate_to_chat_id == int(CHAT)
    assert "set TELEGRAM_CHAT_ID to it" in str(err) and statuses(sandbox) == [400]
    for chat_id in (CHAT, SANDBOX_MIGRATED_CHAT_ID):  # the new id and the old one
        assert chat_id not in str(err) + repr(err)
    again = pickle.loads(pickle.dumps(err))  # Dagster may ship it across processes
    assert type(again) is TelegramChatMigrated and again.migrate_to_chat_id == int(CHAT)
    assert str(again) == str(err)


def test_bad_token_is_unauthorized_names_the_setting_never_the_token() -> None:
    bad = "987654321:not-the-right-secret"
    err, sandbox, _, client = refused(TelegramUnauthorized, token=bad)
    text = str(err)
    assert "HTTP 401" in text and "TELEGRAM_BOT_TOKEN" in text and "/bot***/" in text
    assert "not-the-right-secret" not in text + repr(err) + repr(client)
    assert statuses(sandbox) == [401]


def test_blocked_bot_and_error_in_http_200_keep_telegrams_description() -> None:
    blocked = {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    answer = httpx.MockTransport(lambda request: httpx.Response(403, json=blocked))
    client = TelegramClient("https://api.telegram.org", TOKEN, "42", transport=answer)
    with pytest.raises(TelegramForbidden, match="bot was blocked by the user"):
        client.send_message("x")
    fault = [{"kind": "error200", "path": "/bot*", "code": 400, "msg": "Bad Request: odd"}]
    err, sandbox, _, _ = refused(TelegramError, fault)
    assert "Bad Request: odd" in str(err)
    assert err.status == 200 and statuses(sandbox) == [200]  # not retried


@pytest.mark.parametrize(
    ("token", "chat", "setting"),
    [
        (None, CHAT, "TELEGRAM_BOT_TOKEN"),
        ("  ", CHAT, "TELEGRAM_BOT_TOKEN"),
        ("no-colon-token", CHAT, "TELEGRAM_BOT_TOKEN"),
        (TOKEN, None, "TELEGRAM_CHAT_ID"),
        (TOKEN, "", "TELEGRAM_CHAT_ID"),
        (TOKEN, "my group", "TELEGRAM_CHAT_ID"),
    ],
)
def test_missing_settings_fail_before_any_request(
    token: str | None, chat: str | None, setting: str
) -> None:
    err, sandbox, _, _ = refused(TelegramConfigMissing, token=token, chat=chat)
    assert setting in str(err) and "nothing was sent" in str(err)
    assert sandbox.requests == [] and "no-colon-token" not in str(err)


def test_bad_arguments_fail_before_any_request() -> None:
    with served() as (client, sandbox, _):
        with pytest.raises(ValueError, match="empty"):
            client.send_message("   ")
        with pytest.raises(ValueError, match="parse_mode"):
            client.send_message("x", parse_mode="html")
    assert sandbox.requests == []


# --- truncation -------------------------------------------------------------------------


def test_long_message_is_cut_with_a_marker_and_sent_as_plain_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="btc_assets.vendors")
    with served() as (client, sandbox, _):
        client.send_message("<b>x</b>" + "y" * 6000, parse_mode="HTML")
    (delivered,) = telegram_desk(sandbox).messages
    assert delivered.text.endswith(TRUNCATION_MARKER) and delivered.text.startswith("<b>x</b>")
    assert utf16_length(delivered.text) == MAX_MESSAGE_LENGTH and delivered.parse_mode is None
    assert "6008 characters cut" in caplog.text and "plain text" in caplog.text


def test_truncate_counts_utf16_and_never_splits_an_emoji() -> None:
    assert truncate("short") == ("short", False)
    exact = "a" * MAX_MESSAGE_LENGTH
    assert truncate(exact) == (exact, False)
    cut, was_cut = truncate("🚨" * 3000)  # 6000 UTF-16 units, 3000 characters
    assert was_cut and utf16_length(cut) <= MAX_MESSAGE_LENGTH
    assert cut.removesuffix(TRUNCATION_MARKER) == "🚨" * len(cut.removesuffix(TRUNCATION_MARKER))


# --- the token stays secret -------------------------------------------------------------


def test_token_never_in_logs_errors_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's request log, the sandbox's
    faults = [{"kind": "429", "path": "/bot*", "retry_after": 1},
              {"kind": "503", "path": "/bot*", "skip": 1}]  # fmt: skip
    texts: list[str] = []
    with served(faults) as (client, _, _):
        client.send_message("through a 429 and a 503")
        texts.append(repr(client))
        for chat in ("-100999", SANDBOX_MIGRATED_CHAT_ID):
            client.chat_id = chat
            with pytest.raises(TelegramError) as err:
                client.send_message("x")
            texts += [str(err.value), repr(err.value), repr(err.value.args)]
    with served(token="111:another-secret-token") as (client, _, _):
        with pytest.raises(TelegramUnauthorized) as unauthorized:
            client.send_message("x")
        texts += [str(unauthorized.value), repr(unauthorized.value.args)]
    unreachable = TelegramClient("http://127.0.0.1:9", TOKEN, CHAT, max_retries=0, timeout=0.5)
    with pytest.raises(Exception) as down:
        unreachable.send_message("x")
    texts.append(str(down.value))
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: POST" in logged and "/bot***/sendMessage" in logged  # it was logged
    for secret in (SECRET, "another-secret-token"):
        assert secret not in logged
        assert not [t for t in texts if secret in t]


# --- the chat id stays secret too --------------------------------------------------------

# Recognisable ids that appear nowhere else: the one configured, an unknown one, an old group
# and the supergroup it became.
MY_CHAT, UNKNOWN_CHAT = "-100424242424242", "-100515151515151"
OLD_GROUP, NEW_SUPERGROUP = "-373737373", "-100737373737373"
CHAT_IDS = (MY_CHAT, UNKNOWN_CHAT, OLD_GROUP, NEW_SUPERGROUP)


def _error_texts(err: BaseException) -> list[str]:
    params = getattr(err, "params", None)
    return [str(err), repr(err), repr(params), repr(pickle.loads(pickle.dumps(err)))]


def test_chat_id_never_in_logs_errors_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's, the sandbox's
    faults = [
        {"kind": "429", "path": "/bot*", "retry_after": 1},
        {"kind": "503", "path": "/bot*", "skip": 1},
        # Telegram's own description naming the chat: masked by value, not only by key
        {"kind": "error200", "path": "/bot*", "skip": 3, "code": 400,
         "msg": f"Bad Request: chat {MY_CHAT} is read-only"},
    ]  # fmt: skip
    texts: list[str] = []
    with served(faults, chat=MY_CHAT) as (client, sandbox, _):
        desk = telegram_desk(sandbox)
        desk.chats[MY_CHAT] = {"id": int(MY_CHAT), "title": "mine", "type": "supergroup"}
        desk.migrated[OLD_GROUP] = int(NEW_SUPERGROUP)
        client.send_message("through a 429 and a 503")  # retried: logged at WARNING
        texts.append(repr(client))
        for chat, cls in (
            (MY_CHAT, TelegramError),  # the error in HTTP 200
            (UNKNOWN_CHAT, TelegramChatNotFound),
            (OLD_GROUP, TelegramChatMigrated),
            (f"group {MY_CHAT}", TelegramConfigMissing),  # not a chat id's shape
        ):
            client.chat_id = chat
            with pytest.raises(cls) as err:
                client.send_message("x")
            texts += _error_texts(err.value)
    assert desk.texts(MY_CHAT) == ["through a 429 and a 503"]  # it was that chat
    forbidden = {"ok": False, "error_code": 403, "description": "Forbidden: bot was kicked"}
    odd = {"ok": True, "result": {"chat": {"id": int(MY_CHAT)}}}  # no message_id
    for status, answer, cls in (
        (403, forbidden, TelegramForbidden),
        (200, odd, VendorResponseError),
    ):
        mock = httpx.MockTransport(lambda _, s=status, a=answer: httpx.Response(s, json=a))
        client = TelegramClient("https://api.telegram.org", TOKEN, MY_CHAT, transport=mock)
        with pytest.raises(cls) as err:
            client.send_message("x")
        texts += _error_texts(err.value)
    unreachable = TelegramClient(
        "http://127.0.0.1:9", TOKEN, MY_CHAT, max_retries=1, timeout=0.5, sleep=lambda _: None
    )
    with pytest.raises(Exception) as down:
        unreachable.send_message("x")
    texts += _error_texts(down.value)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "chat_id=***" in logged and "retry 1" in logged  # the requests were logged
    assert "chat_id=***" in texts[1]  # and the errors name the field, masked
    for chat in CHAT_IDS:
        assert chat not in logged
        assert not [t for t in texts if chat in t], chat
