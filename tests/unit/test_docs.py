"""The README documents every command the CLI has, so the two cannot drift apart."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from proxy.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


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


def _readme_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_cli", ROOT / "tools" / "readme_cli.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_reference_is_what_the_cli_generates() -> None:
    """The README's command table equals tools/readme_cli.py's rendering of every --help."""
    tool = _readme_cli()
    block = tool.current(README)
    assert block is not None, "README.md lost the cli-reference markers"
    assert block == tool.render(cli), (
        "README.md's command reference is stale: run .venv/bin/python tools/readme_cli.py"
    )


def test_the_command_reference_names_every_command_once() -> None:
    """Every visible command has a row, none twice; hidden options (run --worker) stay out."""
    tool = _readme_cli()
    rows = [line for line in tool.render(cli).splitlines() if line.startswith("| `schoolgate ")]
    assert len({row.split("`")[1] for row in rows}) == len(rows)
    for name, sub in commands():
        path = f"schoolgate {name} {sub}" if sub else f"schoolgate {name}"
        assert any(re.match(rf"\| `{path}[ `]", row) for row in rows), path
    (run,) = [row for row in rows if row.startswith("| `schoolgate run`")]
    assert "`--workers " in run
    assert "`--worker`" not in run
