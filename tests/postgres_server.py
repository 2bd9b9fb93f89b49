"""A real, throw-away PostgreSQL server for tests: Debian's ``postgresql`` on loopback.

Multi-process features (Optuna studies shared through ``--storage postgresql://...``) need a
real server, not SQLite: row locks, many connections and server-side ``now()`` all matter.
``running_postgres()`` starts one in a new temporary folder (data dir, log and unix socket all
inside it) on a free loopback port, creates the database ``trainlab``, yields its SQLAlchemy URL
``postgresql+psycopg2://postgres@127.0.0.1:PORT/trainlab``, and at the end stops it with
``pg_ctl stop -m fast`` and removes the folder, also when the body raised.

The URL names its driver because SQLAlchemy 2.1 (what Optuna pulls in today) maps a bare
``postgresql://`` to psycopg 3, not to the ``psycopg2`` the project installs; ``libpq_url(url)``
gives the bare form that ``psycopg2.connect`` and ``psql`` take.

It never uses the machine's own cluster (Debian's package may create and start one on 5432 as
a service): each call has its own data dir and port, so two pytest-xdist workers can each run
one at the same time.

The server binaries (``initdb``, ``pg_ctl``) are looked for in /usr/lib/postgresql/<ver>/bin/
(Debian keeps them off PATH) and then on PATH; when missing they are installed with
:func:`tests.system_packages.ensure_apt` (apt-get as root, which is how CI's fresh Debian machine
gets them), otherwise the test is skipped with the reason. PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user (created by the Debian package, or here with
``useradd`` when missing) and the temporary folder is chowned to it. The driver is
``psycopg2`` (``psycopg2-binary``); without it the test is skipped.

Use from a test module (the fixture is module-scoped: one server per test module that imports
it, stopped after that module's last test)::

    from tests.postgres_server import postgres_url  # noqa: F401  (a pytest fixture)

    def test_x(postgres_url: str) -> None:
        storage = optuna.storages.RDBStorage(postgres_url)

or anywhere else::

    with running_postgres() as url:
        ...
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.system_packages import ensure_apt

__all__ = ["running_postgres", "postgres_url", "libpq_url", "server_bin_dir", "START_TIMEOUT_S"]

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SERVER_USER = "postgres"
DATABASE = "trainlab"
SQLALCHEMY_SCHEME = "postgresql+psycopg2"  # SQLAlchemy 2.1's bare postgresql:// means psycopg 3
PORT_TRIES = 3  # a free port can be taken by someone else between our probe and the bind

# Debian's PostgreSQL versions, newest first: where ensure_apt looks after installing.
_DEBIAN_VERSIONS = range(20, 11, -1)

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "50",  # several workers, each with an SQLAlchemy pool and a heartbeat
    "fsync": "off",  # throw-away data: durability buys nothing and costs seconds
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
}


@dataclass(frozen=True)
class _Runner:
    """Who runs the server programs: the current user, or ``postgres`` when we are root."""

    uid: int | None = None
    gid: int | None = None
    home: str | None = None

    def run(self, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        """``args`` as this user, with PG* variables that could redirect them removed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        user: dict[str, Any] = {}
        if self.uid is not None:
            env["HOME"] = self.home or str(cwd)
            user = {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **user
        )


def _version_key(bin_dir: str) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<ver>/bin: the version as numbers (10 after 9.6)."""
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _installed_bin_dir() -> Path | None:
    """The newest bin dir holding both ``initdb`` and ``pg_ctl``, Debian's first, then PATH's."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for bin_dir in debian:
        if all(os.access(Path(bin_dir, name), os.X_OK) for name in ("initdb", "pg_ctl")):
            return Path(bin_dir)
    initdb = shutil.which("initdb")
    if initdb:
        bin_dir = Path(initdb).resolve().parent  # /usr/local/bin/initdb may be a symlink
        if os.access(bin_dir / "pg_ctl", os.X_OK):
            return bin_dir
    return None


def server_bin_dir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``; the Debian package ``postgresql`` is installed
    first when they are missing and this process can, otherwise a pytest skip."""
    found = _installed_bin_dir()
    if found:
        return found
    candidates = tuple(f"/usr/lib/postgresql/{v}/bin/initdb" for v in _DEBIAN_VERSIONS)
    initdb = ensure_apt("initdb", "postgresql", also=candidates)
    found = _installed_bin_dir()
    if not found:
        pytest.fail(f"{initdb} is installed but pg_ctl is not beside it in {Path(initdb).parent}")
    return found


def _ensure_server_user() -> pwd.struct_passwd:
    """The ``postgres`` account, created as a system user when missing (the Debian package
    creates it; other installs may not). Serialised so two xdist workers do not race."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    lock_path = Path(tempfile.gettempdir(), "trainlab-postgres-useradd.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(SERVER_USER)
        result = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SERVER_USER],
            capture_output=True,
            text=True,
            timeout=60,
        )
    if result.returncode != 0:
        pytest.fail(f"useradd {SERVER_USER} failed: {result.stderr.strip()}")
    return pwd.getpwnam(SERVER_USER)


