"""The change-control commands, end to end on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from proxy.cli import cli
from proxy.store.engine import make_engine
from proxy.store.site import DEFAULT_SITE, set_site
from tests.console_accounts import acting, add_account, proof
from tests.postgres import postgres, store_url  # noqa: F401  (fixtures)
from tests.unit.proxy.configs import write_config

POLICY = """\
school: Example Primary School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
  users:
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
    - {name: j.meer, group: staff}
approvers: [head.teacher]
schedules:
  lunchtime: {days: [mon, tue, wed, thu, fri], from: "12:00", to: "13:15"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  games: {lists: [ut1/games], incident: non_educational_in_lessons}
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
      games: {acceptable_at: lunchtime}
  staff:
    default: acceptable
    categories:
      adult: unacceptable
  head: {inherits: staff}
  guest: {inherits: pupil}
local:
  allow: [www.bbc.co.uk/bitesize]
"""


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:  # noqa: F811
    """A school's config with the demo lists, a private data_dir, the store under test, and
    console accounts for the people the tests name."""
    config = write_config(tmp_path, store_url, POLICY)
    for name, role in ACCOUNTS.items():
        add_account(config, name, role)
    return config


ACCOUNTS = {"head.teacher": "approver", "j.meer": "staff", "tech": "technician", "x": "staff"}


def sg(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run a command; whoever --by names answers the password and code prompts."""
    given = stdin if stdin is not None else proof(config, *acting(args))
    result = CliRunner().invoke(cli, [*args, "--config", str(config)], input=given)
    return result.exit_code, result.stdout, result.stderr


def request(config: Path, *extra: str, by: str = "j.meer") -> str:
    code, out, err = sg(
        config,
        "override",
        "request",
        *extra,
        "--for",
        "group:pupil",
        "--days",
        "14",
        "--reason",
        "Year 9 history: propaganda posters",
        "--by",
        by,
    )
    assert code == 0, err
    return out.split()[1].lstrip("#")


def test_teacher_request_then_head_approval_opens_the_site(config: Path) -> None:
    """One short command asks; the headteacher approves; explain then names the override."""
    # Tomorrow at nine: inside the override's fortnight, outside the pupils' lunchtime games.
    at = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT09:00")
    code, out, _ = sg(
        config, "explain", "http://games-demo.example/", "--group", "pupil", "--at", at
    )
    assert "decision: block" in out
    override_id = request(config, "games-demo.example")
    code, out, err = sg(config, "override", "approve", override_id, "--by", "head.teacher")
    assert code == 0, err
    assert "approved by head.teacher" in out
    code, out, _ = sg(
        config, "explain", "http://games-demo.example/x", "--group", "pupil", "--at", at, "--json"
    )
    found = json.loads(out)
    assert (found["decision"], found["override"]) == ("allow", int(override_id))
    code, out, _ = sg(config, "override", "list", "--json")
    assert json.loads(out)["status"] == "active"


def test_requester_cannot_approve_their_own_request(config: Path) -> None:
    """The headteacher's own request needs a second person; the refusal is one line, exit 1."""
    override_id = request(config, "games-demo.example", by="head.teacher")
    code, _, err = sg(config, "override", "approve", override_id, "--by", "head.teacher")
    assert code == 1
    # Before the refusal: the prompts for head.teacher's password and code.
    assert err.strip().splitlines()[-1] == (
        f"Error: head.teacher requested override #{override_id} and cannot approve it: "
        "a second person must (two-person rule)"
    )


@pytest.mark.parametrize(
    "what",
    [
        ("--category", "child_abuse"),
        ("illegal-demo.example",),
        ("http://iwf-test.example/abuse/test-image.jpg",),
    ],
    ids=["category", "host", "url"],
)
def test_illegal_category_cannot_be_requested(config: Path, what: tuple[str, ...]) -> None:
    """Asking to open an illegal category or address is refused before anything is recorded."""
    code, _, err = sg(
        config, "override", "request", *what, "--for", "everyone", "--reason", "r", "--by", "x"
    )
    assert code == 1
    assert "can never be overridden" in err
    assert "iwf-test.example" not in err
    assert sg(config, "changes", "list")[1].strip() == "no changes"


def test_suspend_and_restore(config: Path) -> None:
    """A suspended user is blocked (explain says why) until restored; both are logged."""
    code, _, err = sg(
        config, "access", "suspend", "j.meer", "--reason", "misuse", "--by", "head.teacher"
    )
    assert code == 0, err
    code, out, _ = sg(config, "explain", "http://example.com/", "--user", "j.meer")
    assert "decision: block" in out
    assert "internet access of j.meer suspended until restored" in out
    code, out, _ = sg(config, "explain", "http://www.bbc.co.uk/bitesize/", "--user", "j.meer")
    assert "decision: allow" in out
    assert (
        sg(config, "access", "restore", "j.meer", "--reason", "ok", "--by", "head.teacher")[0] == 0
    )
    assert "decision: allow" in sg(config, "explain", "http://example.com/", "--user", "j.meer")[1]
    kinds = [line.split()[3] for line in sg(config, "changes", "list")[1].splitlines()]
    assert kinds == ["access.suspend", "access.restore"]


def test_policy_apply_shows_impact_records_and_installs(config: Path, tmp_path: Path) -> None:
    """apply validates, shows which decisions change, records the diff and writes the file."""
    policy = config / "policy.yaml"
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        policy.read_text("utf-8").replace("games: {acceptable_at: lunchtime}", "games: acceptable"),
        "utf-8",
    )
    code, out, _ = sg(
        config, "policy", "apply", str(edited), "--by", "tech", "--reason", "r", "--dry-run"
    )
    assert "group pupil: games acceptable_at:lunchtime → acceptable" in out
    assert "group guest: games acceptable_at:lunchtime → acceptable" in out  # inherited
    assert policy.read_text("utf-8") != edited.read_text("utf-8")
    code, out, err = sg(
        config, "policy", "apply", str(edited), "--by", "tech", "--reason", "games club"
    )
    assert code == 0, err
    assert policy.read_text("utf-8") == edited.read_text("utf-8")
    line = sg(config, "changes", "list", "--kind", "policy")[1].strip()
    assert "policy.apply  tech" in line
    assert line.endswith("— games club")


