"""``schoolgate console``: run the web console, and manage its accounts.

``schoolgate console`` serves the console on ``console_listen`` (``run``
starts it too); ``schoolgate console users add NAME --role R`` makes an
account, asking for the password (twice, on the terminal or from standard
input) and printing the TOTP provisioning URI to put in an authenticator app.
An account sees one school's rows (``--site NAME``, by default this gateway's
site) or every school's (``--site '*'``); ``users scope`` changes that later.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import click

from proxy.cli.common import config_option, fail, open_filterset, open_store
from proxy.console import accounts


@click.group(invoke_without_command=True)
@config_option
@click.option("--listen", help="HOST:PORT (default: console_listen in schoolgate.yaml).")
@click.option("--supervised", is_flag=True, hidden=True, help="Started by `schoolgate run`.")
@click.pass_context
def console(ctx: click.Context, config_dir: Path, listen: str | None, supervised: bool) -> None:
    """The web console: sign-in with roles; the head's inbox, the technician's status and
    "test a URL", the governor's read-only change log (`run` starts it too)."""
    if ctx.invoked_subcommand is not None:
        return
    from proxy.console.server import serve

    fs = open_filterset(config_dir)
    where = listen or fs.settings.console_listen
    if where is None:
        raise fail("console_listen is null in schoolgate.yaml: give --listen HOST:PORT")
    if supervised:
        from proxy.console.child import stop_when_orphaned

        stop_when_orphaned(os.getppid())
    serve(config_dir, where)


@console.group()
def users() -> None:
    """Console accounts: add, list, scope, unlock, disable."""


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(list(accounts.ROLES)))
@click.option("--email", help="Where to tell them of answers to their requests.")
@click.option(
    "--ldap", is_flag=True, help="Their password is the directory's (auth.ldap): none is stored."
)
@click.option(
    "--site",
    "scope",
    metavar="NAME|*",
    help="The school whose rows they see, or * for every school of the trust "
    "(default: the site in schoolgate.yaml).",
)
@config_option
def users_add(
    name: str, role: str, email: str | None, ldap: bool, scope: str | None, config_dir: Path
) -> None:
    """Make an account for NAME (their proxy login name); prints the TOTP setup URI."""
    store = open_store(config_dir)
    if ldap and store.fs.settings.auth.ldap is None:
        raise fail("--ldap needs auth.ldap in schoolgate.yaml (the directory to bind to)")
    password = (
        ""
        if ldap
        else click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    )
    with store.session() as s:
        try:
            _, uri = accounts.add_user(
                s, name, role, password, datetime.now(UTC), email=email, ldap=ldap, scope=scope
            )
        except accounts.AccountError as exc:
            raise fail(str(exc)) from None
    sees = _scope(scope or store.fs.settings.site)
    click.echo(f"{name}: console account made ({accounts.ROLES[role]}, {sees})")
    if uri:
        click.echo("add this to their authenticator app (as a QR code or typed in):")
        click.echo(uri)
    if role == "approver" and name not in store.fs.policy.approvers:
        click.echo(
            f"warning: {name} is not under approvers: in {store.fs.policy.source}; "
            "they cannot approve until the policy names them",
            err=True,
        )


@users.command("list")
@config_option
def users_list(config_dir: Path) -> None:
    """Every account, its role, its scope (a site, or * for the trust), and whether it is
    locked or disabled."""
    store = open_store(config_dir)
    now = datetime.now(UTC)
    with store.session() as s:
        found = accounts.users(s)
    for user in found:
        state = "disabled" if user.disabled else ""
        if user.locked_until and user.locked_until > now:
            state = f"locked until {user.locked_until:%H:%M} UTC"
        click.echo(f"{user.name}  {user.role}  {user.site}  {state}".rstrip())
    if not found:
        click.echo("no console accounts: add one with `schoolgate console users add`")


def _scope(scope: str) -> str:
    return "whole trust" if scope == accounts.TRUST else f"sees {scope}"


@users.command("scope")
@click.argument("name")
@click.argument("site", metavar="SITE|*")
@config_option
def users_scope(name: str, site: str, config_dir: Path) -> None:
    """Make NAME see one school's rows (SITE), or every school's (*, a trust account)."""
    store = open_store(config_dir)
    with store.session() as s:
        try:
            accounts.set_scope(s, name, site)
        except accounts.AccountError as exc:
            raise fail(str(exc)) from None
    click.echo(f"{name}: {_scope(site)}")


def _set(config_dir: Path, name: str, **values: object) -> None:
    store = open_store(config_dir)
    with store.session() as s:
        user = accounts.find_user(s, name)
        if user is None:
            raise fail(f"no console account {name!r}")
        for key, value in values.items():
            setattr(user, key, value)


@users.command("unlock")
@click.argument("name")
@config_option
def users_unlock(name: str, config_dir: Path) -> None:
    """Lift a lockout after repeated failures."""
    _set(config_dir, name, locked_until=None)
    click.echo(f"{name} unlocked")


@users.command("disable")
@click.argument("name")
@config_option
def users_disable(name: str, config_dir: Path) -> None:
    """Stop NAME signing in (their sessions end at their next page)."""
    _set(config_dir, name, disabled=True)
    click.echo(f"{name} disabled")
