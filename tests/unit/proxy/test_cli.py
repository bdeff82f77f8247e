"""The command line: check, explain, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped config/ with source paths pointing at the demo lists."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    settings = target / "schoolgate.yaml"
    text = settings.read_text(encoding="utf-8").replace("../blocklists", str(ROOT / "blocklists"))
    settings.write_text(text.replace("data_dir: ../var", f"data_dir: {tmp_path / 'var'}"), "utf-8")
    return target


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_accepts_the_shipped_config(config: Path) -> None:
    """check exits 0 and warns about the list the demo source lacks."""
    code, out, err = invoke("check", "--config", str(config))
    assert code == 0, err
    assert out.startswith("OK: ")
    assert "warning: list 'ut1/strict_redirector' is not in source 'ut1'" in err


def test_check_reports_file_and_line(config: Path) -> None:
    """A broken policy gives FILE:LINE lines and exit 1."""
    policy = config / "policy.yaml"
    policy.write_text(
        policy.read_text("utf-8").replace("group: staff}", "group: staf}", 1), "utf-8"
    )
    code, _, err = invoke("check", "--config", str(config))
    assert code == 1
    assert err.splitlines() == [f"{policy}:19: unknown group 'staf'"]


def test_missing_list_of_illegal_category_is_an_error(config: Path) -> None:
    """Nothing may weaken an illegal category, so its missing list is an error."""
    policy = config / "policy.yaml"
    policy.write_text(
        policy.read_text("utf-8").replace("lists: [iwf]", "lists: [ut1/nothing]"), "utf-8"
    )
    code, _, err = invoke("check", "--config", str(config))
    assert code == 1
    assert "list 'ut1/nothing' of illegal category 'child_abuse' is missing" in err


def test_local_allow_of_illegal_entry_is_rejected(config: Path) -> None:
    """A local allow entry that would open an illegal entry is rejected."""
    policy = config / "policy.yaml"
    policy.write_text(
        policy.read_text("utf-8").replace(
            "allow: [www.bbc.co.uk/bitesize]",
            "allow: [www.bbc.co.uk/bitesize, illegal-demo.example]",
        ),
        "utf-8",
    )
    code, _, err = invoke("check", "--config", str(config))
    assert code == 1
    assert "would open an illegal category" in err


def test_missing_config_folder_is_one_line(tmp_path: Path) -> None:
    """A config folder that does not exist is a one-line error."""
    code, _, err = invoke(
        "explain", "http://x.example/", "--group", "pupil", "--config", str(tmp_path / "nope")
    )
    assert code == 1
    assert err.strip() == f"Error: {tmp_path / 'nope'}: configuration folder not found"


def test_unreadable_list_is_one_line(config: Path) -> None:
    """A list source that is not there is a one-line error naming it."""
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8").replace("iwf.txt", "missing.txt"), "utf-8")
    code, _, err = invoke("check", "--config", str(config))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "missing.txt" in err


def test_explain_json_has_the_documented_keys(config: Path) -> None:
    """explain --json prints decision, category, action, incident, matched and rule."""
    code, out, _ = invoke(
        "explain",
        "http://img.adult-demo.example/x",
        "--ip",
        "10.10.4.4",
        "--json",
        "--config",
        str(config),
    )
    assert code == 0
    found = json.loads(out)
    assert found["decision"] == "block"
    assert found["category"] == "adult"
    assert found["action"] == "unacceptable"
    assert found["incident"] == "unacceptable"
    assert found["matched"] == {"list": "ut1/adult", "entry": "adult-demo.example"}
    assert found["rule"] == "group pupil: adult is unacceptable"
    assert found["identity"]["group"] == "pupil"


@pytest.mark.parametrize(
    ("at", "decision"),
    [
        ("2026-11-23T12:30", "allow"),
        ("2026-11-23T12:30+00:00", "allow"),
        ("2026-11-23T12:30-05:00", "block"),
        ("2026-11-23T09:00", "block"),
    ],
)
def test_explain_at_uses_the_policy_timezone(config: Path, at: str, decision: str) -> None:
    """--at without a zone is school time; with one, it is converted."""
    code, out, _ = invoke(
        "explain",
        "http://games-demo.example/",
        "--group",
        "pupil",
        "--at",
        at,
        "--json",
        "--config",
        str(config),
    )
    assert code == 0
    assert json.loads(out)["decision"] == decision


def test_explain_user_and_illegal(config: Path) -> None:
    """A named user is found by name; an illegal hit is explained without its URL."""
    code, out, _ = invoke(
        "explain",
        "http://iwf-test.example/abuse/test-image.jpg",
        "--user",
        "head.teacher",
        "--json",
        "--config",
        str(config),
    )
    assert code == 0
    found = json.loads(out)
    assert found["incident"] == "illegal"
    assert "iwf-test" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "wizards"], "unknown group 'wizards'"),
        (["--user", "nobody"], "unknown user 'nobody'"),
        (["--ip", "10.1"], "not an IP address"),
        (["--group", "pupil", "--at", "teatime"], "not an ISO 8601 time"),
        (["--group", "pupil", "--user", "j.meer"], "exactly one of"),
    ],
)
def test_explain_bad_input_is_one_line(config: Path, args: list[str], message: str) -> None:
    """Each bad argument is a single line and exit 1."""
    code, _, err = invoke("explain", "http://x.example/", *args, "--config", str(config))
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_explain_bad_url(config: Path) -> None:
    """A URL that cannot be normalised is a one-line error."""
    code, _, err = invoke(
        "explain", "http://exa mple.com/", "--group", "pupil", "--config", str(config)
    )
    assert code == 1
    assert "not a URL" in err


def test_every_subcommand_has_help() -> None:
    """Every subcommand answers --help."""
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        code, out, _ = invoke(name, "--help")
        assert code == 0
        assert "--help" in out or "Usage" in out


def test_check_says_in_red_when_nobody_is_alerted(config: Path) -> None:
    """No e-mail or webhook under alerts.illegal: check warns in red (exit 0, it is a warning);
    with one, the warning is gone."""
    result = CliRunner().invoke(cli, ["check", "--config", str(config)], color=True)
    assert result.exit_code == 0
    assert "alerts.illegal names no e-mail or webhook" in result.stderr
    assert "\x1b[31m" in result.stderr  # red
    settings = config / "schoolgate.yaml"
    text = settings.read_text("utf-8").replace(
        "illegal: {webhook: null, email: []}",
        "illegal: {webhook: null, email: [dsl@school.example]}",
    )
    settings.write_text(text, "utf-8")
    code, _, err = invoke("check", "--config", str(config))
    assert code == 0, err
    assert "alerts.illegal" not in err
