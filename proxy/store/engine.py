"""Opening the store: SQLite in ``data_dir`` by default, PostgreSQL through ``database:``.

SQLite runs in WAL mode (readers never wait for the writer) and every
transaction starts with ``BEGIN IMMEDIATE``, so two writers (the proxy's
writer thread and a CLI command) queue for the lock up front instead of
failing half-way; PostgreSQL serialises appends to the change log with a
lock taken in ``chain.append``. A store that cannot be reached is a
``StoreDown`` with a one-line reason, never a traceback.

Every database call is bounded, so a store that is slow or hung cannot hold
up whoever called it (above all the proxy's writer): SQLite waits at most
``BUSY_TIMEOUT_MS`` for its lock; PostgreSQL gets a client-side connect
timeout, server-side statement, lock and idle-in-transaction timeouts, and
TCP keepalives with a user timeout for a server that vanished from the
network. None of those help against a server that is alive but frozen (a
SIGSTOPped or swapped-out PostgreSQL on this host: the kernel still answers
for its socket), so ``interrupt(engine)`` is the last resort a watchdog
calls: it shuts down the sockets of the engine's PostgreSQL connections (the
blocked call fails at once with a disconnect) or interrupts SQLite's.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from proxy.settings import Settings

SQLITE_FILE = "schoolgate.db"
CONNECT_TIMEOUT_S = 3
BUSY_TIMEOUT_MS = 3000
# PostgreSQL, per statement and per lock wait. Generous for reports and purges on a big
# store; the writer passes smaller ones (its statements are single-row writes).
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 10_000
IDLE_IN_TRANSACTION_MS = 60_000
# TCP: notice a peer that has gone from the network (keepalives while idle; a user timeout
# while our data stays unacknowledged).
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 20_000


_READ_ONLY = "schoolgate_read_only"


class StoreDown(Exception):
    """The database cannot be reached or is locked; ``str()`` is one line."""


def database_url(settings: Settings) -> str:
    """``database:`` from the settings, or SQLite in ``data_dir``."""
    if settings.database:
        return settings.database
    return f"sqlite:///{settings.data_dir / SQLITE_FILE}"


def shown_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


class _Interrupter:
    """The live connections of one engine, and a way to break any call blocked on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # PostgreSQL: (socket fd, its inode) per DBAPI connection; SQLite: the connection.
        self._sockets: dict[int, tuple[int, int]] = {}
        self._sqlite: dict[int, sqlite3.Connection] = {}

    def add_socket(self, key: int, fd: int) -> None:
        with self._lock:
            self._sockets[key] = (fd, os.fstat(fd).st_ino)

    def add_sqlite(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            self._sqlite[id(connection)] = connection

    def forget(self, key: int) -> None:
        with self._lock:
            self._sockets.pop(key, None)
            self._sqlite.pop(key, None)

    def interrupt(self) -> int:
        """Break every call in progress on these connections; how many were hit."""
        hit = 0
        with self._lock:
            sockets = list(self._sockets.values())
            lite = list(self._sqlite.values())
        for fd, inode in sockets:
            try:
                dup = os.dup(fd)
            except OSError:
                continue  # closed meanwhile
            try:
                # The number may have been closed and reused: only the same socket is touched.
                if os.fstat(dup).st_ino == inode:
                    with socket.socket(fileno=dup) as sock:
                        dup = -1
                        sock.shutdown(socket.SHUT_RDWR)
                    hit += 1
            except OSError:
                pass
            finally:
                if dup >= 0:
                    os.close(dup)
        for connection in lite:
            try:
                connection.interrupt()
            except sqlite3.ProgrammingError:
                continue  # closed meanwhile
            hit += 1
        return hit


_INTERRUPTERS: weakref.WeakKeyDictionary[Engine, _Interrupter] = weakref.WeakKeyDictionary()


def interrupt(engine: Engine) -> int:
    """Break any database call blocked on ``engine`` (see the module docstring)."""
    interrupter = _INTERRUPTERS.get(engine)
    return interrupter.interrupt() if interrupter is not None else 0


def _postgres_args(parsed: Any, statement_timeout_ms: int) -> dict[str, Any]:
    options = (
        f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={LOCK_TIMEOUT_MS}"
        f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
    )
    given = parsed.query.get("options")
    if isinstance(given, str) and given:
        options = f"{options} {given}"  # the URL's own options come last and win
    return {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": options,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_S,
        "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }


def make_engine(url: str, *, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; SQLite gets WAL and ``BEGIN IMMEDIATE``; every call is bounded."""
    parsed = make_url(url)
    interrupter = _Interrupter()
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
            interrupter.add_sqlite(dbapi_connection)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Readers (``read_session``) never wait for the write lock: WAL gives them a snapshot.
            read = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        _watch(engine, interrupter)
        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args=(
            _postgres_args(parsed, statement_timeout_ms)
            if parsed.get_backend_name() == "postgresql"
            else {}
        ),
    )
    if parsed.get_backend_name() == "postgresql":

        @event.listens_for(engine, "connect")
        def _pg_connect(dbapi_connection: Any, record: Any) -> None:
            pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3
            if pgconn is not None:
                interrupter.add_socket(id(dbapi_connection), pgconn.socket)

    _watch(engine, interrupter)
    return engine


def _watch(engine: Engine, interrupter: _Interrupter) -> None:
    """Forget each connection as the pool closes it, and make ``interrupt`` find the engine."""

    @event.listens_for(engine, "close")
    def _close(dbapi_connection: Any, record: Any) -> None:
        interrupter.forget(id(dbapi_connection))

    @event.listens_for(engine, "close_detached")
    def _close_detached(dbapi_connection: Any) -> None:
        interrupter.forget(id(dbapi_connection))

    _INTERRUPTERS[engine] = interrupter


def is_down(exc: BaseException) -> bool:
    """Whether an exception means the store is unreachable (worth retrying), not a bug."""
    if isinstance(exc, StoreDown | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def down_reason(exc: BaseException) -> str:
    """The first line of a driver's error, for a one-line message."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


@contextmanager
def session(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on error; driver errors → StoreDown.

    ``read_only`` on SQLite starts it with a plain ``BEGIN``, so a reader is never held
    up by a writer (for the proxy's snapshot refresh and ``explain``).
    """
    bind = engine.execution_options(**{_READ_ONLY: True}) if read_only else engine
    try:
        with Session(bind, expire_on_commit=False) as s, s.begin():
            yield s
    except OperationalError as exc:
        raise StoreDown(
            f"the store at {shown_url(str(engine.url))} is unavailable: {down_reason(exc)}"
        ) from exc
