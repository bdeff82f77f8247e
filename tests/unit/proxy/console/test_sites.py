"""One console over a trust's shared store: a school's account sees its own school's rows, a
trust account every school's, with a site column and filter (Starlette's test client, SQLite).

The console runs at ``north``; rows are written at ``north`` and ``south``. Each attack is a
school account asking for the other school's row by id, by URL parameter or by form.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from proxy.console.accounts import TRUST, AccountError, check_scope, set_scope
from proxy.console.app import create_app
from proxy.console.models import ConsoleUser
from proxy.identity import Identity
from proxy.incidents import store as incidents
from proxy.incidents.models import AlertDelivery
from proxy.store import chain, control
from proxy.store.engine import make_engine, session
from proxy.store.models import Override
from proxy.store.site import at_site, set_site
from tests.console_accounts import add_account
from tests.unit.proxy.configs import write_config
from tests.unit.proxy.console.test_app import client
from tests.unit.proxy.console.test_dsl import hit
from tests.unit.proxy.test_cli_changes import POLICY

NOW = datetime.now(UTC).replace(microsecond=0)
NORTH_PUPIL = Identity("n.pupil", "pupil", "10.1.0.7", "address")
SOUTH_PUPIL = Identity("s.pupil", "pupil", "10.2.0.7", "address")
ACCOUNTS = {
    "n.dsl": ("dsl", "north"),
    "n.deputy": ("reviewer", "north"),
    "s.dsl": ("dsl", "south"),
    "t.dsl": ("dsl", TRUST),
    "n.gov": ("governor", "north"),
    "t.gov": ("governor", TRUST),
    "n.head": ("approver", "north"),
    "t.head": ("approver", TRUST),
    "n.tech": ("technician", "north"),
    "s.tech": ("technician", "south"),
}


@dataclasses.dataclass
class Trust:
    app: object
    config: Path
    north: int  # an incident at north
    south: int  # an incident at south
    south_request: int  # an unblock request made at south


@pytest.fixture
def trust(tmp_path: Path) -> Iterator[Trust]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = write_config(tmp_path, url, POLICY)
    with (config / "schoolgate.yaml").open("a", encoding="utf-8") as f:
        f.write("site: north\n")
    app = create_app(config)  # the console is north's
    for name, (role, _) in ACCOUNTS.items():
        add_account(config, name, role)
    engine = make_engine(url)
    with session(engine) as s:
        for name, (_, scope) in ACCOUNTS.items():
            s.execute(update(ConsoleUser).where(ConsoleUser.name == name).values(site=scope))
        north, _ = incidents.record_incident(
            s, dataclasses.replace(hit(NORTH_PUPIL, NOW - timedelta(hours=1)), site="north")
        )
        south, _ = incidents.record_incident(
            s, dataclasses.replace(hit(SOUTH_PUPIL, NOW - timedelta(hours=1)), site="south")
        )
        with at_site("south"):
            chain.append(s, at=NOW, kind="policy.apply", subject="south-only-change", actor="s")
            request = control.request_override(
                s,
                what_kind="host",
                what="south-wants.example",
                scope_kind="group",
                scope="pupil",
                starts=NOW,
                ends=NOW + timedelta(days=1),
                reason="south's lesson",
                requested_by="s.teacher",
                now=NOW,
            )
            s.add(
                AlertDelivery(
                    at=NOW,
                    kind="illegal",
                    subject="south-alert",
                    site="south",
                    channel="email",
                    ok=True,
                    attempt=1,
                    final=True,
                    detail=None,
                )
            )
        with at_site("north"):
            chain.append(s, at=NOW, kind="policy.apply", subject="north-only-change", actor="n")
            s.add(
                AlertDelivery(
                    at=NOW,
                    kind="illegal",
                    subject="north-alert",
                    site="north",
                    channel="email",
                    ok=True,
                    attempt=1,
                    final=True,
                    detail=None,
                )
            )
        ids = (north.id, south.id, request.id)
    engine.dispose()
    yield Trust(app, config, *ids)
    set_site("main")  # the process's site, as other tests expect it


def as_(t: Trust, name: str) -> TestClient:
    return client(t.app, t.config, name)


def incident_links(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'href="/incidents/(\d+)"', html)}


def token_of(c: TestClient, path: str = "/home") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert found is not None
    return found.group(1)


def test_a_school_account_sees_only_its_schools_queue(trust: Trust) -> None:
    """North's DSL lists north's incident, never south's, whatever ?site= says."""
    c = as_(trust, "n.dsl")
    for params in ({}, {"site": "south"}, {"status": "all"}):
        page = c.get("/queue", params=params).text
        assert incident_links(page) == {trust.north}
        assert "s.pupil" not in page
    assert "north-alert" in c.get("/queue").text
    assert "south-alert" not in c.get("/queue").text
    assert '<th scope="col">School</th>' not in c.get("/queue").text
    assert "(Designated safeguarding lead, north)" in c.get("/queue").text  # who and where


