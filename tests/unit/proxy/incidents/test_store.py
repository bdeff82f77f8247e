"""The incident log in the store: roll-up, no illegal URL, the two-person review, close, purge."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.exc import IntegrityError

from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents import store as incidents
from proxy.incidents.escalation import load_escalation
from proxy.incidents.events import (
    IWF_NOTICE,
    IncidentEvent,
    concerning_search,
    from_decision,
    search_event,
)
from proxy.incidents.models import Incident, IncidentReview
from proxy.store.engine import session
from proxy.store.events import apply_event, apply_events
from proxy.store.site import DEFAULT_SITE

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
        purged = incidents.purge(s, T0, incidents_days=365, access_days=90, site=DEFAULT_SITE)
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


# --- the writer's batch: the same incidents as one hit at a time --------------------------

SUBJECTS = [PUPIL, STAFF, Identity(None, "guest", "10.99.0.1", "default")]
COMPARED = [c.name for c in Incident.__table__.columns if c.name != "id"]


def random_stream(rng: random.Random, n: int) -> list[IncidentEvent]:
    """Hits by a few people on a few categories: mostly forward in time, some late, some gaps."""
    out: list[IncidentEvent] = []
    minutes = 0.0
    for _ in range(n):
        step = rng.choice([0.0, 0.5, 3.0, 12.0, 29.5, 30.0, 31.0, 45.0, 200.0])
        minutes += step if rng.random() > 0.1 else -rng.choice([1.0, 20.0, 40.0])
        who = rng.choice(SUBJECTS)
        when = T0 + timedelta(minutes=minutes, microseconds=rng.randrange(1000))
        kind = rng.random()
        if kind < 0.15:
            event = concerning_search(
                who, "google", rng.choice(["q one", "q two", "q three"]), "selfharm", "q", when
            )
        elif kind < 0.25:
            event = hit(who, 0, "child_abuse", True, IWF_URL)
            event = replace(event, at=when)
        else:
            event = replace(hit(who, 0, rng.choice(["adult", "social"])), at=when)
        out.append(event)
    return out


def snapshot(engine: Engine) -> list[tuple[object, ...]]:
    """Every incident's columns but its id, in a stable order."""
    with engine.connect() as conn:
        rows = conn.execute(select(*(Incident.__table__.c[name] for name in COMPARED))).all()
    return sorted((tuple(row) for row in rows), key=repr)


def close_latest(engine: Engine, subject: str) -> None:
    """Review and close the newest incident of ``subject`` (the same one in either run)."""
    with session(engine) as s:
        open_ones = [i for i in incidents.find(s) if i.subject == subject and i.status != "closed"]
        if not open_ones:
            return
        latest = max(open_ones, key=lambda i: (i.last_seen, i.first_seen, i.category))
        incidents.review(s, latest.id, FORM, T0)
        incidents.close(s, latest.id, "a.dsl", "done", T0)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_batch_rolls_up_exactly_as_one_hit_at_a_time(engine: Engine, seed: int) -> None:
    """For a random stream (late hits, gaps, closings between batches) batches equal single hits."""
    rng = random.Random(seed)
    stream = random_stream(rng, 300)
    cuts = sorted(rng.sample(range(1, len(stream)), 12))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    closings = [rng.choice(SUBJECTS) for _ in batches]

    def run(batched: bool) -> list[tuple[object, ...]]:
        with session(engine) as s:
            s.execute(delete(IncidentReview))
            s.execute(delete(Incident))
        for batch, closing in zip(batches, closings, strict=True):
            with session(engine) as s:
                if batched:
                    incidents.record_incidents(s, batch)
                else:
                    for event in batch:
                        incidents.record_incident(s, event)
            close_latest(engine, hit(closing).subject if closing.user else "ip:10.99.0.1")
        return snapshot(engine)

    one_by_one = run(batched=False)
    assert len(one_by_one) > 20  # the stream opened many incidents and rolled many up
    assert max(int(str(row[COMPARED.index("count")])) for row in one_by_one) > 3
    assert any(row[COMPARED.index("status")] == "closed" for row in one_by_one)
    assert run(batched=True) == one_by_one


def test_the_writer_applies_a_batch_once_with_repeats_and_replays(engine: Engine) -> None:
    """A batch with a repeated event and one applied before adds each hit once."""
    first, second = incidents.incident_event(hit()), incidents.incident_event(hit(minutes=5))
    search = incidents.search_store_event(search_event(PUPIL, "google", "maths homework", None, T0))
    with session(engine) as s:
        assert apply_events(s, [first]) == [True]
    with session(engine) as s:
        assert apply_events(s, [first, second, second, search]) == [False, True, False, True]
    with session(engine) as s:
        (found,) = incidents.find(s)
        assert (found.count, found.last_seen) == (2, T0 + timedelta(minutes=5))
        assert [r.query for r in incidents.searches(s)] == ["maths homework"]


def test_a_batch_refuses_an_illegal_hit_that_carries_its_url(engine: Engine) -> None:
    """The batch path keeps the rule of the single one: no illegal URL reaches the store."""
    bad = replace(hit(illegal=True, category="child_abuse", url=IWF_URL), url=IWF_URL)
    with pytest.raises(ValueError, match="URL of an illegal hit"), session(engine) as s:
        incidents.record_incidents(s, [hit(), bad])
    with session(engine) as s:
        assert incidents.find(s) == []


def test_a_ctiru_incident_says_the_police_list_not_the_iwf_and_no_address(engine: Engine) -> None:
    """The incident's notice, its one-line ``where`` (list, show, C3 and the digest) and the
    digest itself name the CTIRU list for a CTIRU hit, and never the address."""
    from proxy.incidents import digest
    from proxy.incidents.events import CTIRU_NOTICE

    decision = Decision(
        decision="block", category="terrorism", action="unacceptable", incident="illegal",
        incident_type="illegal", matched=Matched("ctiru", WITHHELD), rule="r",
        group="pupil", user="p.one",
    )  # fmt: skip
    url = "terror-test.example/video/1"
    event = from_decision(decision, PUPIL, url, T0, KEY, "SG-1", ESCALATION)
    assert event is not None
    with session(engine) as s:
        incident, _ = incidents.record_incident(s, event)
        shown = incidents.view(incident)
        where = incidents.where_text(incident)
        found = incidents.find(s, severity="illegal")
        text = digest.build(found, "School", T0).text
    assert shown["notice"] == CTIRU_NOTICE
    assert where.startswith(CTIRU_NOTICE)
    assert CTIRU_NOTICE in text
    for said in (json.dumps(shown), where, text):
        assert "IWF" not in said
        assert "terror-test" not in said
