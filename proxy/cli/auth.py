"""The CLI's person-acting commands prove who is acting, as the console does.

``override approve``, ``override revoke``, ``access suspend`` and the rest take
``--by NAME`` and then ask for NAME's console password and, for every role
but staff, the code from their authenticator app (on the terminal, or from
standard input when it is not one). A typed name alone is refused. The
change-log row records the OS user who ran the command beside the person, so
a shared shell account is visible to the governor.

A person acts at this gateway's site: a school account of another site is
refused (as the console refuses it that school's pages), and a command that
changes every site (``trust apply``) asks for a trust account (scope ``*``).
"""

from __future__ import annotations

import getpass
from datetime import datetime

import click
from sqlalchemy import Engine, select

from proxy.cli.common import fail
from proxy.console.accounts import (
    TRUST,
    Person,
    SignInRefused,
    directory_for,
    may,
    sign_in,
    who_may,
)
from proxy.console.models import ConsoleUser
from proxy.settings import Settings
from proxy.store.engine import session
from proxy.store.site import current_site


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def prove(
    engine: Engine,
    now: datetime,
    name: str,
    action: str,
    settings: Settings | None = None,
    *,
    every_site: bool = False,
) -> tuple[Person, dict[str, object]]:
    """Ask ``name``'s password and code; the person and the details to record, or a failure.

    The person's scope must see this gateway's site (``every_site``: every site, ``*``)."""
    with session(engine, read_only=True) as s:
        role = s.scalar(select(ConsoleUser.role).where(ConsoleUser.name == name))
    password = click.prompt(f"console password for {name}", hide_input=True, err=True)
    code = ""
    if role != "staff":
        code = click.prompt("code from the authenticator app", hide_input=True, err=True)
    by_os = os_user()
    try:
        person = sign_in(
            engine,
            name,
            password,
            code,
            now,
            address=f"cli:{by_os}",
            via="cli",
            directory=directory_for(settings) if settings else None,
        )
    except SignInRefused as exc:
        raise fail(f"refused: {exc} (a console account proves who is acting)") from None
    if not may(person.role, action):
        raise fail(f"{name} is a {person.role}: only a {who_may(action)} may do this")
    # After the proof, so an unproven name learns nothing of the account's scope.
    site = current_site()
    if not person.sees(site):
        raise fail(f"{name}'s account is {person.scope}'s: it cannot act at {site}")
    if every_site and not person.every_site:
        raise fail(
            f"{name}'s account is {person.scope}'s: this changes every site, "
            f"so it needs a trust account (scope {TRUST})"
        )
    return person, {"via": "cli", "os_user": by_os}
