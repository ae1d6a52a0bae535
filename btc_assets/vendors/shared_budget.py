"""Usage counts per fixed clock window, shared by every process that names the same store.

A :class:`~btc_assets.vendors.ratelimit.WeightBudget` alone counts in its own process: two
runs whose steps call one vendor in the same minute would each spend the whole limit. With a
:class:`WindowStore` behind it, the budget charges one shared count per (budget name, window)
instead, and the check and the charge are one atomic step in the store, so every process
together stays under the cap.

Two stores, chosen by URL (:func:`open_window_store`):

- ``sqlite:///PATH``: a file on one machine's disk. ``BEGIN IMMEDIATE`` takes SQLite's write
  lock before the count is read, so processes charging the same window queue on it.
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (``postgres://`` and
  ``postgresql+psycopg2://`` too): for a cluster whose run pods share no disk. One row per
  (name, window); one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement charges it
  under the row's lock.
- ``memory://``: no store; each budget counts in its own process (what tests use).

Rows of windows that closed an hour ago are deleted when a new window opens, so the store
holds about an hour of counts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

KEEP_SECONDS = 3600.0  # closed windows kept this long (for someone looking at the store)
TABLE = "rate_budget_windows"
BUSY_TIMEOUT_SECONDS = 30.0


class WindowStoreError(ValueError):
    """A store URL the project cannot use; ``str()`` never repeats a password."""


class WindowStore(Protocol):
    """One count per (budget name, window number), shared by whoever opens the same store."""

    def charge(self, name: str, window: int, cost: int, cap: float, expires: float) -> int | None:
        """Add ``cost`` to the window's count and return the new count, unless that would
        pass ``cap`` on a window already in use: then return None and charge nothing (an
        empty window always takes one request, however costly, as the vendor would).
        ``expires`` (epoch seconds) is when the window closes."""
        ...

    def raise_to(self, name: str, window: int, used: int, expires: float) -> int:
        """The vendor's own count (a response header) is ``used``: the window's count becomes
        at least that (never lower: the header may be older than a charge made since).
        Returns the count."""
        ...


def shown_url(url: str) -> str:
    """``url`` as it may appear in an error or a log: without its password."""
    parts = urlsplit(url.strip())
    if parts.password is None:
        return url.strip()
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return parts._replace(netloc=netloc).geturl()


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///PATH`` (SQLAlchemy's ``sqlite:////PATH`` too); a relative
    path gives an empty name (refused: it would depend on each process's folder)."""
    rest = url.strip()[len("sqlite://") :]
    return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path()


def check_store_url(url: str) -> str:
    """``url`` if it names a store :func:`open_window_store` can open (nothing is opened);
    else :class:`WindowStoreError` saying what is expected."""
    text = url.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "memory":
        return text
    if scheme == "sqlite":
        if not sqlite_path(text).name:
            raise WindowStoreError("a sqlite URL names an absolute file: sqlite:///PATH")
        return text
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        parts = urlsplit(text)
        if not parts.hostname or not parts.path.strip("/"):
            raise WindowStoreError("a postgresql URL names a host and a database")
        return text
    raise WindowStoreError("not a sqlite:///PATH, postgresql://... or memory:// URL")


def open_window_store(url: str) -> WindowStore | None:
    """The store ``url`` names (see the module's docstring); None for ``memory://``."""
    text = check_store_url(url)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "memory":
        return None
    if scheme == "sqlite":
        return SqliteWindowStore(sqlite_path(text))
    return PostgresWindowStore(text)