@pytest.mark.parametrize(
    "path",
    ["/incidents/{id}", "/incidents/{id}/c2.pdf"],
)
def test_another_schools_incident_by_id_is_404(trust: Trust, path: str) -> None:
    """Typing south's incident number into north's DSL's address bar finds nothing."""
    c = as_(trust, "n.dsl")
    response = c.get(path.format(id=trust.south))
    assert response.status_code == 404
    assert "s.pupil" not in response.text
    assert c.get(f"/incidents/{trust.north}").status_code == 200


@pytest.mark.parametrize("action", ["review", "sign", "close"])
def test_another_schools_incident_cannot_be_acted_on(trust: Trust, action: str) -> None:
    """A review, a signature or a close posted for south's incident by north's DSL is refused
    and changes nothing."""
    c = as_(trust, "n.dsl")
    form = {
        "csrf": token_of(c, "/queue"),
        "second_reviewer": "n.deputy",
        "outcome": "done",
        "first_position": "DSL",
        "second_position": "deputy",
        "computer": "laptop",
        "reason": "r",
        "conclusion": "c",
        "action_taken": "a",
    }
    response = c.post(f"/incidents/{trust.south}/{action}", data=form, follow_redirects=False)
    assert response.status_code == 404
    engine = make_engine(f"sqlite:///{trust.config.parent / 'store.db'}")
    with session(engine, read_only=True) as s:
        assert incidents.get(s, trust.south).status == "open"
        assert incidents.reviews_of(s, trust.south) == []
    engine.dispose()


def test_the_c3_export_holds_only_the_schools_rows(trust: Trust) -> None:
    """North's reporting log (C3) names north's incident only, with its site."""
    rows = list(csv.DictReader(io.StringIO(as_(trust, "n.dsl").get("/incidents/c3.csv").text)))
    assert [r["site"] for r in rows] == ["north"]
    every = csv.DictReader(io.StringIO(as_(trust, "t.dsl").get("/incidents/c3.csv").text))
    assert sorted(r["site"] for r in every) == ["north", "south"]


def test_a_trust_account_sees_every_school_with_a_site_column_and_filter(trust: Trust) -> None:
    """The trust's DSL lists both schools' incidents, each named, and can narrow to one."""
    c = as_(trust, "t.dsl")
    page = c.get("/queue").text
    assert incident_links(page) == {trust.north, trust.south}
    assert '<th scope="col">School</th>' in page
    assert "<td>south</td>" in page
    assert "<td>north</td>" in page
    assert '<option value="south"' in page  # the site filter
    assert "(Designated safeguarding lead, whole trust)" in page
    assert incident_links(c.get("/queue", params={"site": "south"}).text) == {trust.south}
    assert "south-alert" in page
    assert "north-alert" in page
    south = c.get(f"/incidents/{trust.south}")
    assert south.status_code == 200
    assert "<dd>south</dd>" in south.text
    assert "south's own access log" in south.text  # this console holds north's log only


def test_a_school_account_at_another_schools_console_only_reads_its_own(trust: Trust) -> None:
    """South's DSL signed in at north's console sees south's rows, and may not read north's
    access log (the pupil page) or post anything (a post acts at this console's site)."""
    c = as_(trust, "s.dsl")
    assert incident_links(c.get("/queue").text) == {trust.south}
    assert c.get(f"/incidents/{trust.north}").status_code == 404
    assert c.get("/pupil", params={"who": "n.pupil"}).status_code == 403
    assert c.get("/pupil.csv", params={"who": "n.pupil"}).status_code == 403
    form = {"csrf": token_of(c, "/queue"), "outcome": "done"}
    closed = c.post(f"/incidents/{trust.south}/close", data=form, follow_redirects=False)
    assert closed.status_code == 403
    out = c.post("/logout", data={"csrf": form["csrf"]}, follow_redirects=False)
    assert out.status_code == 303  # signing out is never refused


