"""The console's Starlette application: its routes, security headers and error pages.

``create_app(config_dir)`` opens the store (bringing its schema up to date)
and the configuration, and returns the ASGI app ``proxy.console.server``
serves. Every response says not to cache it, not to be framed, and to load
nothing but this console's own files (no CDN, no inline script).

Adding a page (the DSL's queue and timelines come next): a module with async
handlers that start with ``signed = await web.person(request, ACTION)`` (the
role check; ACTION a key of ``accounts.MAY``, e.g. ``incidents``), read the
form with ``await web.checked_form(request, signed)`` (the CSRF check), list
rows with ``web.paginate``, and answer with ``web.render(request, "x.html",
signed, ...)`` from a template that extends ``base.html``; then a ``Route``
below and a nav entry in ``base.html`` with the same ACTION.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from proxy.console import dsl, governor, learned, live, requests, signin, technician
from proxy.console.accounts import directory_for
from proxy.console.web import FilterHolder, State, render, template_env
from proxy.incidents.alerts import Alerter
from proxy.store import migrate
from proxy.store.engine import database_url, make_engine
from proxy.store.site import set_site

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.url.scheme == "https":
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (301, 302, 303, 307):
        return Response(status_code=exc.status_code, headers=exc.headers)
    signed = getattr(request.state, "signed", None)
    titles = {403: "Not allowed", 404: "Not found", 400: "Something is missing"}
    return render(
        request,
        "error.html",
        signed,
        exc.status_code,
        title=titles.get(exc.status_code, "Something went wrong"),
        detail=exc.detail,
    )


def routes() -> list[Route | Mount]:
    static = StaticFiles(packages=[("proxy.console", "static")])
    return [
        Route("/", signin.root),
        Route("/login", signin.login_form, methods=["GET"]),
        Route("/login", signin.login, methods=["POST"]),
        Route("/logout", signin.logout, methods=["POST"]),
        Route("/home", signin.home),
        Route("/request", requests.request_form, methods=["GET"]),
        Route("/request", requests.request_submit, methods=["POST"]),
        Route("/mine", requests.mine),
        Route("/inbox", requests.inbox),
        Route("/inbox/{id:int}", requests.inbox_item, methods=["GET"]),
        Route("/inbox/{id:int}/approve", requests.approve, methods=["POST"]),
        Route("/inbox/{id:int}/decline", requests.decline, methods=["POST"]),
        Route("/live", live.live),
        Route("/live/override/{id:int}/end", live.end_override, methods=["POST"]),
        Route("/live/restore", live.restore, methods=["POST"]),
        Route("/live/suspend", live.suspend, methods=["POST"]),
        Route("/live/switch-off", live.switch_off, methods=["POST"]),
        Route("/status", technician.status),
        Route("/test", technician.test_url),
        Route("/lists", technician.list_history),
        Route("/search", technician.search),
        Route("/policy", technician.policy_page, methods=["GET"]),
        Route("/policy/preview", technician.policy_preview, methods=["POST"]),
        Route("/policy/apply", technician.policy_apply, methods=["POST"]),
        Route("/policy/proposal/{id:int}/apply", technician.proposal_apply, methods=["POST"]),
        Route("/policy/proposal/{id:int}/withdraw", technician.proposal_withdraw, methods=["POST"]),
        Route("/learned", learned.learned_page),
        Route("/learned/decide", learned.learned_decide, methods=["POST"]),
        Route("/changes", governor.changes),
        Route("/changes/verify", governor.verify),
        Route("/changes/export", governor.export_changes),
        Route("/report", governor.report),
        Route("/annual-review", governor.annual_review),
        Route("/queue", dsl.queue_page),
        Route("/incidents/{id:int}", dsl.incident_page, methods=["GET"]),
        Route("/incidents/{id:int}/review", dsl.review_submit, methods=["POST"]),
        Route("/incidents/{id:int}/sign", dsl.sign_submit, methods=["POST"]),
        Route("/incidents/{id:int}/close", dsl.close_submit, methods=["POST"]),
        Route("/pupil", dsl.pupil_page),
        Route("/incidents/{id:int}/c2.pdf", dsl.c2_pdf),
        Route("/incidents/c3.csv", dsl.c3_csv),
        Route("/live-badge", dsl.live_badge),
        Route("/pupil.csv", dsl.pupil_csv),
        Mount("/static", app=static, name="static"),
    ]


def create_app(
    config_dir: Path,
    *,
    secure_cookies: bool = False,
    idle: timedelta | None = None,
    absolute: timedelta | None = None,
) -> Starlette:
    filters = FilterHolder(config_dir)
    fs = filters.get()
    set_site(fs.settings.site)  # the rows this console writes name its site (proxy/store/site.py)
    engine = make_engine(database_url(fs.settings))
    migrate.upgrade(engine)
    state = State(config_dir, engine, filters, template_env(), secure_cookies=secure_cookies)
    state.directory = directory_for(fs.settings)
    state.alerter = Alerter()
    state.alerter.start()
    if idle is not None:
        state.idle = idle
    if absolute is not None:
        state.absolute = absolute
    app = Starlette(
        routes=routes(),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=security_headers)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.console = state
    return app
