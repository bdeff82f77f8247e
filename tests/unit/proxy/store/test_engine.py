"""Opening the store: one-line errors when it is down, readers that never wait for writers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from proxy.store import control, migrate
from proxy.store.engine import StoreDown, make_engine, session


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