def test_the_change_log_and_its_export_are_the_schools(trust: Trust) -> None:
    """North's governor sees north's changes only; the trust governor both, each named."""
    north = as_(trust, "n.gov")
    page = north.get("/changes", params={"site": "south"}).text
    assert "north-only-change" in page
    assert "south-only-change" not in page
    day = NOW.date().isoformat()
    export = north.get("/changes/export", params={"from": day, "to": day, "format": "csv"})
    assert "north-only-change" in export.text
    assert "south-only-change" not in export.text
    assert 'filename="schoolgate-changes-north.csv"' in export.headers["content-disposition"]
    trust_gov = as_(trust, "t.gov")
    page = trust_gov.get("/changes").text
    assert "north-only-change" in page
    assert "south-only-change" in page
    assert "<td>south</td>" in page
    only_south = trust_gov.get("/changes", params={"site": "south"}).text
    assert "south-only-change" in only_south
    assert "north-only-change" not in only_south
    export = trust_gov.get("/changes/export", params={"from": day, "to": day, "format": "html"})
    assert "(whole trust)" in export.text
    assert "south-only-change" in export.text


def test_the_termly_report_is_the_schools_or_the_trusts(trust: Trust) -> None:
    """North's governor's report says north; south's report is south's console's to make."""
    day = NOW.date().isoformat()
    period = {"from": day, "to": day}
    assert "(site north)" in as_(trust, "n.gov").get("/report", params=period).text
    t = as_(trust, "t.gov")
    assert "(whole trust)" in t.get("/report", params=period).text
    assert t.get("/report", params={**period, "site": "south"}).status_code == 400


def test_another_schools_unblock_request_cannot_be_seen_or_approved(trust: Trust) -> None:
    """North's head does not see south's request in the inbox, by id, or approve it."""
    c = as_(trust, "n.head")
    assert "south-wants.example" not in c.get("/inbox").text
    assert c.get(f"/inbox/{trust.south_request}").status_code == 404
    form = {"csrf": token_of(c, "/inbox"), "how_long": "day", "reason": "no"}
    for action in ("approve", "decline"):
        response = c.post(
            f"/inbox/{trust.south_request}/{action}", data=form, follow_redirects=False
        )
        assert response.status_code == 404
    engine = make_engine(f"sqlite:///{trust.config.parent / 'store.db'}")
    with session(engine, read_only=True) as s:
        found = s.get(Override, trust.south_request)
        assert found is not None
        assert found.approved_by is None
        assert found.revoked_at is None
    engine.dispose()
    inbox = as_(trust, "t.head").get("/inbox").text
    assert "south-wants.example" in inbox
    assert "<td>south</td>" in inbox


def test_another_schools_technician_cannot_use_this_gateways_pages(trust: Trust) -> None:
    """South's technician at north's console is refused north's status, policy and logs."""
    c = as_(trust, "s.tech")
    for path in ("/status", "/policy", "/lists", "/search?reference=SG-1", "/test"):
        assert c.get(path).status_code == 403, path
    assert as_(trust, "n.tech").get("/status").status_code == 200


def test_a_scope_is_a_site_or_the_trust() -> None:
    """An account's scope is a site's name or ``*``; anything else is one line's refusal."""
    assert check_scope("north") == "north"
    assert check_scope(TRUST) == TRUST
    with pytest.raises(AccountError, match="a site is lower-case"):
        check_scope("North School")


def test_a_scope_change_applies_at_the_next_page(trust: Trust) -> None:
    """Moving north's DSL to the trust shows south's incident on their next page, with no new
    sign-in; moving them back hides it again."""
    c = as_(trust, "n.dsl")
    engine = make_engine(f"sqlite:///{trust.config.parent / 'store.db'}")
    with session(engine) as s:
        set_scope(s, "n.dsl", TRUST)
    assert incident_links(c.get("/queue").text) == {trust.north, trust.south}
    with session(engine) as s:
        set_scope(s, "n.dsl", "north")
        with pytest.raises(AccountError, match="no console account"):
            set_scope(s, "nobody", "north")
    engine.dispose()
    assert c.get(f"/incidents/{trust.south}").status_code == 404
