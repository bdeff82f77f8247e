"""Events into rows: policy observations, block-page review requests, list updates; each once."""

from __future__ import annotations

import json

from sqlalchemy import Engine, select

from proxy.store import chain, control, events
from proxy.store.engine import session
from proxy.store.models import Change, Override

REVIEW = {
    "time": "2026-11-23T10:15:00+00:00",
    "user": "p.pupil",
    "group": "pupil",
    "client_ip": "10.10.3.4",
    "url": "http://Games.Example/Level/1",
    "category": "games",
    "reason": "it is for my coding homework",
    "reference": "SG-1A2B3C4D",
}


def apply(engine: Engine, *evs: events.Event) -> list[bool]:
    with session(engine) as s:
        return [events.apply_event(s, e) for e in evs]


def rows(engine: Engine) -> list[Change]:
    with session(engine) as s:
        return list(s.scalars(select(Change).order_by(Change.seq)))


def test_first_policy_is_a_baseline_and_edits_are_unattributed(engine: Engine) -> None:
    """The first policy seen is the baseline; a different text later is an unattributed change."""
    apply(engine, events.policy_observed("a: 1\n", "policy.yaml", "start"))
    apply(engine, events.policy_observed("a: 1\n", "policy.yaml", "start"))
    apply(engine, events.policy_observed("a: 2\n", "policy.yaml", "hot reload"))
    found = rows(engine)
    assert [r.kind for r in found] == ["policy.baseline", "policy.unattributed"]
    assert found[1].actor is None
    assert "-a: 1\n+a: 2" in json.loads(found[1].details)["diff"]


def test_applied_policy_is_not_recorded_twice(engine: Engine) -> None:
    """When `policy apply` recorded a text, the proxy seeing it again adds nothing."""
    with session(engine) as s:
        chain.append(
            s,
            at=events.Event("x").when,
            kind="policy.apply",
            actor="tech",
            subject="policy",
            details={"sha256": events.sha256("b: 1\n"), "text": "b: 1\n"},
        )
    apply(engine, events.policy_observed("b: 1\n", "policy.yaml", "hot reload"))
    assert [r.kind for r in rows(engine)] == ["policy.apply"]


def test_review_request_becomes_a_pending_override_once(engine: Engine) -> None:
    """A block-page request is a pending URL override for the group, once per reference."""
    assert apply(engine, events.review_request(REVIEW, illegal=False)) == [True]
    assert apply(engine, events.review_request(REVIEW, illegal=False)) == [False]
    with session(engine) as s:
        (found,) = s.scalars(select(Override)).all()
        assert (found.what_kind, found.what, found.scope_kind, found.scope) == (
            "url",
            "games.example/level/1",
            "group",
            "pupil",
        )
        assert (found.requested_by, found.reference, found.ends) == ("p.pupil", "SG-1A2B3C4D", None)
        assert control.status_of(found, found.requested_at) == "pending"
    (row,) = rows(engine)
    assert (row.kind, row.actor, row.reason) == ("override.request", "p.pupil", REVIEW["reason"])


def test_review_request_for_an_illegal_page_is_refused_without_its_url(engine: Engine) -> None:
    """An illegal hit cannot be requested open, and the log never holds its address."""
    apply(engine, events.review_request({**REVIEW, "reference": "SG-2"}, illegal=True))
    (row,) = rows(engine)
    assert row.kind == "override.refuse"
    assert "games.example" not in row.subject + row.details
    with session(engine) as s:
        assert s.scalars(select(Override)).all() == []


def test_list_update_line_is_recorded_once(engine: Engine) -> None:
    """A list-updates.jsonl line becomes one lists.update row, even when read again."""
    line = json.dumps(
        {
            "at": "2026-11-23T03:00:00+00:00",
            "by": "cron",
            "source": "ut1",
            "url": "https://example.org/ut1.tar.gz",
            "result": "updated",
            "before": 100,
            "after": 120,
            "forced": False,
            "reason": None,
        }
    )
    assert apply(engine, events.list_update(line), events.list_update(line)) == [True, False]
    (row,) = rows(engine)
    assert (row.kind, row.actor, row.subject) == ("lists.update", "cron", "source ut1: updated")
    assert json.loads(row.details)["after"] == 120


def test_a_forced_list_update_keeps_the_counts_per_list(engine: Engine) -> None:
    """A forced update's row holds each list's entries before and after, and what was wrong."""
    line = json.dumps(
        {
            "at": "2026-11-23T03:00:00+00:00",
            "by": "it.tech",
            "source": "ut1",
            "url": "https://example.org/ut1.tar.gz",
            "result": "updated",
            "before": 2000,
            "after": 1948,
            "forced": True,
            "reason": "lists gone or shrunk: ut1/adult",
            "lists": {"ut1/adult": [1026, None], "ut1/games": [487, 974]},
            "problems": ["ut1/adult: gone (was 1026 entries)"],
        }
    )
    apply(engine, events.list_update(line))
    (row,) = rows(engine)
    details = json.loads(row.details)
    assert details["forced"] is True
    assert details["lists"]["ut1/adult"] == [1026, None]
    assert details["problems"] == ["ut1/adult: gone (was 1026 entries)"]
