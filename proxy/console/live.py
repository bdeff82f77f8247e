"""What is in force now: approved overrides, filter switch-offs and suspensions, each with
"end now"; and the forms that suspend a user's access or ask for a switch-off.

A switch-off is an override of ``all`` categories (never illegal ones), so it
too waits for a second person's approval in the inbox.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from proxy.console.requests import DURATIONS, actor_details, end_for
from proxy.console.web import (
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


async def end_override(request: Request) -> Response:
    signed = await person(request, "end")
    form = await checked_form(request, signed)
    state = state_of(request)
    try:
        with state.session() as s:
            found = s.get(Override, int(request.path_params["id"]))
            if found is not None:
                visible(signed, found.site, "such override")
            control.revoke_override(
                s,
                int(request.path_params["id"]),
                by=signed.person.name,
                reason=text(form, "reason") or "ended from the console",
                now=state.now(),
                extra=actor_details(request),
            )
    except control.ControlError as exc:
        return await live(request, str(exc), 409)
    return see_other("/live")


async def restore(request: Request) -> Response:
    signed = await person(request, "suspend")
    form = await checked_form(request, signed)
    state = state_of(request)
    try:
        with state.session() as s:
            # another school's suspension is theirs to end (it holds at every site)
            for held in control.current_suspensions(s, state.now(), text(form, "user", 200)):
                if not signed.person.sees(held.site):
                    raise control.ControlError(
                        f"{held.user} was suspended at {held.site}: ask {held.site} to restore"
                    )
            control.restore(
                s,
                text(form, "user", 200),
                by=signed.person.name,
                reason=text(form, "reason") or "access restored from the console",
                now=state.now(),
                extra=actor_details(request),
            )
    except control.ControlError as exc:
        return await live(request, str(exc), 409)
    return see_other("/live")


async def suspend(request: Request) -> Response:
    signed = await person(request, "suspend")
    form = await checked_form(request, signed)
    state = state_of(request)
    now = state.now()
    user = text(form, "user", 200)
    try:
        if not user:
            raise control.ControlError("say whose access to suspend")
        choice = text(form, "how_long")
        ends = None if choice == "restored" else end_for(state, choice, text(form, "until"), now)
        with state.session() as s:
            control.suspend(
                s,
                user,
                by=signed.person.name,
                reason=text(form, "reason"),
                starts=now,
                ends=ends,
                now=now,
                extra=actor_details(request),
            )
    except control.ControlError as exc:
        return await live(request, str(exc), 400)
    return see_other("/live")


async def switch_off(request: Request) -> Response:
    signed = await person(request, "request")
    form = await checked_form(request, signed)
    state = state_of(request)
    now = state.now()
    group = text(form, "group", 100)
    try:
        if group not in state.fs.policy.groups:
            raise control.ControlError("choose the group the filter is switched off for")
        ends = end_for(state, text(form, "how_long"), text(form, "until"), now)
        with state.session() as s:
            control.request_override(
                s,
                what_kind="all",
                what="*",
                scope_kind="group",
                scope=group,
                starts=now,
                ends=ends,
                reason=text(form, "reason"),
                requested_by=signed.person.name,
                now=now,
                extra=actor_details(request),
            )
    except control.ControlError as exc:
        return await live(request, str(exc), 400)
    return see_other("/mine")
