"""Opening the store: one-line errors when it is down, readers that never wait for writers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from proxy.store import control, migrate
from proxy.store.engine import StoreDown, make_engine, session
from tests.postgres import PostgresServer


def test_sqlite_reader_is_not_held_up_by_a_writer(tmp_path: Path) -> None:
    """While another process holds SQLite's write lock, a read-only session still reads,
    and a writing one fails as StoreDown (one line) once the busy timeout passes."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate.upgrade(engine)
    lock = sqlite3.connect(str(engine.url.database), timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with session(engine, read_only=True) as s:
            assert control.load_controls(s, datetime.now(UTC)).overrides == ()
        with (
            pytest.raises(StoreDown, match="is unavailable: database is locked"),
            session(engine) as s,
        ):
            control.record_expiries(s, datetime.now(UTC))
    finally:
        lock.rollback()
        lock.close()
        engine.dispose()


def test_unreachable_postgresql_is_store_down_without_the_password() -> None:
    """A PostgreSQL nobody listens on is StoreDown naming the URL, password hidden."""
    engine = make_engine("postgresql+psycopg://sg:secret@127.0.0.1:1/schoolgate")
    with pytest.raises(StoreDown) as caught, session(engine) as s:
        s.execute(text("SELECT 1"))
    assert "secret" not in str(caught.value)
    assert str(caught.value).startswith("the store at postgresql+psycopg://sg:***@127.0.0.1:1/")
    assert "\n" not in str(caught.value)


def test_a_call_blocked_on_the_store_is_broken_by_interrupt(store_url: str) -> None:
    """A statement that would run for a minute (a hung store, as far as the caller can tell)
    fails as StoreDown as soon as ``interrupt`` is called from another thread."""
    import threading
    import time

    from proxy.store.engine import interrupt

    engine = make_engine(store_url)
    if engine.dialect.name == "postgresql":
        slow = "SELECT pg_sleep(60)"
    else:  # a query SQLite spends minutes on
        slow = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with session(engine) as s:
                s.execute(text(slow))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(1.0)  # connected, and inside the statement
    assert thread.is_alive()
    assert interrupt(engine) >= 1
    thread.join(15)
    assert not thread.is_alive()
    assert failed
    assert isinstance(failed[0], StoreDown) or "interrupt" in str(failed[0]), failed
    engine.dispose()


def test_postgresql_connections_carry_their_timeouts(postgres: PostgresServer) -> None:
    """On PostgreSQL every connection has statement, lock and idle timeouts set."""
    engine = make_engine(postgres.url("postgres"), statement_timeout_ms=1234)
    with session(engine) as s:
        assert s.scalar(text("SHOW statement_timeout")) == "1234ms"
        assert s.scalar(text("SHOW lock_timeout")) == "10s"
        assert s.scalar(text("SHOW idle_in_transaction_session_timeout")) == "1min"
    engine.dispose()
