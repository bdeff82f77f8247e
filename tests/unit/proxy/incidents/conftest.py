"""The incident store tests run twice: on SQLite and on the real PostgreSQL the tests start."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from proxy.store import migrate
from proxy.store.engine import make_engine
from tests.postgres import postgres, store_url  # noqa: F401  (pytest finds fixtures by import)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:  # noqa: F811
    """The store at ``store_url``, migrated to the newest schema (incidents included)."""
    eng = make_engine(store_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()
