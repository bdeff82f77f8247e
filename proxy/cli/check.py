"""``schoolgate check``: validate the configuration."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from proxy.cli.common import config_option
from proxy.filterset import load_filterset
from proxy.yamlfile import ConfigError


@click.command()
@config_option
def check(config_dir: Path) -> None:
    """Validate the configuration: exit 0, or print FILE:LINE: error lines."""
    try:
        fs = load_filterset(config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    for warning in fs.warnings:
        click.echo(str(warning), err=True)
    if len(fs.policy.approvers) == 1:
        click.echo(
            f"{fs.policy.source}: warning: only one approver ({fs.policy.approvers[0]}): "
            "requests they make can never be approved (a second person must); name another",
            err=True,
        )
    illegal = fs.settings.alerts.illegal
    if not (illegal.email or illegal.webhook):
        # In red: an illegal hit or a suicide search would then tell nobody at once.
        click.secho(
            f"{config_dir / 'schoolgate.yaml'}: warning: alerts.illegal names no e-mail or "
            "webhook: illegal hits and searches about suicide or self-harm alert NOBODY at once",
            err=True,
            fg="red",
            bold=True,
        )
    counts = fs.lists.counts()
    click.echo(
        f"OK: {fs.policy.source} ({len(fs.policy.groups)} groups, "
        f"{len(fs.policy.categories)} categories, {len(counts)} lists, "
        f"{sum(counts.values())} entries)"
    )
