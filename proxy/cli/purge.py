"""``schoolgate purge``: delete what is past retention_days.

By default only this gateway's site's rows go (another school keeps its own
retention); ``--every-site`` is the explicit trust-wide purge, by this site's
retention.
"""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.common import config_option, fail, open_store
from proxy.incidents.retention import purge_all


@click.command()
@click.option(
    "--every-site",
    is_flag=True,
    help="Purge every school's closed incidents and searches too, by this site's retention "
    "(default: this site's only).",
)
@config_option
def purge(every_site: bool, config_dir: Path) -> None:
    """Delete what is past retention_days: closed incidents, searches, alert deliveries,
    access-log lines."""
    store = open_store(config_dir)
    try:
        counts = purge_all(store.fs.settings, store.engine, store.now(), every_site=every_site)
    except Exception as exc:
        raise fail(f"purge failed: {exc}") from None
    where = "every site" if every_site else store.fs.settings.site
    done = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in counts.items())
    click.echo(f"purged: {done} (at {where})")
