"""`schoolgate console users …`, and `check`'s warning about a school with one approver."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from tests.console_accounts import PASSWORD
from tests.unit.proxy.configs import write_config
from tests.unit.proxy.test_cli_changes import POLICY


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)


def sg(config: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--config", str(config)], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_check_warns_when_only_one_person_can_approve(config: Path) -> None:
    """With one approver, their own requests could never be approved: check says so."""
    code, _, err = sg(config, "check")
    assert code == 0
    assert "only one approver (head.teacher)" in err
    policy = config / "policy.yaml"
    policy.write_text(
        policy.read_text("utf-8").replace(
            "approvers: [head.teacher]", "approvers: [head.teacher, j.meer]"
        ),
        "utf-8",
    )
    code, _, err = sg(config, "check")
    assert code == 0
    assert "only one approver" not in err


def test_users_add_prints_the_totp_uri_and_warns_of_an_unnamed_approver(config: Path) -> None:
    """An approver gets an otpauth URI; one the policy does not name is warned about."""
    both = f"{PASSWORD}\n{PASSWORD}\n"
    code, out, err = sg(
        config, "console", "users", "add", "j.meer", "--role", "approver", stdin=both
    )
    assert code == 0, err
    assert "otpauth://totp/Schoolgate:j.meer?secret=" in out
    assert "j.meer is not under approvers:" in err
    code, out, _ = sg(config, "console", "users", "add", "x.staff", "--role", "staff", stdin=both)
    assert code == 0
    assert "otpauth" not in out
    code, _, err = sg(config, "console", "users", "add", "x.staff", "--role", "staff", stdin=both)
    assert code == 1
    assert "x.staff already has an account" in err
    code, out, _ = sg(config, "console", "users", "list")
    assert out.splitlines() == ["j.meer  approver", "x.staff  staff"]
    assert sg(config, "console", "users", "disable", "x.staff")[0] == 0
    assert "x.staff  staff  disabled" in sg(config, "console", "users", "list")[1]


def test_passwords_must_match_and_be_long_enough(config: Path) -> None:
    """A short password is refused in one line; nothing is made."""
    code, _, err = sg(
        config, "console", "users", "add", "a", "--role", "staff", stdin="short\nshort\n"
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == "Error: a password needs at least 10 characters"
    assert sg(config, "console", "users", "list")[1].startswith("no console accounts")


def test_console_without_a_listen_address_says_so(config: Path) -> None:
    """With console_listen: null the console needs --listen."""
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8") + "console_listen: null\n", "utf-8")
    code, _, err = sg(config, "console")
    assert code == 1
    assert "console_listen is null" in err
