"""The incident log in the store: roll-up, no illegal URL, the two-person review, close, purge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents import store as incidents
from proxy.incidents.escalation import load_escalation
from proxy.incidents.events import IWF_NOTICE, IncidentEvent, from_decision
from proxy.incidents.models import Incident
from proxy.store.engine import session
from proxy.store.events import apply_event

ROOT = Path(__file__).resolve().parents[4]
ESCALATION = load_escalation(ROOT / "config" / "escalation.yaml")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PUPIL = Identity("p.one", "pupil", "10.10.0.7", "address")
STAFF = Identity("s.one", "staff", "10.20.0.9", "address")
KEY = b"k" * 32
IWF_URL = "iwf-test.example/abuse/test-image.jpg"


def hit(
    identity: Identity = PUPIL,
    minutes: int = 0,
    category: str = "adult",
    illegal: bool = False,
    url: str = "adult-demo.example/",
) -> IncidentEvent:
    decision = Decision(
        decision="block",
        category=category,
        action="unacceptable",
        incident="illegal" if illegal else "unacceptable",
        incident_type="illegal" if illegal else "deliberate_offensive",
        matched=Matched("iwf" if illegal else "ut1/adult", WITHHELD if illegal else url),
        rule="r",
        group=identity.group,
        user=identity.user,
    )
    when = T0 + timedelta(minutes=minutes)
    event = from_decision(decision, identity, url, when, KEY, "SG-1", ESCALATION)
    assert event is not None
    return event


def test_hits_within_the_window_roll_up(engine: Engine) -> None:
    """Three hits by one pupil on one category in half an hour are one incident of count 3."""
    with session(engine) as s:
        for minutes in (0, 10, 25):
            incidents.record_incident(s, hit(minutes=minutes))
    with session(engine) as s:
        found = incidents.find(s)
    assert len(found) == 1
    assert found[0].count == 3
    assert found[0].first_seen == T0
    assert found[0].last_seen == T0 + timedelta(minutes=25)


def test_other_user_category_or_a_gap_opens_a_new_incident(engine: Engine) -> None:
    """Another user, another category, or a hit after the window each open their own incident."""
    with session(engine) as s:
        incidents.record_incident(s, hit())
        incidents.record_incident(s, hit(STAFF))
        incidents.record_incident(s, hit(category="social"))
        incidents.record_incident(s, hit(minutes=90))
        assert len(incidents.find(s)) == 4


def test_incidents_carry_their_table_s_actions(engine: Engine) -> None:
    """A pupil's incident carries the pupil table's actions, a staff member's the staff table's."""
    with session(engine) as s:
        pupil, _ = incidents.record_incident(s, hit())
        staff, _ = incidents.record_incident(s, hit(STAFF))
        pupil_actions = incidents.view(pupil)["recommended_actions"]
        staff_actions = incidents.view(staff)["recommended_actions"]
    assert "Inform parents / carers" in pupil_actions
    assert "Safeguarding (Designated Safeguarding Lead)" in pupil_actions
    assert "Disciplinary action" in staff_actions
    assert "Inform parents / carers" not in staff_actions


def test_an_illegal_incident_stores_no_url(engine: Engine) -> None:
    """The row, its view and every column hold the hash and notice, never the address."""
    with session(engine) as s:
        incident, _ = incidents.record_incident(
            s, hit(illegal=True, category="child_abuse", url=IWF_URL)
        )
        shown = incidents.view(incident)
        where = incidents.where_text(incident)
    assert shown["url"] is None
    assert shown["notice"] == IWF_NOTICE
    assert IWF_NOTICE in where
    assert shown["url_hash"].startswith("hmac-sha256:")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM incidents")).all()
    assert "iwf-test.example" not in repr(rows)
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database:
        engine.dispose()
        for path in Path(database).parent.glob(Path(database).name + "*"):
            assert b"iwf-test.example" not in path.read_bytes()


def test_the_database_refuses_an_illegal_url(engine: Engine) -> None:
    """Even a direct insert cannot put a URL on an illegal incident: a CHECK constraint."""
    row = Incident(
        first_seen=T0,
        last_seen=T0,
        subject="x",
        group="pupil",
        category="child_abuse",
        incident_type="illegal",
        severity="illegal",
        url="iwf-test.example/x",
    )
    with pytest.raises(IntegrityError), session(engine) as s:
        s.add(row)


FORM = incidents.ReviewForm(
    first_reviewer="a.dsl",
    first_position="Designated Safeguarding Lead",
    second_reviewer="b.deputy",
    second_position="Deputy Headteacher",
    computer="DSL-LAPTOP-1, safeguarding office",
    reason="blocked attempts on an adult site",
    conclusion="deliberate; pupil spoken to",
    action_taken="parents informed; warning",
)


def test_review_needs_two_different_people(engine: Engine) -> None:
    """A review by one person under two names is refused, by the code and by the database."""
    with session(engine) as s:
        incident, _ = incidents.record_incident(s, hit())
        incident_id = incident.id
    same = incidents.ReviewForm(**{**FORM.__dict__, "second_reviewer": " A.DSL "})
    with pytest.raises(incidents.ReviewError, match="two different people"), session(engine) as s:
        incidents.review(s, incident_id, same, T0)
    with pytest.raises(IntegrityError), session(engine) as s:
        s.execute(
            text(
                "INSERT INTO incident_reviews (incident_id, reviewed_at, first_reviewer,"
                " first_position, second_reviewer, second_position, computer, reason,"
                " conclusion, action_taken) VALUES (:i, :t, 'x', 'p', 'X', 'p', 'c', 'r', 'c', 'a')"
            ),
            {"i": incident_id, "t": "2026-11-23 10:00:00.000000"},
        )


def test_review_then_close_records_form_c2(engine: Engine) -> None:
    """A review records reviewers, reason, conclusion and action; closing records the outcome."""
    with session(engine) as s:
        incident, _ = incidents.record_incident(s, hit())
        incident_id = incident.id
    with pytest.raises(incidents.ReviewError, match="no review yet"), session(engine) as s:
        incidents.close(s, incident_id, "a.dsl", "done", T0)
    with session(engine) as s:
        incidents.review(s, incident_id, FORM, T0 + timedelta(hours=1))
        incidents.close(s, incident_id, "a.dsl", "no further action", T0 + timedelta(hours=2))
    with session(engine) as s:
        shown = incidents.view(incidents.get(s, incident_id), incidents.reviews_of(s, incident_id))
    assert shown["status"] == "closed"
    assert shown["outcome"] == "no further action"
    review = shown["reviews"][0]
    assert (review["first_reviewer"], review["second_reviewer"]) == ("a.dsl", "b.deputy")
    assert review["action_taken"] == "parents informed; warning"
    with pytest.raises(incidents.ReviewError, match="closed"), session(engine) as s:
        incidents.review(s, incident_id, FORM, T0)


def test_a_closed_incident_takes_no_more_hits(engine: Engine) -> None:
    """After closing, a new hit opens a new incident instead of reopening the old one."""
    with session(engine) as s:
        incident, _ = incidents.record_incident(s, hit())
        incidents.review(s, incident.id, FORM, T0)
        incidents.close(s, incident.id, "a.dsl", "done", T0)
        _, new = incidents.record_incident(s, hit(minutes=1))
    assert new


def test_purge_removes_only_what_is_past_retention(engine: Engine) -> None:
    """Closed incidents and searches past their retention go; open and recent ones stay."""
    old = T0 - timedelta(days=400)
    with session(engine) as s:
        closed_old, _ = incidents.record_incident(s, hit(minutes=-400 * 24 * 60))
        incidents.review(s, closed_old.id, FORM, old)
        incidents.close(s, closed_old.id, "a.dsl", "done", old)
        incidents.record_incident(s, hit(STAFF, minutes=-400 * 24 * 60))  # still open
        incidents.record_incident(s, hit())
    with session(engine) as s:
        purged = incidents.purge(s, T0, incidents_days=365, access_days=90)
    assert (purged.incidents, purged.reviews) == (1, 1)
    with session(engine) as s:
        assert len(incidents.find(s)) == 2


def test_events_go_through_the_store_writer_handlers(engine: Engine) -> None:
    """The writer applies incident events once, even when one is replayed from the spool."""
    event = incidents.incident_event(hit())
    with session(engine) as s:
        assert apply_event(s, event)
        assert not apply_event(s, event)
    with session(engine) as s:
        found = incidents.find(s)
    assert len(found) == 1
    assert found[0].count == 1
    assert json.loads(found[0].actions)


def test_free_text_on_an_illegal_incident_may_not_name_the_site(engine: Engine) -> None:
    """Every free-text field of C2 on an illegal incident refuses a URL or host; an ordinary
    incident's review may quote its (non-illegal) address."""
    with session(engine) as s:
        illegal, _ = incidents.record_incident(s, hit(illegal=True, category="child_abuse"))
        ordinary, _ = incidents.record_incident(s, hit(minutes=1))
        ids = (illegal.id, ordinary.id)
    for field in ("concern", "conclusion", "action_taken", "reason"):
        form = incidents.ReviewForm(**{**FORM.__dict__, field: f"pupil opened {IWF_URL}"})
        with (
            pytest.raises(incidents.ReviewError, match="write no web address"),
            session(engine) as s,
        ):
            incidents.review(s, ids[0], form, T0)
    with session(engine) as s:
        assert incidents.reviews_of(s, ids[0]) == []
        quoted = incidents.ReviewForm(**{**FORM.__dict__, "concern": "adult-demo.example"})
        incidents.review(s, ids[1], quoted, T0)
        incidents.review(s, ids[0], FORM, T0)
