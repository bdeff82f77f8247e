"""The migrations create exactly the tables the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from proxy.store import migrate
from proxy.store.engine import make_engine
from proxy.store.models import Base


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    """`alembic check` on both backends: nothing left for autogenerate to add or drop."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    """`schoolgate run` upgrades at every start: an up-to-date store is left as it is."""
    migrate.upgrade(engine)
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    assert len(heads) == 1


def test_workers_starting_together_upgrade_one_at_a_time(store_url: str) -> None:
    """Several processes upgrading a new store at once all succeed (the upgrade is locked)."""
    engines = [make_engine(store_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
