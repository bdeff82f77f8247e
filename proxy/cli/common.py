"""What every ``schoolgate`` subcommand shares: ``--config``, one-line errors, loading.

Each command module imports these rather than defining its own, so every
command takes ``--config DIR`` the same way and fails the same way.
"""

from __future__ import annotations

from pathlib import Path

import click

from proxy.filterset import Filterset, load_filterset
from proxy.yamlfile import ConfigError

config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("config"),
    show_default=True,
    help="Folder holding schoolgate.yaml and policy.yaml.",
)


def fail(message: str) -> click.ClickException:
    """A one-line error for the user; exit status 1 (2 is click's own usage errors)."""
    return click.ClickException(message.replace("\n", "; "))


def open_filterset(config_dir: Path) -> Filterset:
    """The configuration, or every problem on stderr and the first as the one-line error."""
    try:
        return load_filterset(config_dir)
    except ConfigError as exc:
        for problem in exc.problems[1:]:
            click.echo(str(problem), err=True)
        raise fail(str(exc.problems[0])) from None
