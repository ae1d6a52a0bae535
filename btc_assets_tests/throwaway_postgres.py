"""A PostgreSQL server of the test's own: fresh data directory, free loopback port, removed after.

Tests must neither need nor disturb a PostgreSQL service on the machine (a laptop has none,
and 5432 may belong to someone else), so every use runs ``initdb`` and ``pg_ctl`` in a new
temporary directory and deletes it on exit. The binaries are the ones on PATH when they run,
otherwise those shipped inside the ``pgserver`` wheel of the dev extras.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install -e '.[dev]'  (its pgserver wheel ships initdb and pg_ctl)"
# initdb and postgres refuse to run as root; under root they run as this user instead.
SERVER_USER = "nobody"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class ThrowawayPostgres:
    port: int
    password: str
    binaries: Path
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def url(self, database: str = "postgres") -> str:
        # psycopg2, not SQLAlchemy 2.1's psycopg 3 default (see dagster-notes.md).
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )

    def connect_args(self, database: str = "postgres") -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "dbname": database}  # fmt: skip


def _drop_root() -> dict[str, Any]:
    """Popen arguments that run a child as SERVER_USER when we are root, nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SERVER_USER)
    # extra_groups=[]: otherwise the child keeps root's supplementary groups.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> str:
    # PG* variables (PGPORT, PGDATA, ...) from the caller's shell would redirect the tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False, **_drop_root(),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _candidates() -> Iterator[tuple[str, Path, Path]]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        yield "PATH", Path(initdb), Path(pg_ctl)
    # find_spec locates the wheel without importing it (its import sets up lock files).
    spec = importlib.util.find_spec("pgserver")
    if spec and spec.submodule_search_locations:
        bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        yield "pgserver wheel", bin_dir / "initdb", bin_dir / "pg_ctl"


def find_binaries() -> tuple[Path, Path]:
    """initdb and pg_ctl that really run for the server's user, or an error saying what to do.

    Being on PATH is not enough: a symlink or wrapper may point into an installation that is
    absent or unreadable for that user, hence the ``--version`` run.
    """
    tried = []
    for source, initdb, pg_ctl in _candidates():
        try:
            for tool in (initdb, pg_ctl):
                _run([tool, "--version"], cwd=Path("/"), timeout=30)
            return initdb, pg_ctl
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            tried.append(f"  {source}: {error}".rstrip())
    raise RuntimeError(
        "No runnable PostgreSQL server binaries (initdb, pg_ctl) on PATH or in the venv; "
        f"install them with: {INSTALL_HINT}" + ("\nTried:\n" + "\n".join(tried) if tried else "")
    )


def _hand_over(root: Path) -> None:
    """Give the temp dir to SERVER_USER when we are root, after checking it can reach it."""
    if os.geteuid() != 0:
        return
    for parent in root.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(
                f"{SERVER_USER} cannot traverse {parent} to reach the server's data directory; "
                "point TMPDIR at a directory every user can traverse (e.g. /tmp)"
            )
    _chown_to_server_user(root)


def _chown_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(pg_ctl: Path, data: Path, log: Path, timeout: int) -> None:
    try:
        _run([pg_ctl, "start", "-D", data, "-l", log, "-w", "-t", str(timeout)],
             cwd=data.parent, timeout=timeout + 10)  # fmt: skip
    except RuntimeError as error:
        # pg_ctl only says "could not start server"; the reason is in the server's log.
        server_log = log.read_text()[-3000:] if log.exists() else "(no log)"
        raise RuntimeError(f"{error}\nserver log:\n{server_log}") from None


def _stop(pg_ctl: Path, data: Path, root: Path) -> None:
    # -m fast: disconnect clients (daemon, webserver) instead of waiting for them to leave.
    with suppress(RuntimeError, subprocess.TimeoutExpired):
        _run([pg_ctl, "stop", "-D", data, "-m", "fast", "-w", "-t", "30"], cwd=root, timeout=40)
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    # The stop failed or timed out: never leave a server running. pg_ctl starts the
    # postmaster in its own session, so its group holds the backends too.
    pid = int(pid_file.read_text().split()[0])
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def throwaway_postgres(start_timeout: int = 60) -> Iterator[ThrowawayPostgres]:
    """Start a private PostgreSQL server, yield how to reach it, stop and delete it on exit."""
    initdb, pg_ctl = find_binaries()
    root = Path(tempfile.mkdtemp(prefix="btc_assets_pg_"))
    data = root / "data"
    try:
        _hand_over(root)
        # A password, not trust: other local users can reach a loopback port too.
        password = secrets.token_hex(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password)
        _chown_to_server_user(pwfile)
        _run(
            [initdb, "-D", data, "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
             "--no-locale", "--encoding=UTF8", "--no-sync"],
            cwd=root,
        )  # fmt: skip
        pwfile.unlink()
        port = _free_port()
        # No unix socket: a long TMPDIR would overflow its path limit, and TCP is all we use.
        # fsync off: the data is thrown away, durability only costs time.
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                "unix_socket_directories = ''\nfsync = off\nsynchronous_commit = off\n"
            )
        try:
            _start(pg_ctl, data, root / "postgres.log", start_timeout)
            yield ThrowawayPostgres(port=port, password=password, binaries=initdb.parent)
        finally:
            _stop(pg_ctl, data, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
