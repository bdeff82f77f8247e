"""The CLI's person-acting commands prove who is acting, as the console does.

``override approve``, ``override revoke``, ``access suspend`` and the rest take
``--by NAME`` and then ask for NAME's console password and, for every role
but staff, the code from their authenticator app (on the terminal, or from
standard input when it is not one). A typed name alone is refused. The
change-log row records the OS user who ran the command beside the person, so
a shared shell account is visible to the governor.
"""

from __future__ import annotations

import getpass
from datetime import datetime

import click
from sqlalchemy import Engine, select

from proxy.cli.common import fail
from proxy.console.accounts import Person, SignInRefused, directory_for, may, sign_in, who_may
from proxy.console.models import ConsoleUser
from proxy.settings import Settings
from proxy.store.engine import session


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def prove(
    engine: Engine, now: datetime, name: str, action: str, settings: Settings | None = None
) -> tuple[Person, dict[str, object]]:
    """Ask ``name``'s password and code; the person and the details to record, or a failure."""
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
    return person, {"via": "cli", "os_user": by_os}
