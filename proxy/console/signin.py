"""Signing in and out, and each role's home page.

The sign-in form carries its own CSRF token (a random value in a
``SameSite=Strict`` cookie and in the form, which must match), since there is
no session yet. The session cookie is ``HttpOnly``, ``SameSite=Strict``,
``Secure`` when the console serves HTTPS, and lives no longer than the
session's absolute timeout.
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from proxy.console import sessions
from proxy.console.accounts import SignInRefused, sign_in
from proxy.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    person,
    render,
    safe_next,
    see_other,
    state_of,
    text,
)

HOMES = {
    "technician": "/status",
    "approver": "/inbox",
    "governor": "/changes",
    "staff": "/mine",
    "dsl": "/home",
    "reviewer": "/home",
}


def _login_page(
    request: Request,
    error: str | None = None,
    status_code: int = 200,
    next_path: str | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    expired = request.query_params.get("expired") == "1"
    response = render(
        request,
        "login.html",
        None,
        status_code,
        error=error,
        login_csrf=token,
        expired=expired,
        next=next_path or safe_next(request.query_params.get("next")) or "",
    )
    state = state_of(request)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=state.secure_cookies,
    )
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request)


async def login(request: Request) -> Response:
    state = state_of(request)
    form = await request.form()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = form.get("csrf")
    if not cookie or not isinstance(given, str) or not secrets.compare_digest(given, cookie):
        return _login_page(request, "The form expired: please sign in again.", 403)
    address = request.client.host if request.client else None
    try:
        who = sign_in(
            state.engine,
            text(form, "name", 200),
            str(form.get("password") or "")[:1000],
            text(form, "code", 20),
            state.now(),
            address=address,
            directory=state.directory,
        )
    except SignInRefused as exc:
        return _login_page(request, str(exc), 401, safe_next(form.get("next")))
    with state.session() as s:
        token = sessions.start(s, who, state.now())
    response = see_other(safe_next(form.get("next")) or HOMES.get(who.role, "/home"))
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(state.absolute.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=state.secure_cookies,
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


async def logout(request: Request) -> Response:
    from proxy.console.web import checked_form

    signed = await person(request)
    await checked_form(request, signed, anywhere=True)  # anyone may sign out anywhere
    state = state_of(request)
    with state.session() as s:
        sessions.end(s, request.cookies.get(COOKIE))
    response = see_other("/login")
    response.delete_cookie(COOKIE)
    return response


async def root(request: Request) -> Response:
    signed = await person(request)
    return see_other(HOMES.get(signed.person.role, "/home"))


async def home(request: Request) -> Response:
    signed = await person(request)
    return render(request, "home.html", signed)
