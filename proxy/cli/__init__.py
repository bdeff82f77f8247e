"""The ``schoolgate`` command line.

Every subcommand takes ``--config DIR`` (default ``config/``), has
``--help``, and fails with a one-line reason and a non-zero exit on bad
input. Commands are thin: they load a filterset and call the core.
"""

from __future__ import annotations

import click

from proxy.cli import (
    access,
    ca,
    changes,
    check,
    console,
    content,
    db,
    explain,
    incidents,
    lists,
    override,
    policy,
    purge,
    report,
    run,
    trust,
    users,
)
from proxy.files import set_private_umask


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="schoolgate")
def cli() -> None:
    """Schoolgate: a web filter for schools."""
    # Before any command writes: data files are the service user's alone (proxy/files.py).
    set_private_umask()


def main() -> None:
    cli(prog_name="schoolgate")


# The order they were registered in before the package: the README's reference follows it.
cli.add_command(check.check)  # validate the configuration (proxy/cli/check.py)
cli.add_command(explain.explain)  # the decision for a URL and why (proxy/cli/explain.py)
cli.add_command(run.run)  # start the filter and its console (proxy/cli/run.py)
cli.add_command(override.override)  # unblocks approved by a second person (proxy/cli/override.py)
cli.add_command(access.access)  # suspend, restore, list (proxy/cli/access.py)
cli.add_command(policy.policy)  # apply a policy change (proxy/cli/policy.py)
cli.add_command(changes.changes)  # the change log: list, export, verify (proxy/cli/changes.py)
cli.add_command(db.db)  # upgrade the store's schema (proxy/cli/db.py)
cli.add_command(users.users)  # proxy-login users file (proxy/cli/users.py)
cli.add_command(incidents.incidents)  # the incident log (proxy/cli/incidents.py)
cli.add_command(report.report)  # the termly report (proxy/cli/report.py)
cli.add_command(purge.purge)  # delete what is past retention (proxy/cli/purge.py)
cli.add_command(lists.lists)  # compile, update, lookup, stats (proxy/cli/lists.py)
cli.add_command(ca.ca)  # show, rotate: the school's CA (proxy/cli/ca.py)
cli.add_command(console.console)  # the web console and its accounts (proxy/cli/console.py)
cli.add_command(content.content)  # learned, confirm, reject (proxy/cli/content.py)
cli.add_command(trust.trust)  # apply a trust policy change at every site (proxy/cli/trust.py)
