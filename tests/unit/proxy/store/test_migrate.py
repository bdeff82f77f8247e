"""The migrations create exactly the tables the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from proxy.store import migrate
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
