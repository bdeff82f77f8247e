"""Console accounts for tests: make them, and answer the CLI's password and code prompts.

The CLI's person-acting commands ask for the person's console password and
TOTP code on standard input. ``proof`` gives that input for a named account.
A TOTP code is accepted once only (RFC 6238: a replayed code is refused), and
a real person waits for the app's next code; a test that acts twice within
30 seconds stands in for that wait by clearing the account's last used step
before each proof.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
from click.testing import CliRunner
from sqlalchemy import update

from proxy.cli import cli
from proxy.console.models import ConsoleUser
from proxy.settings import load_settings
from proxy.store import migrate
from proxy.store.engine import database_url, make_engine, session

PASSWORD = "a long test password"


def add_account(
    config_dir: Path, name: str, role: str, password: str = PASSWORD, site: str | None = None
) -> str | None:
    """Make the account with ``schoolgate console users add`` (``site``: its scope, a site or
    ``*``; default the configuration's site); its TOTP secret (None: staff)."""
    scope = ["--site", site] if site is not None else []
    result = CliRunner().invoke(
        cli,
        ["console", "users", "add", name, "--role", role, *scope, "--config", str(config_dir)],
        input=f"{password}\n{password}\n",
    )
    assert result.exit_code == 0, result.stderr
    found = re.search(r"secret=([A-Z2-7]+)", result.stdout)
    return found.group(1) if found else None


def code_for(config_dir: Path, name: str) -> str:
    """The account's current code, with its last used step cleared (see the module doc)."""
    engine = make_engine(database_url(load_settings(config_dir)))
    try:
        with session(engine) as s:
            user = s.query(ConsoleUser).filter(ConsoleUser.name == name).one_or_none()
            if user is None or user.totp_secret is None:
                return ""
            s.execute(
                update(ConsoleUser).where(ConsoleUser.name == name).values(totp_last_step=None)
            )
            return pyotp.TOTP(user.totp_secret).now()
    finally:
        engine.dispose()


def proof(config_dir: Path, *names: str, password: str = PASSWORD) -> str:
    """Standard input answering the prompts for each of ``names`` in turn."""
    lines = []
    for name in names:
        code = code_for(config_dir, name)
        lines.append(password)
        if code or not _is_staff(config_dir, name):
            lines.append(code or "000000")
    return "".join(f"{line}\n" for line in lines)


def _is_staff(config_dir: Path, name: str) -> bool:
    engine = make_engine(database_url(load_settings(config_dir)))
    try:
        with session(engine, read_only=True) as s:
            role = s.query(ConsoleUser.role).filter(ConsoleUser.name == name).scalar()
            return bool(role == "staff")
    finally:
        engine.dispose()


def acting(args: tuple[str, ...] | list[str]) -> list[str]:
    """The names a command's ``--by``, ``--first`` and ``--second`` options give, in order."""
    names = []
    for i, arg in enumerate(args[:-1]):
        if arg in ("--by", "--first", "--second"):
            names.append(args[i + 1])
    return names


def ensure_account(config_dir: Path, name: str, role: str, site: str | None = None) -> None:
    """Make the account unless this configuration's store has it already."""
    engine = make_engine(database_url(load_settings(config_dir)))
    try:
        migrate.upgrade(engine)
        with session(engine, read_only=True) as s:
            found = s.query(ConsoleUser.id).filter(ConsoleUser.name == name).first()
    finally:
        engine.dispose()
    if found is None:
        add_account(config_dir, name, role, site=site)
