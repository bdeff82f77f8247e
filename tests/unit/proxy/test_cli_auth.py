"""The CLI's person-acting commands need the person's console password and code."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.cli import cli
from proxy.store.engine import make_engine, session
from proxy.store.models import Change
from tests.console_accounts import PASSWORD, add_account, code_for
from tests.unit.proxy.configs import write_config
from tests.unit.proxy.test_cli_changes import POLICY


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A school with an approver and a teacher who have console accounts, and one request."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)
    add_account(config, "head.teacher", "approver")
    add_account(config, "j.meer", "staff")
    request = ["override", "request", "games-demo.example", "--for", "group:pupil"]
    request += ["--reason", "Year 9 history", "--by", "j.meer", "--config", str(config)]
    result = CliRunner().invoke(cli, request, input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.stderr
    return config


def changes(config: Path) -> list[Change]:
    engine = make_engine(f"sqlite:///{config.parent / 'store.db'}")
    with session(engine) as s:
        return list(s.scalars(select(Change).order_by(Change.seq)))


def approve(config: Path, by: str, stdin: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["override", "approve", "1", "--by", by, "--config", str(config)], input=stdin
    )
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("by", "answers"),
    [
        ("head.teacher", "not the password\n{code}\n"),
        ("head.teacher", f"{PASSWORD}\n000000\n"),
        ("head.teacher", f"{PASSWORD}\n"),
        ("someone.else", f"{PASSWORD}\n000000\n"),
    ],
    ids=["wrong-password", "wrong-code", "no-code", "no-account"],
)
def test_an_unproven_approval_is_refused_and_records_nothing(
    config: Path, by: str, answers: str
) -> None:
    """A typed name is not enough: without the password and code nothing is approved."""
    stdin = answers.format(code=code_for(config, "head.teacher"))
    code, err = approve(config, by, stdin)
    assert code != 0
    assert "refused" in err or "Aborted" in err
    assert [c.kind for c in changes(config)] == ["override.request"]


def test_a_teacher_cannot_approve_even_with_their_own_password(config: Path) -> None:
    """Proving who you are is not enough: the role must be allowed to approve."""
    code, err = approve(config, "j.meer", f"{PASSWORD}\n")
    assert code == 1
    assert "j.meer is a staff: only a approver may do this" in err
    assert [c.kind for c in changes(config)] == ["override.request"]


def test_a_proven_approval_records_the_person_and_the_os_user(config: Path) -> None:
    """The change row names the approver and the operating-system user who ran the command."""
    code, err = approve(config, "head.teacher", f"{PASSWORD}\n{code_for(config, 'head.teacher')}\n")
    assert code == 0, err
    row = changes(config)[-1]
    assert (row.kind, row.actor) == ("override.approve", "head.teacher")
    details = json.loads(row.details)
    assert details["via"] == "cli"
    assert details["os_user"] == getpass.getuser()


def test_a_school_account_of_another_site_cannot_act_at_this_gateway(config: Path) -> None:
    """A teacher whose account is south's proves who they are at this gateway (site main)
    and is refused in one line; made a trust account (scope *), the same request goes."""
    add_account(config, "s.staff", "staff", site="south")
    request = ["override", "request", "games-demo.example", "--for", "group:pupil"]
    request += ["--reason", "Year 9 history", "--by", "s.staff", "--config", str(config)]
    result = CliRunner().invoke(cli, request, input=f"{PASSWORD}\n")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: s.staff's account is south's: it cannot act at main"
    )
    assert [c.kind for c in changes(config)] == ["override.request"]
    scoped = CliRunner().invoke(
        cli, ["console", "users", "scope", "s.staff", "*", "--config", str(config)]
    )
    assert scoped.exit_code == 0, scoped.stderr
    result = CliRunner().invoke(cli, request, input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.stderr
    assert changes(config)[-1].actor == "s.staff"
