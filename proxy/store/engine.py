"""Opening the store: SQLite in ``data_dir`` by default, PostgreSQL through ``database:``.

SQLite runs in WAL mode (readers never wait for the writer) and every
transaction starts with ``BEGIN IMMEDIATE``, so two writers (the proxy's
writer thread and a CLI command) queue for the lock up front instead of
failing half-way; PostgreSQL serialises appends to the change log with a
lock taken in ``chain.append``. A store that cannot be reached is a
``StoreDown`` with a one-line reason, never a traceback.
"""

from __future__ import annotations

import sqlite3
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


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and ``BEGIN IMMEDIATE``."""
    parsed = make_url(url)
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

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Readers (``read_session``) never wait for the write lock: WAL gives them a snapshot.
            read = conn.get_execution_options().get(_READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


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
