"""Overrides and suspensions in the store, each change recorded in the change log.

The rules live here so that the CLI and the proxy's writer share them: a
request is pending until someone named in the policy's ``approvers``, and
never its requester, approves it; a revoked or expired override stops
applying; expiry is recorded once. ``load_controls`` gives the proxy the
frozen snapshot it decides with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from proxy.controls import ActiveOverride, ActiveSuspension, Controls, ScopeKind, WhatKind
from proxy.store import chain
from proxy.store.models import Change, Override, Suspension

DEFAULT_DAYS = 14
Status = Literal["pending", "scheduled", "active", "expired", "revoked"]


class ControlError(Exception):
    """A request the rules refuse; ``str()`` is one line for the user."""


def status_of(override: Override, now: datetime) -> Status:
    if override.revoked_at is not None:
        return "revoked"
    if override.ends is not None and now >= override.ends:
        return "expired"
    if override.approved_by is None:
        return "pending"
    return "scheduled" if now < override.starts else "active"


def what_label(override: Override) -> str:
    if override.what_kind == "all":
        return "all categories (filter switch-off)"
    return f"{override.what_kind} {override.what}"


def scope_label(override: Override) -> str:
    return (
        "everyone"
        if override.scope_kind == "everyone"
        else f"{override.scope_kind}:{override.scope}"
    )


def _details(override: Override, **extra: object) -> dict[str, object]:
    return {
        "override": override.id,
        "reference": override.reference,
        "from": override.starts.isoformat(),
        **extra,
    }


def request_override(
    session: Session,
    *,
    what_kind: WhatKind,
    what: str,
    scope_kind: ScopeKind,
    scope: str | None,
    starts: datetime,
    ends: datetime | None,
    reason: str,
    requested_by: str,
    now: datetime,
    reference: str | None = None,
    extra: dict[str, object] | None = None,
) -> Override:
    """A pending override; it applies only once approved."""
    if not reason.strip():
        raise ControlError("a reason is needed: say why (it is shown to the governor)")
    if ends is not None and ends <= starts:
        raise ControlError("the override would end before it starts")
    override = Override(
        reference=reference,
        what_kind=what_kind,
        what=what,
        scope_kind=scope_kind,
        scope=scope,
        starts=starts,
        ends=ends,
        reason=reason.strip(),
        requested_by=requested_by,
        requested_at=now,
        expiry_recorded=False,
    )
    session.add(override)
    session.flush()
    chain.append(
        session,
        at=now,
        kind="override.request",
        actor=requested_by,
        subject=what_label(override),
        target=scope_label(override),
        reason=override.reason,
        until=ends,
        details=_details(override, **(extra or {})),
    )
    return override


def _get(session: Session, override_id: int) -> Override:
    override = session.get(Override, override_id, with_for_update=True)
    if override is None:
        raise ControlError(f"no override #{override_id}")
    return override


def approve_override(
    session: Session,
    override_id: int,
    *,
    by: str,
    approvers: Sequence[str],
    now: datetime,
    ends: datetime | None = None,
    extra: dict[str, object] | None = None,
) -> Override:
    """Approve a pending request: ``by`` must be an approver and not the requester."""
    override = _get(session, override_id)
    if by not in approvers:
        named = ", ".join(approvers) or "none: add `approvers:` to the policy"
        raise ControlError(f"{by} is not an approver (approvers: {named})")
    if by == override.requested_by:
        raise ControlError(
            f"{by} requested override #{override_id} and cannot approve it: "
            "a second person must (two-person rule)"
        )
    state = status_of(override, now)
    if state != "pending":
        raise ControlError(f"override #{override_id} is {state}, not pending")
    if ends is not None:
        override.ends = ends
    elif override.ends is None:
        override.ends = max(now, override.starts) + timedelta(days=DEFAULT_DAYS)
    if override.ends <= max(now, override.starts):
        raise ControlError("the override would already have ended")
    override.approved_by, override.approved_at = by, now
    chain.append(
        session,
        at=now,
        kind="override.approve",
        actor=by,
        subject=what_label(override),
        target=scope_label(override),
        reason=override.reason,
        until=override.ends,
        approved_by=by,
        details=_details(override, requested_by=override.requested_by, **(extra or {})),
    )
    return override


def revoke_override(
    session: Session,
    override_id: int,
    *,
    by: str,
    reason: str,
    now: datetime,
    extra: dict[str, object] | None = None,
) -> Override:
    """End an override (or withdraw a request) now."""
    override = _get(session, override_id)
    state = status_of(override, now)
    if state in ("revoked", "expired"):
        raise ControlError(f"override #{override_id} is already {state}")
    override.revoked_by, override.revoked_at = by, now
    chain.append(
        session,
        at=now,
        kind="override.revoke",
        actor=by,
        subject=what_label(override),
        target=scope_label(override),
        reason=reason,
        until=override.ends,
        approved_by=override.approved_by,
        details=_details(override, requested_by=override.requested_by, was=state, **(extra or {})),
    )
    return override


def record_expiries(session: Session, now: datetime) -> int:
    """Record each approved override that has reached its end, once."""
    due = session.scalars(
        select(Override)
        .where(
            Override.expiry_recorded.is_(False),
            Override.revoked_at.is_(None),
            Override.approved_by.is_not(None),
            Override.ends <= now,
        )
        .order_by(Override.ends, Override.id)
    ).all()
    for override in due:
        override.expiry_recorded = True
        assert override.ends is not None
        chain.append(
            session,
            at=now,
            kind="override.expire",
            subject=what_label(override),
            target=scope_label(override),
            reason=override.reason,
            until=override.ends,
            approved_by=override.approved_by,
            details=_details(override, requested_by=override.requested_by),
        )
    return len(due)


def overrides(session: Session, now: datetime, *, everything: bool = False) -> list[Override]:
    """Pending, scheduled and active overrides (and ended ones with ``everything``)."""
    query = select(Override).order_by(Override.id)
    if not everything:
        query = query.where(
            Override.revoked_at.is_(None), or_(Override.ends.is_(None), Override.ends > now)
        )
    return list(session.scalars(query))


def suspend(
    session: Session,
    user: str,
    *,
    by: str,
    reason: str,
    starts: datetime,
    ends: datetime | None,
    now: datetime,
    extra: dict[str, object] | None = None,
) -> Suspension:
    """Remove ``user``'s internet access from ``starts`` until ``ends`` (None: until restored)."""
    if not reason.strip():
        raise ControlError("a reason is needed for a suspension")
    if ends is not None and ends <= starts:
        raise ControlError("the suspension would end before it starts")
    suspension = Suspension(user=user, starts=starts, ends=ends, reason=reason.strip(), by=by)
    session.add(suspension)
    session.flush()
    chain.append(
        session,
        at=now,
        kind="access.suspend",
        actor=by,
        subject="internet access",
        target=f"user:{user}",
        reason=suspension.reason,
        until=ends,
        details={"suspension": suspension.id, "from": starts.isoformat(), **(extra or {})},
    )
    return suspension


