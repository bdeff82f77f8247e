"""Alembic environment for Schoolgate's store.

The connection comes from ``proxy.store.migrate.upgrade`` (``schoolgate db
upgrade``, ``schoolgate run``), or, for the ``alembic`` command itself (as in
``make migrations-check``), from ``-x url=…``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import proxy.console.models
import proxy.incidents.models  # noqa: F401  (the incident tables share Base)
from proxy.store.engine import make_engine
from proxy.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database as: alembic -x url=sqlite:///PATH …")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
