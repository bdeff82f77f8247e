"""What is in force now: approved overrides, filter switch-offs and suspensions, each with
"end now"; and the forms that suspend a user's access or ask for a switch-off.

A switch-off is an override of ``all`` categories (never illegal ones), so it
too waits for a second person's approval in the inbox. Every form here goes
through ``act``: the person and the form are checked, the control call runs
in one session, and a refusal shows this page again with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from proxy.console.requests import DURATIONS, actor_details, end_for
from proxy.console.sessions import Signed
from proxy.console.web import (
    State,
    at_sites,
    checked_form,
    known_sites,
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
from proxy.store import control
from proxy.store.models import Override, Suspension


async def live(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    signed = await person(request, "end")
    state = state_of(request)
    now = state.now()
    site = site_of(request, signed)
    with state.session(read_only=True) as s:
        page = paginate(
            s,
            at_sites(
                select(Override)
                .where(
                    Override.approved_by.is_not(None),
                    Override.revoked_at.is_(None),
                    Override.ends > now,
                )
                .order_by(Override.ends),
                Override.site,
                site,
            ),
            page_number(request),
        )
        suspensions = paginate(
            s,
            at_sites(
                select(Suspension)
                .where(
                    Suspension.restored_at.is_(None),
                    (Suspension.ends.is_(None)) | (Suspension.ends > now),
                )
                .order_by(Suspension.id),
                Suspension.site,
                site,
            ),
            page_number(request, "suspensions_page"),
            param="suspensions_page",
        )
        sites = known_sites(s) if signed.person.every_site else []
    return render(
        request,
        "live.html",
        signed,
        status_code,
        page=page,
        suspensions=suspensions,
        groups=sorted(state.fs.policy.groups),
        durations=DURATIONS,
        error=error,
        status_of=lambda o: control.status_of(o, now),
        sites=sites,
        site=request.query_params.get("site", ""),
    )


@dataclass(frozen=True, slots=True)
class Action:
    """What every form on these pages hands its control call: the session, the checked form,
    who acts, when, and the request's details for the change-control row."""

    session: Session
    form: FormData
    by: str
    now: datetime
    extra: dict[str, object]
    state: State
    signed: Signed  # whose scope the rows acted on must be within


async def act(
    request: Request,
    permission: str,
    call: Callable[[Action], object],
    *,
    failed_status: int,
    then: str = "/live",
) -> Response:
    """Check the person and the form, run ``call`` in one session, then go to ``then``; a
    ``ControlError`` shows this page again with its message."""
    signed = await person(request, permission)
    form = await checked_form(request, signed)
    state = state_of(request)
    try:
        with state.session() as s:
            call(
                Action(
                    s, form, signed.person.name, state.now(), actor_details(request), state, signed
                )
            )
    except control.ControlError as exc:
        return await live(request, str(exc), failed_status)
    return see_other(then)


def _end_override(request: Request, a: Action) -> None:
    found = a.session.get(Override, int(request.path_params["id"]))
    if found is not None:
        visible(a.signed, found.site, "such override")
    control.revoke_override(
        a.session,
        int(request.path_params["id"]),
        by=a.by,
        reason=text(a.form, "reason") or "ended from the console",
        now=a.now,
        extra=a.extra,
    )


def _restore(a: Action) -> None:
    # another school's suspension is theirs to end (it holds at every site)
    for held in control.current_suspensions(a.session, a.now, text(a.form, "user", 200)):
        if not a.signed.person.sees(held.site):
            raise control.ControlError(
                f"{held.user} was suspended at {held.site}: ask {held.site} to restore"
            )
    control.restore(
        a.session,
        text(a.form, "user", 200),
        by=a.by,
        reason=text(a.form, "reason") or "access restored from the console",
        now=a.now,
        extra=a.extra,
    )


def _suspend(a: Action) -> None:
    user = text(a.form, "user", 200)
    if not user:
        raise control.ControlError("say whose access to suspend")
    choice = text(a.form, "how_long")
    ends = None if choice == "restored" else end_for(a.state, choice, text(a.form, "until"), a.now)
    control.suspend(
        a.session,
        user,
        by=a.by,
        reason=text(a.form, "reason"),
        starts=a.now,
        ends=ends,
        now=a.now,
        extra=a.extra,
    )


def _switch_off(a: Action) -> None:
    group = text(a.form, "group", 100)
    if group not in a.state.fs.policy.groups:
        raise control.ControlError("choose the group the filter is switched off for")
    control.request_override(
        a.session,
        what_kind="all",
        what="*",
        scope_kind="group",
        scope=group,
        starts=a.now,
        ends=end_for(a.state, text(a.form, "how_long"), text(a.form, "until"), a.now),
        reason=text(a.form, "reason"),
        requested_by=a.by,
        now=a.now,
        extra=a.extra,
    )


async def end_override(request: Request) -> Response:
    return await act(request, "end", lambda a: _end_override(request, a), failed_status=409)


async def restore(request: Request) -> Response:
    return await act(request, "suspend", _restore, failed_status=409)


async def suspend(request: Request) -> Response:
    return await act(request, "suspend", _suspend, failed_status=400)


async def switch_off(request: Request) -> Response:
    return await act(request, "request", _switch_off, failed_status=400, then="/mine")
