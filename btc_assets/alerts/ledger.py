"""The alert ledger: which alerts were sent, so each is sent once across re-runs and restarts.

One SQLite file (WAL, a busy timeout) with one row per ``dedupe_key``: ``claimed`` while a
process is sending it, ``sent`` once Telegram accepted it. SQLite rather than a lake table
because claiming must be atomic across processes (a sensor tick, a manual run and a
backfill may overlap), and a row per message is a transaction, not a day partition.

The protocol, per alert: :meth:`AlertLedger.claim` (an ``INSERT`` inside ``BEGIN
IMMEDIATE``: of two processes claiming one key exactly one wins), send, then
:meth:`AlertLedger.mark_sent`; a send that fails calls :meth:`AlertLedger.release`, so the
next tick tries again.

Guarantee: a process that dies between ``claim`` and ``mark_sent`` leaves a ``claimed`` row;
after ``stale_after`` (default 10 minutes) another ``claim`` takes it over and sends the alert.
If the process died *after* Telegram accepted the message and *before* ``mark_sent``, the
alert is sent twice: that one window is at-least-once; everything else is exactly once.
(Telegram has no idempotency key, so no ledger could close it; a duplicate beats a loss.)

Times are stored as ISO-8601 UTC text (``2024-03-02T14:15:00.000000Z``), fixed width, so
they compare as text and read well in ``sqlite3 alerts.db 'select * from alerts'``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("btc_assets.alerts")

CLAIMED, SENT = "claimed", "sent"
DEFAULT_STALE_AFTER = timedelta(minutes=10)
DEFAULT_BUSY_TIMEOUT = timedelta(seconds=30)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_COLUMNS = ("dedupe_key", "state", "claimed_at", "sent_at", "message_id", "kind", "symbol", "ts")
_CREATE = """
CREATE TABLE IF NOT EXISTS alerts (
    dedupe_key TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('claimed', 'sent')),
    claimed_at TEXT NOT NULL,
    sent_at    TEXT,
    message_id INTEGER,
    kind       TEXT,
    symbol     TEXT,
    ts         TEXT
)
"""


class LedgerError(RuntimeError):
    """The ledger file cannot be used (not a SQLite database, unwritable, wrong table), or a
    call broke the protocol (marking a key that was never claimed); the text names the file
    or the key."""


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"alert ledger: time {moment!r} has no time zone; pass UTC times")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlertLedger:
    """Which alerts were claimed or sent, in the SQLite file ``path`` (created on first use,
    with its parent directory).

    ``clock`` returns the current UTC time (inject one to test stale claims);
    ``stale_after`` is how old a ``claimed`` row must be before another claim takes it over:
    longer than a send can take, with its retries and flood-control waits.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if stale_after <= timedelta(0):
            raise ValueError(f"alert ledger: stale_after must be positive, got {stale_after}")
        self.path = Path(path)
        self.stale_after = stale_after
        self._busy_seconds = busy_timeout.total_seconds()
        self._clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LedgerError(
                f"alert ledger {self.path}: cannot create its directory {self.path.parent}: "
                f"{err.strerror or err}"
            ) from None
        with self._transaction() as conn:
            conn.execute(_CREATE)
            columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(alerts)"))
        if columns != _COLUMNS:
            raise LedgerError(
                f"alert ledger {self.path}: table 'alerts' has columns {list(columns)}, "
                f"expected {list(_COLUMNS)}; move the file aside (it is not this ledger)"
            )

    def __repr__(self) -> str:
        return f"AlertLedger({str(self.path)!r})"

    # --- the protocol -----------------------------------------------------------------

    def claim(
        self,
        key: str,
        *,
        kind: str | None = None,
        symbol: str | None = None,
        ts: datetime | None = None,
    ) -> bool:
        """True if this caller now owns ``key`` and should send it: the key was unknown, or
        its claim is older than ``stale_after`` (its claimer died). False if it was sent,
        or another caller holds a fresh claim. ``kind``, ``symbol``, ``ts`` are kept for
        people reading the file."""
        if not key:
            raise ValueError("alert ledger: an empty dedupe_key cannot be claimed")
        now = self._clock()
        stamp, cutoff = _stamp(now), _stamp(now - self.stale_after)
        shown_ts = _stamp(ts) if ts is not None else None
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO alerts (dedupe_key, state, claimed_at, kind, symbol, ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, CLAIMED, stamp, kind, symbol, shown_ts),
            ).rowcount
            if inserted:
                return True
            taken_over = conn.execute(
                "UPDATE alerts SET claimed_at = ? WHERE dedupe_key = ? AND state = ?"
                " AND claimed_at <= ?",
                (stamp, key, CLAIMED, cutoff),
            ).rowcount
        if taken_over:
            log.warning(
                "alert %s: took over a claim older than %s (its sender died or hung); "
                "sending it, which repeats it if the first sender had got it through",
                key, self.stale_after,
            )  # fmt: skip
        return bool(taken_over)

    def mark_sent(self, key: str, message_id: int | None = None) -> None:
        """Record that Telegram accepted ``key`` (as message ``message_id``)."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE alerts SET state = ?, sent_at = ?, message_id = ?"
                " WHERE dedupe_key = ? AND state = ?",
                (SENT, _stamp(self._clock()), message_id, key, CLAIMED),
            ).rowcount
            if updated:
                return
            row = conn.execute("SELECT state FROM alerts WHERE dedupe_key = ?", (key,)).fetchone()
        if row is None:
            raise LedgerError(f"alert ledger {self.path}: alert {key} was never claimed")
        # A stale-claim takeover raced this sender and won: both sent (the documented
        # at-least-once window); the first record stands.
        log.warning("alert %s: already marked sent by another sender; it went out twice", key)

    def release(self, key: str) -> bool:
        """Give up a claim (the send failed): the next tick may claim ``key`` again. A sent
        key stays sent. True if a claim was released."""
        with self._transaction() as conn:
            return bool(
                conn.execute(
                    "DELETE FROM alerts WHERE dedupe_key = ? AND state = ?", (key, CLAIMED)
                ).rowcount
            )

    # --- reading ----------------------------------------------------------------------

    def status(self, key: str) -> str | None:
        """``"claimed"``, ``"sent"``, or None for a key the ledger has never seen."""
        with self._transaction() as conn:
            row = conn.execute("SELECT state FROM alerts WHERE dedupe_key = ?", (key,)).fetchone()
        return row[0] if row else None

    def sent_keys(self) -> set[str]:
        with self._transaction() as conn:
            rows = conn.execute("SELECT dedupe_key FROM alerts WHERE state = ?", (SENT,))
            return {row[0] for row in rows}

    # --- the file ---------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two
        claimers serialise instead of failing on a lock upgrade), committed on success and
        closed either way. A connection per call: safe across threads and forks, and cheap
        next to an HTTP request."""
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_seconds, isolation_level=None)
        except sqlite3.Error as err:
            raise self._file_error(err) from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_seconds * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: set once per file
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise self._file_error(err) from None
        finally:
            conn.close()

    def _file_error(self, err: sqlite3.Error) -> LedgerError:
        text = str(err)
        if isinstance(err, sqlite3.DatabaseError) and "not a database" in text:
            why = "is not a SQLite database; move it aside (a new ledger may re-send the "
            why += "alerts younger than the notifier's max age)"
        elif "readonly" in text or "unable to open" in text:
            why = (
                f"cannot be opened for writing ({text}); check its and its directory's permissions"
            )
        else:
            why = f"failed: {text}"
        return LedgerError(f"alert ledger {self.path} {why}")
