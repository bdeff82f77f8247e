"""The README documents every command the CLI has, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from proxy.cli import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def commands() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for name, command in sorted(cli.commands.items()):
        if isinstance(command, click.Group):
            found += [(name, sub) for sub in sorted(command.commands)]
        else:
            found.append((name, None))
    return found


@pytest.mark.parametrize(("name", "sub"), commands())
def test_every_command_is_in_the_readme(name: str, sub: str | None) -> None:
    """Each command, and each subcommand of a group, appears on a README line for it."""
    lines = [line for line in README.splitlines() if f"schoolgate {name}" in line]
    assert lines, f"README never mentions `schoolgate {name}`"
    if sub is not None:
        assert any(re.search(rf"\b{re.escape(sub)}\b", line) for line in lines), (
            f"README has no line for `schoolgate {name} {sub}`"
        )