class SqliteWindowStore:
    """Counts in a SQLite file; safe across the processes of one machine (not across hosts,
    nor on a network file system whose locks SQLite cannot trust)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()  # a connection per thread (sqlite3's own rule)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE below.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # A count lost in a power cut costs at most one window's spacing: skip the fsyncs.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT NOT NULL, window_id INTEGER NOT NULL,"
            " used INTEGER NOT NULL, expires REAL NOT NULL, PRIMARY KEY (name, window_id))"
        )
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """The write lock first, so no other process reads the count between our read and
        our write (a plain BEGIN would let two readers both see room)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def charge(self, name: str, window: int, cost: int, cap: float, expires: float) -> int | None:
        with self._immediate() as conn:
            row = conn.execute(
                f"SELECT used FROM {TABLE} WHERE name = ? AND window_id = ?", (name, window)
            ).fetchone()
            used = 0 if row is None else int(row[0])
            if used > 0 and used + cost > cap:
                return None
            if row is None:
                conn.execute(f"DELETE FROM {TABLE} WHERE expires < ?", (expires - KEEP_SECONDS,))
            conn.execute(
                f"INSERT INTO {TABLE} (name, window_id, used, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, window_id) DO UPDATE SET used = used + excluded.used",
                (name, window, cost, expires),
            )
            return used + cost

    def raise_to(self, name: str, window: int, used: int, expires: float) -> int:
        with self._immediate() as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (name, window_id, used, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, window_id) DO UPDATE SET used = max(used, excluded.used)",
                (name, window, used, expires),
            )
            row = conn.execute(
                f"SELECT used FROM {TABLE} WHERE name = ? AND window_id = ?", (name, window)
            ).fetchone()
            return int(row[0])


# The refusal is the WHERE of the conflict branch: no row comes back, nothing is charged.
# A first charge of a window inserts (an empty window takes any one request).
_PG_CHARGE = f"""
INSERT INTO {TABLE} AS w (name, window_id, used, expires) VALUES (%s, %s, %s, %s)
ON CONFLICT (name, window_id) DO UPDATE SET used = w.used + EXCLUDED.used
WHERE w.used = 0 OR w.used + EXCLUDED.used <= %s
RETURNING used, (xmax = 0) AS inserted
"""
_PG_RAISE = f"""
INSERT INTO {TABLE} AS w (name, window_id, used, expires) VALUES (%s, %s, %s, %s)
ON CONFLICT (name, window_id) DO UPDATE SET used = GREATEST(w.used, EXCLUDED.used)
RETURNING used
"""
_PG_LOCK_ID = 0x62746362  # any fixed number: the advisory lock guarding the CREATE TABLE
_PG_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
  name TEXT NOT NULL, window_id BIGINT NOT NULL, used BIGINT NOT NULL,
  expires DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, window_id))
"""


class PostgresWindowStore:
    """Counts in a PostgreSQL table, for processes on different machines. One connection per
    process (autocommit: each charge is one statement), opened on first use."""

    def __init__(self, url: str) -> None:
        self._url = url.strip().replace("postgresql+psycopg2://", "postgresql://", 1)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"PostgresWindowStore({shown_url(self._url)!r})"

    def _create_table(self) -> None:
        """Under an advisory lock: run processes starting together would otherwise race in
        CREATE TABLE IF NOT EXISTS, which PostgreSQL does not make atomic (a duplicate key
        in its catalog fails the loser)."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_ID,))
            try:
                cur.execute(_PG_CREATE)
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_ID,))

    def _execute(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        import psycopg2  # only a deployment with a PostgreSQL store needs the driver

        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._pid != os.getpid() or self._conn.closed:
                        self._conn = psycopg2.connect(self._url, connect_timeout=10)
                        self._conn.autocommit = True
                        self._pid = os.getpid()
                        self._create_table()
                    with self._conn.cursor() as cur:
                        cur.execute(sql, args)
                        return cur.fetchone()  # type: ignore[no-any-return]
                except psycopg2.OperationalError as exc:
                    self._conn = None  # a dropped connection: one fresh try, then give up
                    if attempt == 2:
                        # psycopg2's text can repeat the DSN; say only where and what kind.
                        raise ConnectionError(
                            f"rate budget store {shown_url(self._url)}: {type(exc).__name__}"
                        ) from None
        raise AssertionError("unreachable")

    def charge(self, name: str, window: int, cost: int, cap: float, expires: float) -> int | None:
        row = self._execute(_PG_CHARGE, (name, window, cost, expires, cap))
        if row is None:
            return None
        if row[1]:  # a new window opened: drop the ones closed long ago
            self._execute(
                f"WITH gone AS (DELETE FROM {TABLE} WHERE expires < %s RETURNING 1) "
                "SELECT count(*) FROM gone",
                (expires - KEEP_SECONDS,),
            )
        return int(row[0])

    def raise_to(self, name: str, window: int, used: int, expires: float) -> int:
        row = self._execute(_PG_RAISE, (name, window, used, expires))
        assert row is not None  # an upsert with RETURNING always returns its row
        return int(row[0])
