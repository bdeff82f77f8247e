"""``schoolgate db upgrade``: the store's schema."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.common import config_option, open_store


@click.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_dir: Path) -> None:
    """Apply the database migrations (also done by `schoolgate run` at start)."""
    store = open_store(config_dir)
    click.echo(f"store up to date: {store.engine.url.render_as_string(hide_password=True)}")
