"""The notifier against the sandbox's Telegram over a real loopback socket: only serious,
recent alerts go out, each exactly once across re-runs and restarts, flood control is
waited out or stops the batch, refusals release the claim for the next tick, and neither the
token nor the chat id shows in results, errors or logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from btc_assets.alerts import AlertLedger, NotifyResult, format_alert, notify, select_due
from btc_assets.alerts.notify import MAX_TEXT
from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.sandbox.credentials import SANDBOX_TELEGRAM_CHAT_ID, SANDBOX_TELEGRAM_TOKEN
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.telegram import telegram_desk
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.telegram import TelegramClient, utf16_length
from btc_assets_tests.test_vendors.helpers import FakeClock

TOKEN, CHAT = SANDBOX_TELEGRAM_TOKEN, SANDBOX_TELEGRAM_CHAT_ID
SECRET = TOKEN.split(":", 1)[1]
UNKNOWN_CHAT = "-100515151515151"
NOW = datetime(2024, 3, 2, 15, 0, tzinfo=UTC)
SIX_HOURS = timedelta(hours=6)
WHALE_DETAILS = {  # CoinGlass's whale-position fields, as the whale watch keeps them
    "user": "0x20c2d95a3dfdca9e9ad12794d5fa6fad99da44f5",
    "symbol": "BTC",
    "position_size": -44727.1273,
    "entry_price": 62249.7,
    "liq_price": 64358.2766,
    "leverage": 25,
    "position_value_usd": 73589542.5467,
    "position_action": 1,
}


@contextmanager
def served(
    faults: list[dict[str, Any]] | None = None,
    chat: str = CHAT,
    limits: dict[str, int] | None = None,
    **client_kw: Any,
) -> Iterator[tuple[TelegramClient, SandboxTransport, FakeClock]]:
    clock = FakeClock(start=1_000_050.0)  # 30 s before a minute ends
    sandbox = SandboxTransport(faults=json.dumps(faults or []), clock=clock.time, limits=limits)
    with serve_sandbox(transport=sandbox) as url:
        options: dict[str, Any] = {"timeout": 2.0, "sleep": clock.sleep, "clock": clock.time}
        client = TelegramClient(url, TOKEN, chat, **{**options, **client_kw})
        try:
            yield client, sandbox, clock
        finally:
            client.close()


def alert(key: str, severity: str = "high", age: timedelta = timedelta(hours=1),
          kind: str = "liquidation_cascade", details: dict[str, Any] | None = None,
          ) -> dict[str, Any]:  # fmt: skip
    return {
        "ts": NOW - age,
        "symbol": "BTCUSDT",
        "kind": kind,
        "severity": severity,
        "value": 3.42,
        "threshold": 3.0,
        "details": json.dumps(details or {"ratio": 3.42, "window": "15m"}, sort_keys=True),
        "dedupe_key": key,
    }


def frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=ALERT_SCHEMA)


def run(alerts: pl.DataFrame, ledger: AlertLedger, client: TelegramClient) -> NotifyResult:
    return notify(alerts, ledger, client.send_message, NOW, SIX_HOURS, "high")


def statuses(sandbox: SandboxTransport) -> list[int]:
    return [r.status for r in sandbox.requests]


# --- exactly once -------------------------------------------------------------------------

BATCH = frame(
    alert("cascade-h", age=timedelta(minutes=30)),
    alert("cascade-m", "medium"),
    alert("oi-l", "low", kind="oi_shock"),
    alert("whale-h", age=timedelta(hours=2), kind="whale_position", details=WHALE_DETAILS),
    alert("funding-h", age=timedelta(minutes=30), kind="funding_anomaly"),
)


def test_only_high_alerts_go_out_once_each_in_ts_order(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    with served() as (client, sandbox, _):
        first = run(BATCH, ledger, client)
        rerun = run(BATCH, ledger, client)  # the next tick reads the same rows
        restarted = run(BATCH, AlertLedger(tmp_path / "alerts.db"), client)  # a new process
        desk = telegram_desk(sandbox)
    # ts order, then the key for equal times
    assert first.sent == ["whale-h", "cascade-h", "funding-h"]
    assert (first.below_severity, first.too_old, first.failed, first.deferred) == (2, 0, {}, 0)
    assert [m.text.rsplit("id: ", 1)[1] for m in desk.messages] == first.sent  # one each
    assert [m.message_id for m in desk.messages] == [1, 2, 3]
    for again in (rerun, restarted):
        assert again.sent == [] and again.skipped_already_sent == 3 and again.below_severity == 2
    assert statuses(sandbox) == [200, 200, 200] and len(desk.messages) == 3
    assert ledger.sent_keys() == {"whale-h", "cascade-h", "funding-h"}
    assert "opened short" in desk.messages[0].text  # the whale's details made it
    assert {m.parse_mode for m in desk.messages} == {None}  # plain text: no markup to break


def test_medium_threshold_includes_high(tmp_path: Path) -> None:
    with served() as (client, _, _):
        result = notify(BATCH, AlertLedger(tmp_path / "a.db"), client.send_message, NOW,
                        SIX_HOURS, "medium")  # fmt: skip
    assert result.sent == ["whale-h", "cascade-m", "cascade-h", "funding-h"]
    assert result.below_severity == 1


def test_old_and_future_alerts_are_counted_not_sent(tmp_path: Path) -> None:
    alerts = frame(
        alert("backfilled", age=SIX_HOURS),  # exactly max_age old: outside (now - 6h, now]
        alert("just-in", age=SIX_HOURS - timedelta(seconds=1)),
        alert("at-now", age=timedelta(0)),
        alert("ahead", age=-timedelta(minutes=1)),
        alert("old-and-low", "low", age=timedelta(days=30)),
    )
    with served() as (client, sandbox, _):
        result = run(alerts, AlertLedger(tmp_path / "alerts.db"), client)
        texts = telegram_desk(sandbox).texts()
    assert result.sent == ["just-in", "at-now"]
    assert (result.too_old, result.in_future, result.below_severity) == (1, 1, 1)
    assert len(texts) == 2


def test_a_key_claimed_by_another_sender_is_left_to_it(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    assert AlertLedger(tmp_path / "alerts.db").claim("cascade-h")  # another tick, mid-send
    with served() as (client, _, _):
        result = run(BATCH, ledger, client)
    assert result.in_flight == 1 and "cascade-h" not in result.sent
    assert ledger.status("cascade-h") == "claimed"


# --- flood control and refusals -----------------------------------------------------------


def test_flood_control_is_waited_out_and_each_alert_delivered_once(tmp_path: Path) -> None:
    # Two messages a minute into the chat: the third draws a 429 with retry_after 30.
    with served(limits={"telegram-chat": 2}) as (client, sandbox, clock):
        result = run(BATCH, AlertLedger(tmp_path / "alerts.db"), client)
        desk = telegram_desk(sandbox)
    assert result.sent == ["whale-h", "cascade-h", "funding-h"] and result.failed == {}
    assert statuses(sandbox) == [200, 200, 429, 200] and clock.sleeps == [30.0]
    assert [m.text.rsplit("id: ", 1)[1] for m in desk.messages] == result.sent


def test_a_flood_wait_beyond_the_clients_budget_stops_the_batch(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    fault = [{"kind": "429", "path": "/bot*", "retry_after": 300}]
    with served(fault, max_wait_seconds=60) as (client, sandbox, clock):
        stopped = run(BATCH, ledger, client)
        assert statuses(sandbox) == [429] and clock.sleeps == []  # not hammered
        next_tick = run(BATCH, ledger, client)  # the fault was one flood; it has passed
        texts = telegram_desk(sandbox).texts()
    assert stopped.sent == [] and list(stopped.failed) == ["whale-h"]
    assert "300 s" in stopped.failed["whale-h"] and stopped.deferred == 2
    assert stopped.stopped is not None and stopped.stopped.startswith("VendorRateLimited")
    assert next_tick.sent == ["whale-h", "cascade-h", "funding-h"] and len(texts) == 3


def test_an_unknown_chat_releases_the_claim_and_a_fixed_chat_sends_later(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    with served(chat=UNKNOWN_CHAT) as (client, sandbox, _):
        refused = run(BATCH, ledger, client)
        assert statuses(sandbox) == [400] and telegram_desk(sandbox).messages == []
    assert list(refused.failed) == ["whale-h"] and refused.deferred == 2
    assert "chat not found" in refused.failed["whale-h"]
    assert "TELEGRAM_CHAT_ID" in refused.failed["whale-h"]  # says what to fix
    assert ledger.status("whale-h") is None and ledger.sent_keys() == set()
    with served() as (client, sandbox, _):  # the operator fixed TELEGRAM_CHAT_ID
        fixed = run(BATCH, ledger, client)
        assert len(telegram_desk(sandbox).messages) == 3
    assert fixed.sent == ["whale-h", "cascade-h", "funding-h"] and fixed.failed == {}


def test_a_refused_message_does_not_stop_the_others(tmp_path: Path) -> None:
    # Telegram refuses one message (not the chat): the batch goes on, that one is retried.
    ledger = AlertLedger(tmp_path / "alerts.db")
    refusal = {"kind": "error200", "path": "/bot*", "skip": 1, "code": 400,
               "msg": "Bad Request: can't parse entities"}  # fmt: skip
    with served([refusal]) as (client, sandbox, _):
        first = run(BATCH, ledger, client)
        second = run(BATCH, ledger, client)
        texts = telegram_desk(sandbox).texts()
    assert first.sent == ["whale-h", "funding-h"] and list(first.failed) == ["cascade-h"]
    assert first.stopped is None and first.deferred == 0
    assert second.sent == ["cascade-h"] and second.skipped_already_sent == 2
    assert len(texts) == 3


def test_max_sends_defers_the_rest_to_the_next_tick(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    with served() as (client, sandbox, _):
        ticks = [notify(BATCH, ledger, client.send_message, NOW, SIX_HOURS, "high", max_sends=2)
                 for _ in range(2)]  # fmt: skip
        assert len(telegram_desk(sandbox).messages) == 3
    assert ticks[0].sent == ["whale-h", "cascade-h"] and ticks[0].deferred == 1
    assert ledger.status("whale-h") == "sent" and ticks[1].sent == ["funding-h"]
    assert ticks[1].skipped_already_sent == 2 and ticks[1].deferred == 0


def test_a_send_interrupted_releases_its_claim(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")

    def interrupted(text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        notify(BATCH, ledger, interrupted, NOW, SIX_HOURS, "high")
    assert ledger.status("whale-h") is None


# --- secrets ------------------------------------------------------------------------------


def test_token_and_chat_id_never_in_results_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, the client's, httpx's, the sandbox's
    ledger = AlertLedger(tmp_path / "alerts.db")
    faults = [{"kind": "429", "path": "/bot*", "retry_after": 1},
              {"kind": "503", "path": "/bot*", "skip": 1}]  # fmt: skip
    results: list[NotifyResult] = []
    with served(chat=UNKNOWN_CHAT) as (client, _, _):
        results.append(run(BATCH, ledger, client))
    with served(faults, max_wait_seconds=0.5) as (client, _, _):
        results.append(run(BATCH, ledger, client))  # a 429 beyond the budget
    with served(faults) as (client, _, _):
        results.append(run(BATCH, ledger, client))  # through a 429 and a 503
    assert [len(r.sent) for r in results] == [0, 0, 3]
    assert all(r.failed for r in results[:2])
    shown = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    shown += "\n".join(repr(r) for r in results)
    assert "HTTP Request: POST" in shown and "alert whale-h sent" in shown  # it was logged
    for secret in (SECRET, CHAT, UNKNOWN_CHAT):
        assert secret not in shown, secret


def test_secrets_a_producer_left_in_details_are_not_sent() -> None:
    details = {"api_key": "zz-leaked-key", "chat_id": "-100777", "bot_token": "1:x",
               "note": "see https://api.telegram.org/bot123456:leaked-secret/getMe"}  # fmt: skip
    text = format_alert(alert("k", details=details))
    for leaked in ("zz-leaked-key", "-100777", "1:x", "leaked-secret"):
        assert leaked not in text
    assert "note: see https://api.telegram.org/bot***/getMe" in text


# --- formatting ---------------------------------------------------------------------------


def test_a_whale_alert_reads_side_size_entry_leverage_liquidation_notional() -> None:
    text = format_alert(alert("whale-1", kind="whale_position", details=WHALE_DETAILS))
    lines = text.splitlines()
    assert lines[0] == "🔴 HIGH · BTCUSDT · whale position"
    assert lines[1] == "2024-03-02 14:00:00 UTC"
    assert lines[2] == "value 3.42 (threshold 3)"
    assert lines[3] == (
        "opened short · size 44,727.13 BTC · entry 62,249.7 · liquidation price 64,358.28 · "
        "leverage 25x · notional $73.59M · wallet 0x20c2…44f5"
    )
    assert lines[-1] == "id: whale-1"


def test_a_signal_shows_its_details_and_a_huge_one_stays_under_the_limit() -> None:
    text = format_alert(alert("oi-1", kind="oi_shock", details={"log_change": 0.1234, "z": -4}))
    assert text.splitlines()[0].endswith("open-interest shock")
    assert "log_change: 0.1234\nz: -4\nid: oi-1" in text
    huge = {f"field_{i:04d}": "x" * 5000 for i in range(500)}
    text = format_alert(alert("big-" + "k" * 5000, details=huge))
    assert utf16_length(text) <= MAX_TEXT and "(+492 more in the alert's details)" in text
    assert format_alert({**alert("bad"), "details": "{not json"}).endswith("id: bad")


# --- selection ----------------------------------------------------------------------------


def test_select_due_sorts_by_ts_then_key_and_keeps_one_row_per_key() -> None:
    alerts = frame(
        alert("b", age=timedelta(minutes=5)),
        alert("a", age=timedelta(minutes=5)),
        alert("c", age=timedelta(minutes=50)),
        alert("a", age=timedelta(minutes=1)),  # the same event read again (another table)
    )
    due = select_due(alerts, NOW, SIX_HOURS, "high")
    assert due["dedupe_key"].to_list() == ["c", "a", "b"]
    assert due.filter(pl.col("dedupe_key") == "a")["ts"].item() == NOW - timedelta(minutes=5)
    assert due.columns == list(ALERT_SCHEMA)


def test_bad_input_is_named() -> None:
    good = frame(alert("a"))
    with pytest.raises(ValueError, match=r"alert x has severity 'critical'"):
        select_due(frame(alert("x", "critical")), NOW, SIX_HOURS, "high")
    with pytest.raises(ValueError, match=r"severity 'urgent': expected one of"):
        select_due(good, NOW, SIX_HOURS, "urgent")
    with pytest.raises(ValueError, match="no time zone"):
        select_due(good, NOW.replace(tzinfo=None), SIX_HOURS, "high")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['details'\]"):
        select_due(good.drop("details"), NOW, SIX_HOURS, "high")
    with pytest.raises(ValueError, match="without dedupe_key"):
        select_due(frame({**alert("a"), "dedupe_key": None}), NOW, SIX_HOURS, "high")
    with pytest.raises(ValueError, match="max_age must be positive"):
        select_due(good, NOW, timedelta(0), "high")
