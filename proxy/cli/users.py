"""``schoolgate users``: keep the proxy-login users file (``auth.users_file``).

Passwords are stored only as bcrypt hashes, one ``NAME:HASH`` line per user,
the format Apache's ``htpasswd -B`` writes, so either tool can keep the file.
The file is replaced whole (temporary name, then rename) and kept private.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from proxy.cli.common import config_option, fail
from proxy.logins import UsersFile, hash_password, valid_name
from proxy.settings import load_settings
from proxy.yamlfile import ConfigError


def _users_file(config_dir: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    try:
        settings = load_settings(config_dir)
    except ConfigError as exc:
        raise fail(str(exc.problems[0])) from None
    if settings.auth.users_file is None:
        raise fail(
            f"no auth.users_file in {config_dir / 'schoolgate.yaml'}: set one, or give --file"
        )
    return settings.auth.users_file


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    UsersFile(path)  # refuse to rewrite a file that is already broken
    return path.read_text("utf-8").splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def _without(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.partition(":")[0].strip() != name]


file_option = click.option(
    "--file",
    "users_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The users file (default: auth.users_file in schoolgate.yaml).",
)


@click.group()
def users() -> None:
    """Proxy-login users: add, remove, list (bcrypt hashes in auth.users_file)."""


@users.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@file_option
@config_option
def add(name: str, password_stdin: bool, users_file: Path | None, config_dir: Path) -> None:
    """Add NAME, or set a new password for NAME."""
    if not valid_name(name):
        raise fail(f"{name!r}: a user name is printable and has no ':'")
    path = _users_file(config_dir, users_file)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise fail("the password needs at least 8 characters")
    try:
        lines = _read_lines(path)
    except ConfigError as exc:
        raise fail(str(exc.problems[0])) from None
    _write_lines(path, [*_without(lines, name), f"{name}:{hash_password(password)}"])
    click.echo(f"{name}: password set in {path}")


@users.command("remove")
@click.argument("name")
@file_option
@config_option
def remove(name: str, users_file: Path | None, config_dir: Path) -> None:
    """Remove NAME from the users file."""
    path = _users_file(config_dir, users_file)
    try:
        lines = _read_lines(path)
    except ConfigError as exc:
        raise fail(str(exc.problems[0])) from None
    kept = _without(lines, name)
    if len(kept) == len(lines):
        raise fail(f"{name!r} is not in {path}")
    _write_lines(path, kept)
    click.echo(f"{name}: removed from {path}")


@users.command("list")
@file_option
@config_option
def list_users(users_file: Path | None, config_dir: Path) -> None:
    """List the user names (never the hashes)."""
    path = _users_file(config_dir, users_file)
    try:
        names = sorted(UsersFile(path).hashes) if path.exists() else []
    except ConfigError as exc:
        raise fail(str(exc.problems[0])) from None
    for name in names:
        click.echo(name)