def current_suspensions(
    session: Session, now: datetime, user: str | None = None
) -> list[Suspension]:
    query = select(Suspension).where(
        Suspension.restored_at.is_(None),
        or_(Suspension.ends.is_(None), Suspension.ends > now),
    )
    if user is not None:
        query = query.where(Suspension.user == user)
    return list(session.scalars(query.order_by(Suspension.id)))


def restore(
    session: Session,
    user: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    extra: dict[str, object] | None = None,
) -> int:
    """Give ``user`` their access back: ends every suspension of theirs not yet over."""
    found = current_suspensions(session, now, user)
    if not found:
        raise ControlError(f"{user} has no suspension in force")
    for suspension in found:
        suspension.restored_by, suspension.restored_at = by, now
        chain.append(
            session,
            at=now,
            kind="access.restore",
            actor=by,
            subject="internet access",
            target=f"user:{user}",
            reason=reason,
            until=suspension.ends,
            details={"suspension": suspension.id, "suspended_by": suspension.by, **(extra or {})},
        )
    return len(found)


def load_controls(session: Session, now: datetime) -> Controls:
    """The snapshot the proxy decides with: approved, unrevoked, unended overrides; suspensions."""
    found = session.scalars(
        select(Override).where(
            Override.approved_by.is_not(None),
            Override.revoked_at.is_(None),
            Override.ends > now,
        )
    ).all()
    active = [
        ActiveOverride(
            id=o.id,
            what_kind=cast(WhatKind, o.what_kind),
            what=o.what,
            scope_kind=cast(ScopeKind, o.scope_kind),
            scope=o.scope,
            starts=o.starts,
            ends=o.ends,
            approved_by=o.approved_by,
            reason=o.reason,
        )
        for o in found
        if o.ends is not None and o.approved_by is not None
    ]
    suspensions = [
        ActiveSuspension(s.id, s.user, s.starts, s.ends, s.reason, s.by)
        for s in current_suspensions(session, now)
    ]
    return Controls.of(active, suspensions, loaded_at=now)


def expiries_due(session: Session, now: datetime) -> bool:
    return (
        session.scalars(
            select(Override.id)
            .where(
                Override.expiry_recorded.is_(False),
                Override.revoked_at.is_(None),
                Override.approved_by.is_not(None),
                Override.ends <= now,
            )
            .limit(1)
        ).first()
        is not None
    )


__all__ = ["Change", "ControlError"]
