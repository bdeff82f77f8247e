"""``schoolgate purge``: delete what is past retention_days."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.common import config_option, fail, open_store
from proxy.incidents.retention import purge_all


@click.command()
@config_option
def purge(config_dir: Path) -> None:
    """Delete what is past retention_days: closed incidents, searches, access-log lines."""
    store = open_store(config_dir)
    try:
        counts = purge_all(store.fs.settings, store.engine, store.now())
    except Exception as exc:
        raise fail(f"purge failed: {exc}") from None
    click.echo(
        "purged: " + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())
    )