def _runner_for(folder: Path) -> _Runner:
    """Run as ourselves, or as root: as ``postgres``, owning ``folder`` (initdb and the server
    refuse root and need to write the data dir, the log and the socket there)."""
    if os.geteuid() != 0:
        return _Runner()
    account = _ensure_server_user()
    os.chown(folder, account.pw_uid, account.pw_gid)
    return _Runner(uid=account.pw_uid, gid=account.pw_gid, home=str(folder))


def _free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` of a log file, for failure messages ('' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _initdb(bin_dir: Path, data: Path, runner: _Runner) -> None:
    """A new cluster in ``data``: trust auth (loopback, throw-away), superuser ``postgres``."""
    args = [str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", f"-U{SERVER_USER}"]
    args += ["--encoding=UTF8", "--locale=C", "--no-sync"]
    result = runner.run(args, cwd=data.parent, timeout=START_TIMEOUT_S)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        pytest.fail(f"initdb -D {data} failed: " + " | ".join(tail))


def _configure(data: Path, port: int) -> None:
    """Our own port and socket dir (never the machine's 5432 or /var/run/postgresql) and the
    speed settings, appended to ``postgresql.conf`` so the last value wins."""
    settings = {
        **SERVER_SETTINGS,
        "port": str(port),
        "unix_socket_directories": f"'{data.parent}'",
    }
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n# trainlab test server\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())


def _pg_ctl(bin_dir: Path, runner: _Runner, *args: str) -> subprocess.CompletedProcess:
    return runner.run([str(bin_dir / "pg_ctl"), *args], cwd=Path("/"), timeout=START_TIMEOUT_S + 5)


def _start(bin_dir: Path, data: Path, log: Path, runner: _Runner) -> int:
    """Start the server on a free port and return the port; a port lost to a race between the
    probe and the server's bind is retried with another one."""
    for _ in range(PORT_TRIES):
        port = _free_port()
        _configure(data, port)
        args = ["start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(data), "-l", str(log)]
        result = _pg_ctl(bin_dir, runner, *args)
        if result.returncode == 0:
            return port
        if "already in use" not in _tail(log, 50):
            break
    said = " ".join((result.stderr or result.stdout).split())
    pytest.fail(
        f"pg_ctl start -D {data} failed (waiting up to {START_TIMEOUT_S} s): {said} | "
        f"server log: {_tail(log)}"
    )


def _wait_and_create_database(psycopg2: Any, port: int, log: Path) -> None:
    """Poll until the server takes TCP connections, then create the database ``trainlab``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=port, user=SERVER_USER, dbname="postgres", connect_timeout=5
            )
            break
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"postgres on 127.0.0.1:{port} took no connection within "
                    f"{START_TIMEOUT_S} s ({str(error).strip()}); log {log}: {_tail(log)}"
                )
            time.sleep(0.1)
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        conn.close()


def _stop(bin_dir: Path, data: Path, runner: _Runner) -> None:
    """``pg_ctl stop -m fast`` (closes the clients' connections), ``-m immediate`` if that hangs."""
    if not (data / "postmaster.pid").exists():
        return
    stopped = _pg_ctl(
        bin_dir, runner, "stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S), "-D", str(data)
    )
    if stopped.returncode != 0 and (data / "postmaster.pid").exists():
        _pg_ctl(bin_dir, runner, "stop", "-m", "immediate", "-w", "-D", str(data))


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A new PostgreSQL server with an empty database ``trainlab``; yields its SQLAlchemy URL
    ``postgresql+psycopg2://postgres@127.0.0.1:PORT/trainlab``, then stops and deletes it."""
    psycopg2 = pytest.importorskip(
        "psycopg2", reason="psycopg2 is not installed (psycopg2-binary, in the test extra)"
    )
    bin_dir = server_bin_dir()
    # Not pytest's tmp_path: that is mode 0700 under root's name, which ``postgres`` cannot
    # enter; a short path also keeps the unix socket under its 107-byte limit.
    folder = Path(tempfile.mkdtemp(prefix="trainlab-pg-"))
    data, log = folder / "data", folder / "server.log"
    try:
        runner = _runner_for(folder)
        _initdb(bin_dir, data, runner)
        try:
            port = _start(bin_dir, data, log, runner)
            _wait_and_create_database(psycopg2, port, log)
            yield f"{SQLALCHEMY_SCHEME}://{SERVER_USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _stop(bin_dir, data, runner)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def libpq_url(url: str) -> str:
    """``url`` without SQLAlchemy's ``+driver`` part: the form libpq (``psycopg2.connect``,
    ``psql``) accepts."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL server shared by the tests of one module (module-scoped: it is
    started for the first test that asks and stopped after the module's last test)."""
    with running_postgres() as url:
        yield url
