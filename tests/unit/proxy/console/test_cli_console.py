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
    assert out.splitlines() == ["j.meer  approver  main", "x.staff  staff  main"]
    assert sg(config, "console", "users", "disable", "x.staff")[0] == 0
    assert "x.staff  staff  main  disabled" in sg(config, "console", "users", "list")[1]


def test_an_account_is_made_for_a_school_or_the_trust_and_its_scope_changed(
    config: Path,
) -> None:
    """--site names the school an account sees (default: this gateway's), * the whole trust;
    `users scope` changes it, and the listing shows it; a scope no site can be is refused."""
    both = f"{PASSWORD}\n{PASSWORD}\n"
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8") + "site: north\n", "utf-8")
    add = ("console", "users", "add")
    code, out, err = sg(config, *add, "n.dsl", "--role", "dsl", stdin=both)
    assert code == 0, err
    assert "(Designated safeguarding lead, sees north)" in out
    code, out, err = sg(config, *add, "s.dsl", "--role", "dsl", "--site", "south", stdin=both)
    assert code == 0, err
    code, out, err = sg(config, *add, "t.tech", "--role", "technician", "--site", "*", stdin=both)
    assert code == 0, err
    assert "whole trust" in out
    code, _, err = sg(config, *add, "x.y", "--role", "staff", "--site", "North!", stdin=both)
    assert code == 1
    assert "a site is lower-case letters" in err.strip().splitlines()[-1]
    listed = sg(config, "console", "users", "list")[1].splitlines()
    assert listed == ["n.dsl  dsl  north", "s.dsl  dsl  south", "t.tech  technician  *"]
    code, out, err = sg(config, "console", "users", "scope", "s.dsl", "*")
    assert (code, out.strip()) == (0, "s.dsl: whole trust"), err
    code, out, err = sg(config, "console", "users", "scope", "t.tech", "north")
    assert (code, out.strip()) == (0, "t.tech: sees north"), err
    listed = sg(config, "console", "users", "list")[1].splitlines()
    assert listed == ["n.dsl  dsl  north", "s.dsl  dsl  *", "t.tech  technician  north"]
    code, _, err = sg(config, "console", "users", "scope", "nobody", "north")
    assert code == 1
    assert err.strip().splitlines()[-1] == "Error: no console account 'nobody'"
    code, _, err = sg(config, "console", "users", "scope", "n.dsl", "")
    assert code == 1
    assert "a site is lower-case letters" in err


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
