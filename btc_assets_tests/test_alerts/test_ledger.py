"""The alert ledger: claims are won once (also by two processes racing), released claims can
be won again, stale claims are taken over, and a file that is not a ledger fails by name."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from btc_assets.alerts.ledger import AlertLedger, LedgerError

T0 = datetime(2024, 3, 2, 14, 15, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_key_is_claimed_once_then_marked_sent(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "deeper" / "alerts.db")  # the directory is created
    assert ledger.status("a") is None
    assert ledger.claim("a", kind="oi_shock", symbol="BTCUSDT", ts=T0) is True
    assert ledger.claim("a") is False and ledger.status("a") == "claimed"
    ledger.mark_sent("a", 17)
    assert ledger.status("a") == "sent" and ledger.sent_keys() == {"a"}
    assert ledger.claim("a") is False
    assert ledger.release("a") is False and ledger.status("a") == "sent"  # sent stays sent
    with sqlite3.connect(ledger.path) as conn:
        row = conn.execute("SELECT * FROM alerts").fetchone()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert row[:2] == ("a", "sent") and row[4:] == (
        17,
        "oi_shock",
        "BTCUSDT",
        "2024-03-02T14:15:00.000000Z",
    )
    assert mode == "wal"


def test_a_released_claim_can_be_won_again_and_a_restart_remembers(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    assert ledger.claim("a") and ledger.claim("b")
    assert ledger.release("a") is True and ledger.status("a") is None
    ledger.mark_sent("b")
    again = AlertLedger(tmp_path / "alerts.db")  # a new process on the same file
    assert again.claim("a") is True and again.claim("b") is False
    assert again.sent_keys() == {"b"}


def test_marking_a_key_never_claimed_names_it(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    with pytest.raises(LedgerError, match="alert nope was never claimed"):
        ledger.mark_sent("nope")


def test_a_stale_claim_is_taken_over_a_fresh_one_is_not(tmp_path: Path) -> None:
    clock = Clock()
    ledger = AlertLedger(tmp_path / "alerts.db", stale_after=timedelta(minutes=10), clock=clock)
    assert ledger.claim("a")
    clock.now = T0 + timedelta(minutes=9, seconds=59)
    assert ledger.claim("a") is False  # its claimer may still be sending
    clock.now = T0 + timedelta(minutes=10)
    assert ledger.claim("a") is True  # the claimer died: take it over
    assert ledger.claim("a") is False  # and the takeover is a fresh claim itself
    ledger.mark_sent("a", 3)
    clock.now = T0 + timedelta(days=1)
    assert ledger.claim("a") is False  # a sent key is never stale


def test_the_loser_of_a_takeover_race_marking_sent_is_not_an_error(tmp_path: Path) -> None:
    # The documented at-least-once window: both sent; the first record stands.
    clock = Clock()
    slow = AlertLedger(tmp_path / "alerts.db", clock=clock)
    fast = AlertLedger(tmp_path / "alerts.db", clock=clock)
    assert slow.claim("a")
    clock.now = T0 + timedelta(hours=1)
    assert fast.claim("a")
    fast.mark_sent("a", 2)
    slow.mark_sent("a", 1)
    with sqlite3.connect(slow.path) as conn:
        assert conn.execute("SELECT message_id FROM alerts").fetchone() == (2,)


def _claim_all(path: str, keys: list[str], start: Any, out: Any) -> None:
    """One racer: opens the ledger, waits at the barrier for the other, claims every key."""
    ledger = AlertLedger(path)
    start.wait(60)
    won = [key for key in keys if ledger.claim(key)]
    for key in won:
        ledger.mark_sent(key)
    out.put(won)


def test_two_processes_racing_for_the_same_keys_win_each_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "alerts.db")
    AlertLedger(path)  # created before the race, as the sensor's first tick would
    keys = [f"alert-{i:02d}" for i in range(50)]
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()  # both claim only once both are ready
    workers = [ctx.Process(target=_claim_all, args=(path, keys, start, out)) for _ in range(2)]
    for worker in workers:
        worker.start()
    won = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert sorted(won[0] + won[1]) == keys  # every key won, and by one process only
    assert AlertLedger(path).sent_keys() == set(keys)


def test_a_file_that_is_not_a_sqlite_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    path.write_bytes(b"this is a parquet file, honest\n" * 100)
    with pytest.raises(LedgerError, match="not a SQLite database") as err:
        AlertLedger(path)
    assert str(path) in str(err.value)


def test_a_database_of_something_else_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alerts (id INTEGER)")
    with pytest.raises(LedgerError, match="table 'alerts' has columns") as err:
        AlertLedger(path)
    assert str(path) in str(err.value)


def test_a_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(LedgerError, match="cannot create its directory") as err:
        AlertLedger(blocker / "alerts.db")
    assert str(blocker / "alerts.db") in str(err.value)


def test_an_unopenable_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(LedgerError, match="cannot be opened for writing") as err:
        AlertLedger(path)
    assert str(path) in str(err.value)


def test_times_must_carry_a_zone(tmp_path: Path) -> None:
    ledger = AlertLedger(tmp_path / "alerts.db")
    with pytest.raises(ValueError, match="no time zone"):
        ledger.claim("a", ts=datetime(2024, 3, 2))
