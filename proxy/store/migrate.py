"""Bringing the store's schema up to date with the Alembic migrations in ``migrations/``.

``schoolgate db upgrade`` calls ``upgrade``; so does ``schoolgate run`` at
start (and the writer again whenever the store comes back), so a fresh
install or a new release needs no separate step.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
# PostgreSQL: workers starting together upgrade one at a time (SQLite: BEGIN IMMEDIATE).
_LOCK_KEY = 0x5C400D


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Run every migration not yet applied, on ``engine``'s database."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    logging.getLogger("alembic").setLevel(logging.WARNING)  # not a line per start in the log
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
