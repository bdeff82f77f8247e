"""Overrides and suspensions in the store: the two-person rule, expiry, revocation, the snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from proxy.store import chain, control
from proxy.store.engine import session
from proxy.store.models import Change

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
APPROVERS = ("head.teacher", "deputy.head")


def request(engine: Engine, by: str = "j.meer", days: int = 14) -> int:
    with session(engine) as s:
        return control.request_override(
            s,
            what_kind="host",
            what="www.example.com",
            scope_kind="group",
            scope="pupil",
            starts=NOW,
            ends=NOW + timedelta(days=days),
            reason="Year 9 history: propaganda posters",
            requested_by=by,
            now=NOW,
        ).id


def kinds(engine: Engine) -> list[str]:
    with session(engine) as s:
        return list(s.scalars(select(Change.kind).order_by(Change.seq)))


def test_pending_request_does_not_apply(engine: Engine) -> None:
    """A request is recorded, but nothing opens until someone approves it."""
    request(engine)
    with session(engine) as s:
        assert control.load_controls(s, NOW).overrides == ()
    assert kinds(engine) == ["override.request"]


def test_requester_cannot_approve_their_own_request(engine: Engine) -> None:
    """Even an approver cannot approve what they asked for themselves: a second person must."""
    override_id = request(engine, by="head.teacher")
    refused = pytest.raises(control.ControlError, match="cannot approve it: a second person must")
    with refused, session(engine) as s:
        control.approve_override(s, override_id, by="head.teacher", approvers=APPROVERS, now=NOW)
    with session(engine) as s:
        assert control.load_controls(s, NOW).overrides == ()
    assert kinds(engine) == ["override.request"]


def test_only_an_approver_can_approve(engine: Engine) -> None:
    """Someone not named in the policy's approvers is refused."""
    override_id = request(engine)
    with (
        pytest.raises(control.ControlError, match=r"a\.teacher is not an approver"),
        session(engine) as s,
    ):
        control.approve_override(s, override_id, by="a.teacher", approvers=APPROVERS, now=NOW)


def test_approved_override_is_in_the_snapshot_until_it_ends(engine: Engine) -> None:
    """Approval records who approved it, and the snapshot carries it until its end."""
    override_id = request(engine, days=2)
    with session(engine) as s:
        control.approve_override(s, override_id, by="head.teacher", approvers=APPROVERS, now=NOW)
    with session(engine) as s:
        (active,) = control.load_controls(s, NOW).overrides
        assert (active.id, active.approved_by, active.what) == (
            override_id,
            "head.teacher",
            "www.example.com",
        )
        assert control.load_controls(s, NOW + timedelta(days=2)).overrides == ()
    with session(engine) as s:
        row = s.scalars(select(Change).where(Change.kind == "override.approve")).one()
        assert (row.actor, row.approved_by, row.target) == (
            "head.teacher",
            "head.teacher",
            "group:pupil",
        )
        assert json.loads(row.details)["requested_by"] == "j.meer"


def test_expiry_is_recorded_once(engine: Engine) -> None:
    """An override past its end gets one expiry row, however often the sweep runs."""
    override_id = request(engine, days=1)
    with session(engine) as s:
        control.approve_override(s, override_id, by="deputy.head", approvers=APPROVERS, now=NOW)
    later = NOW + timedelta(days=1, seconds=1)
    with session(engine) as s:
        assert control.expiries_due(s, later)
        assert control.record_expiries(s, later) == 1
    with session(engine) as s:
        assert control.record_expiries(s, later) == 0
        assert not control.expiries_due(s, later)
    assert kinds(engine) == ["override.request", "override.approve", "override.expire"]


def test_revoked_override_leaves_the_snapshot(engine: Engine) -> None:
    """Revoking ends an override at once and is recorded with its reason."""
    override_id = request(engine)
    with session(engine) as s:
        control.approve_override(s, override_id, by="head.teacher", approvers=APPROVERS, now=NOW)
    with session(engine) as s:
        control.revoke_override(s, override_id, by="head.teacher", reason="topic over", now=NOW)
    with session(engine) as s:
        assert control.load_controls(s, NOW).overrides == ()
        with pytest.raises(control.ControlError, match="already revoked"):
            control.revoke_override(s, override_id, by="x", reason="again", now=NOW)
    assert kinds(engine)[-1] == "override.revoke"


def test_approval_without_an_end_gets_the_default_period(engine: Engine) -> None:
    """A block-page request has no end; approving it gives the default period from now."""
    with session(engine) as s:
        override_id = control.request_override(
            s,
            what_kind="url",
            what="games.example/x",
            scope_kind="group",
            scope="pupil",
            starts=NOW,
            ends=None,
            reason="for a project",
            requested_by="ip:10.10.1.2",
            now=NOW,
            reference="SG-0000AAAA",
        ).id
    with session(engine) as s:
        found = control.approve_override(
            s, override_id, by="head.teacher", approvers=APPROVERS, now=NOW
        )
        assert found.ends == NOW + timedelta(days=control.DEFAULT_DAYS)


def test_suspension_and_restore(engine: Engine) -> None:
    """A suspension is in the snapshot until restored; both are in the log, and verify."""
    with session(engine) as s:
        control.suspend(
            s, "p.pupil", by="head.teacher", reason="misuse", starts=NOW, ends=None, now=NOW
        )
    with session(engine) as s:
        controls = control.load_controls(s, NOW)
        assert [x.user for x in controls.suspensions["p.pupil"]] == ["p.pupil"]
        control.restore(s, "p.pupil", by="head.teacher", reason="served", now=NOW)
    with session(engine) as s:
        assert control.load_controls(s, NOW).suspensions == {}
        assert chain.verify(s).ok
    assert kinds(engine) == ["access.suspend", "access.restore"]