def test_policy_apply_rejects_a_broken_policy(config: Path, tmp_path: Path) -> None:
    """A policy with a mistake is refused with FILE:LINE and nothing is installed or logged."""
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        (config / "policy.yaml").read_text("utf-8").replace("group: staff}", "group: staf}", 1)
    )
    before = (config / "policy.yaml").read_text("utf-8")
    code, _, err = sg(config, "policy", "apply", str(edited), "--by", "tech", "--reason", "r")
    assert code == 1
    assert f"{edited}:" in err
    assert "unknown group 'staf'" in err
    assert (config / "policy.yaml").read_text("utf-8") == before


def test_verify_names_the_edited_row(config: Path, store_url: str) -> None:  # noqa: F811
    """verify passes on an intact log, then names a row edited behind its back."""
    for _ in range(3):
        request(config, "games-demo.example")
    code, out, _ = sg(config, "changes", "verify")
    assert code == 0
    assert out.startswith("verified: 3 rows, chain intact; head #3 ")
    engine = make_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE changes SET actor = 'someone.else' WHERE seq = 2"))
    engine.dispose()
    code, _, err = sg(config, "changes", "verify")
    assert code == 1
    assert err.splitlines()[0] == "row 2: contents do not match its hash: edited"


def test_export_csv_and_html_show_the_chain_head(config: Path, tmp_path: Path) -> None:
    """The governor's exports list the period's rows with the chain head and its verification."""
    override_id = request(config, "games-demo.example")
    sg(config, "override", "approve", override_id, "--by", "head.teacher")
    out_csv, out_html = tmp_path / "term.csv", tmp_path / "term.html"
    args = ("changes", "export", "--from", "2000-01-01", "--to", "2099-12-31")
    code, _, err = sg(config, *args, "--format", "csv", "--out", str(out_csv))
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out_csv.read_text("utf-8-sig"))))
    head = {r[0]: r[1:] for r in rows[:5]}
    assert head["verification"][0] == "verified"
    assert head["chain head"][0] == "row 2"
    table = rows[rows.index(["#", *rows[6][1:]]) :]
    assert [r[2] for r in table[1:3]] == ["override requested", "override approved"]
    assert table[2][8] == "head.teacher"
    code, _, err = sg(config, *args, "--format", "html", "--out", str(out_html))
    assert code == 0, err
    page = out_html.read_text("utf-8")
    assert head["chain head"][1] in page
    assert '<span class="ok">verified</span>' in page
    assert "Year 9 history: propaganda posters" in page


def test_store_down_is_one_line(config: Path) -> None:
    """A store that cannot be reached is a one-line error, not a traceback."""
    settings = config / "schoolgate.yaml"
    lines = [
        "database: postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
        if line.startswith("database:")
        else line
        for line in settings.read_text("utf-8").splitlines()
    ]
    settings.write_text("\n".join(lines) + "\n", "utf-8")
    code, _, err = sg(config, "override", "list")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("Error: the store at postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert "is unavailable" in err


def test_rows_and_exports_name_the_site_of_the_settings(config: Path, tmp_path: Path) -> None:
    """With `site:` in the settings, the CLI stamps its changes with it and the export names it."""
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8") + "site: north-academy\n", "utf-8")
    try:
        # j.meer's account was made before the site was set: move it, or the CLI refuses it
        assert sg(config, "console", "users", "scope", "j.meer", "north-academy")[0] == 0
        request(config, "games-demo.example")
        out_csv = tmp_path / "term.csv"
        args = ("changes", "export", "--from", "2000-01-01", "--to", "2099-12-31")
        code, _, err = sg(config, *args, "--format", "csv", "--out", str(out_csv))
        assert code == 0, err
        rows = list(csv.reader(io.StringIO(out_csv.read_text("utf-8-sig"))))
        table = rows[rows.index(["#", *rows[6][1:]]) :]
        assert table[0][-1] == "site"
        assert table[1][-1] == "north-academy"
    finally:
        set_site(DEFAULT_SITE)
