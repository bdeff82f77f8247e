"""The incident commands, end to end on a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents import store as log
from proxy.incidents.escalation import load_escalation
from proxy.incidents.events import IWF_NOTICE, concerning_search, from_decision, search_event
from proxy.store import migrate
from proxy.store.engine import make_engine, session
from tests.console_accounts import acting, add_account, proof
from tests.postgres import postgres, store_url  # noqa: F401  (fixtures)
from tests.unit.proxy.configs import write_config

ROOT = Path(__file__).resolve().parents[3]
IWF_URL = "iwf-test.example/abuse/test-image.jpg"
PUPILS = ("p.smith", "j.jones")
TERM_START = f"{datetime.now(UTC) - timedelta(days=60):%Y-%m-%d}"
TERM_END = f"{datetime.now(UTC) + timedelta(days=30):%Y-%m-%d}"
POLICY = """\
school: Example Primary School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
  users:
    - {name: p.smith, group: pupil}
    - {name: j.jones, group: pupil}
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
groups:
  pupil:
    default: acceptable
    categories: {adult: unacceptable}
  head: {default: acceptable}
  guest: {inherits: pupil}
"""


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:  # noqa: F811
    """A config with the shipped escalation and terms files and three incidents in the store."""
    target = write_config(tmp_path, store_url, POLICY)
    add_account(target, "a.dsl", "dsl")
    add_account(target, "b.head", "approver")
    for name in ("escalation.yaml", "concerning-terms.yaml"):
        shutil.copy(ROOT / "config" / name, target / name)
    escalation = load_escalation(target / "escalation.yaml")
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    now = datetime.now(UTC) - timedelta(days=3)
    smith = Identity("p.smith", "pupil", "10.10.0.7", "login", "LAB-03")

    def decision(category: str, illegal: bool) -> Decision:
        return Decision(
            decision="block",
            category=category,
            action="unacceptable",
            incident="illegal" if illegal else "unacceptable",
            incident_type="illegal" if illegal else "deliberate_offensive",
            matched=Matched("iwf" if illegal else "ut1/adult", WITHHELD if illegal else "x"),
            rule="r",
            group="pupil",
            user="p.smith",
        )

    with session(engine) as s:
        for minutes in (0, 1, 2):
            event = from_decision(
                decision("adult", False),
                smith,
                "adult-demo.example/p.smith-page",
                now + timedelta(minutes=minutes),
                b"k" * 32,
                "SG-1",
                escalation,
            )
            assert event is not None
            log.record_incident(s, event)
        event = from_decision(
            decision("child_abuse", True), smith, IWF_URL, now, b"k" * 32, "SG-2", escalation
        )
        assert event is not None
        log.record_incident(s, event)
        jones = Identity("j.jones", "pupil", "10.10.0.8", "login")
        log.record_search(s, search_event(jones, "google", "volcano facts", None, now))
        log.record_search(s, search_event(jones, "google", "how to kill myself", "suicide", now))
        log.record_incident(
            s,
            concerning_search(jones, "google", "how to kill myself", "suicide", "kill myself", now),
        )
    engine.dispose()
    return target


def sg(config: Path, *args: str) -> tuple[int, str, str]:
    """Run a command; whoever --by, --first and --second name answer the password prompts."""
    result = CliRunner().invoke(
        cli, [*args, "--config", str(config)], input=proof(config, *acting(args))
    )
    return result.exit_code, result.stdout, result.stderr


REVIEW = [
    "--first-position",
    "Designated Safeguarding Lead",
    "--second-position",
    "Headteacher",
    "--computer",
    "DSL laptop, safeguarding office",
    "--reason",
    "three attempts on an adult site",
    "--conclusion",
    "deliberate",
    "--action",
    "parents informed; warning",
]


def test_list_shows_the_rolled_up_incident(config: Path) -> None:
    """The three adult hits are one incident of count 3; the illegal one shows the notice only."""
    code, out, _ = sg(config, "incidents", "list", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    adult = next(r for r in rows if r["category"] == "adult")
    assert adult["count"] == 3
    assert "Inform parents / carers" in adult["recommended_actions"]
    illegal = next(r for r in rows if r["severity"] == "illegal")
    assert illegal["notice"] == IWF_NOTICE
    assert illegal["url"] is None
    assert "iwf-test.example" not in out


def test_show_of_an_illegal_incident_never_shows_the_url(config: Path) -> None:
    """`incidents show` of the illegal hit says it matched the IWF list, not where."""
    code, out, _ = sg(config, "incidents", "show", "2")
    assert code == 0
    assert IWF_NOTICE in out
    assert "Refer to Police" in out
    assert "iwf-test.example" not in out


def test_review_by_one_person_is_refused(config: Path) -> None:
    """The same person cannot be both reviewers, whatever the case or spacing."""
    code, _, err = sg(
        config, "incidents", "review", "1", "--first", "a.dsl", "--second", "A.DSL", *REVIEW
    )
    assert code == 1
    assert "two different people" in err


def test_review_close_and_export(config: Path) -> None:
    """A two-person review, then close; the C3 export has reviewers, action and outcome."""
    code, _, err = sg(config, "incidents", "close", "1", "--by", "a.dsl", "--outcome", "x")
    assert code == 1
    assert "no review yet" in err
    code, out, err = sg(
        config, "incidents", "review", "1", "--first", "a.dsl", "--second", "b.head", *REVIEW
    )
    assert code == 0, err
    code, _, err = sg(config, "incidents", "close", "1", "--by", "a.dsl", "--outcome", "warned")
    assert code == 0, err
    code, out, _ = sg(config, "incidents", "export")
    rows = list(csv.DictReader(io.StringIO(out)))
    first = next(r for r in rows if r["incident"] == "#1")
    assert first["reviewed by"] == "a.dsl & b.head"
    assert first["action taken"] == "parents informed; warning"
    assert first["status"] == "closed"
    assert first["outcome"] == "warned"
    illegal = next(r for r in rows if r["severity"] == "illegal")
    assert IWF_NOTICE in illegal["what"]
    assert "iwf-test.example" not in out
    code, out, _ = sg(config, "incidents", "list")
    assert "#1 " not in out  # closed incidents leave the default list


def test_termly_report_names_no_pupil(config: Path, tmp_path: Path) -> None:
    """The HTML report counts incidents and names no pupil, address, device or search."""
    out = tmp_path / "report.html"
    code, _, err = sg(
        config, "report", "termly", "--from", TERM_START, "--to", TERM_END, "--out", str(out)
    )
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page
    assert "Person A" in page  # p.smith had two incidents: a pseudonym, not a name
    for secret in (
        *PUPILS,
        "10.10.0.7",
        "LAB-03",
        "kill myself",
        "iwf-test.example",
        "p.smith-page",
    ):
        assert secret not in page


def test_termly_report_as_pdf(config: Path, tmp_path: Path) -> None:
    """The report prints to PDF through WeasyPrint."""
    out = tmp_path / "report.pdf"
    code, _, err = sg(
        config, "report", "termly", "--from", TERM_START, "--to", TERM_END, "--out", str(out)
    )
    assert code == 0, err
    assert out.read_bytes().startswith(b"%PDF-")


def test_incidents_check_reports_mistakes_by_line(config: Path) -> None:
    """A bad action in escalation.yaml is FILE:LINE: message and exit 1; the shipped files pass."""
    assert sg(config, "incidents", "check")[0] == 0
    path = config / "escalation.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "[refer_class_teacher, warning]", "[refer_class_teacher, detention]", 1
        ),
        encoding="utf-8",
    )
    code, _, err = sg(config, "incidents", "check")
    assert code == 1
    assert f"{path}:" in err
    assert "unknown action 'detention'" in err


def test_purge_keeps_open_incidents(config: Path) -> None:
    """Purge removes only what is past retention: three-day-old open incidents stay."""
    code, out, _ = sg(config, "purge")
    assert code == 0
    assert out.startswith("purged: 0 incidents")
    assert "p.smith" in sg(config, "incidents", "list")[1]


def test_searches_are_listed_with_who_and_what(config: Path) -> None:
    """`incidents searches` shows each search with its user; --concerning only the concerning."""
    code, out, _ = sg(config, "incidents", "searches", "--user", "j.jones")
    assert code == 0
    assert "'volcano facts'" in out
    assert "j.jones (pupil)" in out
    code, out, _ = sg(config, "incidents", "searches", "--concerning")
    assert "volcano" not in out
    assert "[concerning: suicide]" in out


@pytest.mark.parametrize(
    "concern",
    [IWF_URL, f"https://{IWF_URL}", "saw iwf-test[.]example on the screen", "10.9.8.7"],
)
def test_an_iwf_address_typed_as_a_concern_is_refused(config: Path, concern: str) -> None:
    """`review --concern` on the illegal incident refuses an address; `show` never prints it."""
    code, _, err = sg(
        config,
        "incidents",
        "review",
        "2",
        "--first",
        "a.dsl",
        "--second",
        "b.head",
        "--concern",
        concern,
        *REVIEW,
    )
    assert code == 1
    assert "write no web address or site name" in err
    code, out, _ = sg(config, "incidents", "show", "2")
    assert "iwf-test" not in out
    assert "10.9.8.7" not in out
    assert "status:     open" in out or "open" in out


def test_a_review_records_its_referrals_and_a_formula_stays_text(config: Path) -> None:
    """`--referred-to` is stored for the termly report; a formula typed into C2 is text in C3."""
    review = [*REVIEW]
    review[review.index("--action") + 1] = '=HYPERLINK("http://x")'
    code, _, err = sg(
        config, "incidents", "review", "1", "--first", "a.dsl", "--second", "b.head",
        "--referred-to", "police", "--referred-to", "local_authority", *review,
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = sg(config, "incidents", "export", "--format", "json")
    shown = next(json.loads(line) for line in out.splitlines() if json.loads(line)["id"] == 1)
    assert shown["reviews"][0]["referred_to"] == [
        "the police",
        "the local authority (LADO or children's social care)",
    ]
    code, out, _ = sg(config, "incidents", "export")
    first = next(r for r in csv.DictReader(io.StringIO(out)) if r["incident"] == "#1")
    assert first["action taken"].startswith("'=")
    code, _, err = sg(
        config, "incidents", "review", "1", "--first", "a.dsl", "--second", "b.head",
        "--referred-to", "the moon", *REVIEW,
    )  # fmt: skip
    assert code == 2
    assert "the moon" in err
