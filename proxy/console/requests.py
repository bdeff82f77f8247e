"""Unblock requests: staff ask, see their answers; the head's inbox approves or declines.

Every write calls the same change-control functions as the CLI
(``proxy.store.control``) with the signed-in person as the actor, so the
two-person rule (never the requester, only an approver the policy names) is
enforced in one place, and the change log records who did it, from where.
A decline is a revocation of the pending request with the reason the
requester then sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from blocklists.index import split_entry
from blocklists.normalise import BadURL, normalise_url
from proxy.console.accounts import find_user
from proxy.console.sessions import Signed
from proxy.console.web import (
    State,
    at_sites,
    checked_form,
    known_sites,
    local,
    page_number,
    paginate,
    person,
    render,
    see_other,
    site_of,
    state_of,
    text,
    visible,
)
from proxy.controls import ScopeKind
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.incidents.alerts import Alert, Email
from proxy.overridetarget import TargetError, site_target
from proxy.store import control
from proxy.store.models import Change, Override

LESSON = timedelta(hours=1)
END_OF_DAY = time(16, 0)
DURATIONS = {
    "lesson": "until the end of this lesson (one hour from approval)",
    "today": "until the end of the school day (16:00)",
    "week": "until the end of this week (Friday 16:00)",
    "fortnight": "for two weeks",
    "date": "until a date I choose",
}


def tell_requester(state: State, override: Override, answer: str) -> None:
    """E-mail the requester the answer, when their console account has an address."""
    with state.session(read_only=True) as s:
        user = find_user(s, override.requested_by)
    if user is None or not user.email or state.alerter is None:
        return
    what = "switching the filter off" if override.what_kind == "all" else override.what
    subject = f"Your unblock request #{override.id} ({what}): {answer}"
    text = (
        f"Your request #{override.id} for {what} ({control.scope_label(override)}) has been "
        f"{answer}.\n\nSee your requests in the web filter's console.\n"
    )
    alert = Alert("answer", subject, text, {"override": override.id})
    state.alerter.send(alert, [Email(state.fs.settings.alerts.smtp, (user.email,))])


def actor_details(request: Request) -> dict[str, object]:
    return {"via": "console", "address": request.client.host if request.client else None}


def end_for(state: State, choice: str, on: str, now: datetime) -> datetime:
    """The end of an approval or request from the form's choice, in the school's time."""
    zone = state.fs.policy.timezone
    here = now.astimezone(zone)
    if choice == "lesson":
        return now + LESSON
    if choice == "today":
        return datetime.combine(here.date(), END_OF_DAY, zone)
    if choice == "week":
        friday = here.date() + timedelta(days=(4 - here.weekday()) % 7)
        end = datetime.combine(friday, END_OF_DAY, zone)
        return end if end > now else end + timedelta(days=7)  # Friday evening: next week's
    if choice == "fortnight":
        return now + timedelta(days=14)
    if choice == "date":
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise control.ControlError("give the date as YYYY-MM-DD") from None
        return datetime.combine(day + timedelta(days=1), time(0, 0), zone)
    raise control.ControlError("choose how long")


# --- staff: ask, and see the answers --------------------------------------------------------


async def request_form(request: Request) -> Response:
    signed = await person(request, "request")
    fs = state_of(request).fs
    return render(
        request,
        "request.html",
        signed,
        url=request.query_params.get("url", "")[:2000],
        reference=request.query_params.get("reference", "")[:40],
        groups=sorted(fs.policy.groups),
        durations=DURATIONS,
        error=None,
    )


async def request_submit(request: Request) -> Response:
    signed = await person(request, "request")
    form = await checked_form(request, signed)
    state = state_of(request)
    fs = state.fs
    url, reason, scope = text(form, "url"), text(form, "reason"), text(form, "for")
    reference = text(form, "reference", 40)
    now = state.now()
    error = None
    try:
        what_kind, what = site_target(fs, url)
        if scope == "me":
            scope_kind: ScopeKind = "user"
            scope_name: str | None = signed.person.name
        elif scope.startswith("group:") and scope[6:] in fs.policy.groups:
            scope_kind, scope_name = "group", scope[6:]
        else:
            raise control.ControlError("choose who it is for")
        ends = end_for(state, text(form, "how_long"), text(form, "until"), now)
        extra = actor_details(request)
        if reference:
            extra["block_reference"] = reference
        with state.session() as s:
            found = control.request_override(
                s,
                what_kind=what_kind,
                what=what,
                scope_kind=scope_kind,
                scope=scope_name,
                starts=now,
                ends=ends,
                reason=reason,
                requested_by=signed.person.name,
                now=now,
                extra=extra,
            )
    except (TargetError, control.ControlError) as exc:
        error = str(exc)
    if error is not None:
        return render(
            request,
            "request.html",
            signed,
            400,
            url=url,
            reference=reference,
            groups=sorted(fs.policy.groups),
            durations=DURATIONS,
            error=error,
        )
    return see_other(f"/mine?sent={found.id}")


def answer_of(s: Session, override: Override) -> str | None:
    """The reason given when a request was declined or an override ended early."""
    if override.revoked_at is None:
        return None
    rows = s.scalars(
        select(Change)
        .where(Change.kind == "override.revoke", Change.at == override.revoked_at)
        .order_by(Change.seq.desc())
    )
    for row in rows:
        if json.loads(row.details).get("override") == override.id:
            return row.reason
    return None


@dataclass(frozen=True)
class Shown:
    """An override as a person reads it."""

    row: Override
    status: str
    answer: str | None


def plain_status(override: Override, now: datetime) -> str:
    status = control.status_of(override, now)
    if status == "revoked" and override.approved_by is None:
        return "declined" if override.revoked_by != override.requested_by else "withdrawn"
    return {
        "pending": "waiting for approval",
        "scheduled": "approved (starts later)",
        "active": "approved (in force)",
        "expired": "ended",
        "revoked": "ended early",
    }[status]


async def mine(request: Request) -> Response:
    signed = await person(request, "request")
    state = state_of(request)
    now = state.now()
    with state.session(read_only=True) as s:
        page = paginate(
            s,
            select(Override)
            .where(Override.requested_by == signed.person.name)
            .order_by(Override.id.desc()),
            page_number(request),
        )
        shown = [Shown(o, plain_status(o, now), answer_of(s, o)) for o in page.items]
    return render(
        request, "mine.html", signed, page=page, shown=shown, sent=request.query_params.get("sent")
    )


# --- the head's inbox -----------------------------------------------------------------------


async def inbox(request: Request) -> Response:
    signed = await person(request, "approve")
    state = state_of(request)
    now = state.now()
    site = site_of(request, signed)
    with state.session(read_only=True) as s:
        page = paginate(
            s,
            at_sites(
                select(Override)
                .where(
                    Override.approved_by.is_(None),
                    Override.revoked_at.is_(None),
                    (Override.ends.is_(None)) | (Override.ends > now),
                )
                .order_by(Override.id),
                Override.site,
                site,
            ),
            page_number(request),
        )
        sites = known_sites(s) if signed.person.every_site else []
    return render(
        request,
        "inbox.html",
        signed,
        page=page,
        sites=sites,
        site=request.query_params.get("site", ""),
    )


@dataclass(frozen=True)
class GroupNow:
    group: str
    decision: str
    category: str | None
    action: str


def site_facts(
    fs: Filterset, override: Override, when: datetime
) -> tuple[list[str], list[GroupNow]]:
    """The site's categories and what each group gets there now (the same ``decide`` as
    ``explain``)."""
    if override.what_kind not in ("host", "url"):
        return [], []
    host, path = split_entry(override.what)
    try:
        canonical = normalise_url(f"http://{host}{path or '/'}")
    except BadURL:
        return [], []
    found = {
        name
        for hit in fs.lookup(canonical)
        for name, cat in fs.policy.categories.items()
        if hit.list in cat.lists
    }
    groups = []
    for group in sorted(fs.policy.groups):
        d = fs.decide_url(Identity(None, group, None, "given"), canonical, when)
        groups.append(GroupNow(group, d.decision, d.category, d.action))
        if d.category:
            found.add(d.category)
    return sorted(found), groups


def _pending(s: Session, override_id: int, signed: Signed) -> Override:
    """The request, if their account may see its site; else 404, as for no request."""
    found = s.get(Override, override_id)
    if found is None:
        raise HTTPException(404, "no such request")
    visible(signed, found.site, "such request")
    return found


async def inbox_item(
    request: Request, error: str | None = None, status_code: int = 200
) -> Response:
    signed = await person(request, "approve")
    state = state_of(request)
    override_id = int(request.path_params["id"])
    now = state.now()
    with state.session(read_only=True) as s:
        found = _pending(s, override_id, signed)
    categories, groups = site_facts(state.fs, found, now)
    return render(
        request,
        "inbox_item.html",
        signed,
        status_code,
        o=found,
        status=plain_status(found, now),
        categories=categories,
        groups=groups,
        durations=DURATIONS,
        approvers=state.fs.policy.approvers,
        error=error,
        scope=control.scope_label(found),
    )


async def approve(request: Request) -> Response:
    signed = await person(request, "approve")
    form = await checked_form(request, signed)
    state = state_of(request)
    override_id = int(request.path_params["id"])
    now = state.now()
    try:
        ends = end_for(state, text(form, "how_long"), text(form, "until"), now)
        with state.session() as s:
            _pending(s, override_id, signed)
            found = control.approve_override(
                s,
                override_id,
                by=signed.person.name,
                approvers=state.fs.policy.approvers,
                now=now,
                ends=ends,
                extra=actor_details(request),
            )
    except control.ControlError as exc:
        return await inbox_item(request, str(exc), 409)
    tell_requester(
        state, found, f"approved by {signed.person.name} until {local(state, found.ends)}"
    )
    return see_other(f"/inbox?done={override_id}")


async def decline(request: Request) -> Response:
    signed = await person(request, "approve")
    form = await checked_form(request, signed)
    state = state_of(request)
    override_id = int(request.path_params["id"])
    reason = text(form, "reason")
    try:
        if not reason:
            raise control.ControlError("say why it is declined: the requester is shown this")
        with state.session() as s:
            found = _pending(s, override_id, signed)
            if control.status_of(found, state.now()) != "pending":
                raise control.ControlError(f"request #{override_id} is no longer waiting")
            control.revoke_override(
                s,
                override_id,
                by=signed.person.name,
                reason=reason,
                now=state.now(),
                extra={**actor_details(request), "declined": True},
            )
    except control.ControlError as exc:
        return await inbox_item(request, str(exc), 409)
    tell_requester(state, found, f"declined by {signed.person.name}: {reason}")
    return see_other(f"/inbox?done={override_id}")
