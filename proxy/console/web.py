"""What every console page shares: the state, templates, the signed-in person, CSRF, paging.

Every page handler starts with ``signed = await person(request, "ACTION")``:
it answers 303 to the sign-in page for no or an expired session, and 403 for
a role that may not do ``ACTION`` (``accounts.MAY``). Every form post then
goes through ``await checked_form(request, signed)``, which refuses (403) a
post without the session's CSRF token. The governor's role is in no write
action, so every post of theirs is refused, whatever the page.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine, Select, select, union
from sqlalchemy.orm import QueryableAttribute, Session
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from proxy.console import sessions
from proxy.console.accounts import MAY, Directory
from proxy.filterset import Filterset, load_filterset
from proxy.incidents.alerts import Alerter
from proxy.incidents.models import Incident
from proxy.store.engine import session as store_session
from proxy.store.models import Change
from proxy.store.site import SITE_PATTERN, current_site

COOKIE = "sg_session"
LOGIN_COOKIE = "sg_login"
PER_PAGE = 25

# The policy's category names as a headteacher would say them; others are shown
# with underscores as spaces.
PLAIN_CATEGORIES = {
    "adult": "adult content",
    "child_abuse": "child sexual abuse images (IWF list)",
    "terrorism": "terrorist content (police list)",
    "gambling": "gambling",
    "games": "games",
    "social": "social media and chat",
    "bypass": "sites for getting round the filter",
    "doh": "private DNS services that get round the filter",
    "drugs": "drugs",
    "violence": "violence",
    "weapons": "weapons",
    "hacking": "hacking",
    "dating": "dating",
    "phishing": "fraud and phishing",
    "malware": "malware",
}


def plain_category(name: str | None) -> str:
    if name is None:
        return "no category"
    return PLAIN_CATEGORIES.get(name, name.replace("_", " "))


def plain_action(label: str) -> str:
    kind, _, rest = label.partition(":")
    return {
        "acceptable": "allowed",
        "blocked": "blocked",
        "unacceptable": "blocked, and recorded as an incident",
        "acceptable_at": f"allowed only at {rest.replace(',', ', ')} times",
        "acceptable_for": f"allowed only for {rest.replace(',', ', ')}",
    }.get(kind, label)


class FilterHolder:
    """The configuration, loaded again when the policy or settings file changes."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self._stamp: tuple[float, ...] = ()
        self._fs: Filterset | None = None

    def _mtimes(self) -> tuple[float, ...]:
        paths = [self.config_dir / "schoolgate.yaml"]
        if self._fs is not None:
            paths.append(self._fs.policy.source)
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths)

    def get(self) -> Filterset:
        stamp = self._mtimes()
        if self._fs is None or stamp != self._stamp:
            try:
                self._fs = load_filterset(self.config_dir)
            except Exception:
                if self._fs is None:
                    raise
                # A broken edit: keep the last good configuration, as the proxy does.
            self._stamp = self._mtimes()
        return self._fs


@dataclass
class State:
    """One console's configuration, store and clock (tests may move the clock)."""

    config_dir: Path
    engine: Engine
    filters: FilterHolder
    templates: Environment
    secure_cookies: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    idle: timedelta = sessions.IDLE
    absolute: timedelta = sessions.ABSOLUTE
    # checks the password of accounts made with `users add --ldap` (tests give a mock directory)
    directory: Directory | None = None
    # tells requesters of answers by e-mail (alerts.smtp), off the request path
    alerter: Alerter | None = None

    @property
    def fs(self) -> Filterset:
        return self.filters.get()

    def now(self) -> datetime:
        return self.clock()

    def session(self, *, read_only: bool = False) -> Any:
        return store_session(self.engine, read_only=read_only)


def template_env() -> Environment:
    folder = Path(str(resources.files("proxy.console").joinpath("templates")))
    env = Environment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["category"] = plain_category
    env.filters["action"] = plain_action
    return env


def state_of(request: Request) -> State:
    state: State = request.app.state.console
    return state


def local(state: State, value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(state.fs.policy.timezone).strftime("%a %d %b %Y, %H:%M")


def render(
    request: Request,
    name: str,
    signed: sessions.Signed | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    state = state_of(request)
    page = state.templates.get_template(name).render(
        request=request,
        signed=signed,
        me=signed.person if signed else None,
        may=lambda action: signed is not None and signed.person.role in MAY[action],
        school=state.fs.policy.school,
        local=lambda v: local(state, v),
        # a trust account sees every school's rows: pages add a site column and filter
        every_site=signed is not None and signed.person.every_site,
        this_site=current_site(),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


async def person(request: Request, action: str | None = None) -> sessions.Signed:
    """The signed-in person, or 303 to sign-in; 403 if their role may not do ``action``."""
    state = state_of(request)
    token = request.cookies.get(COOKIE)
    with state.session() as s:
        signed = sessions.resume(s, token, state.now(), idle=state.idle, absolute=state.absolute)
    if signed is None:
        # Back to this page after signing in (a GET only: a post is never replayed).
        query = {"expired": "1"} if token else {}
        if request.method == "GET":
            here = request.url
            query["next"] = here.path + (f"?{here.query}" if here.query else "")
        target = "/login" + (f"?{urlencode(query)}" if query else "")
        raise HTTPException(303, headers={"Location": target})
    if action is not None and signed.person.role not in MAY[action]:
        raise HTTPException(403, "your role cannot do this")
    request.state.signed = signed
    return signed


# --- sites: a school's account sees its own school's rows, a trust account every school's ---


def site_of(request: Request, signed: sessions.Signed) -> str | None:
    """The site whose rows a page shows: a school account's own, whatever is asked; a trust
    account's choice (``?site=NAME``), or None for every site."""
    if not signed.person.every_site:
        return signed.person.scope
    chosen = request.query_params.get("site", "")
    return chosen if SITE_PATTERN.match(chosen) else None


def at_sites[Q: Select[*tuple[Any, ...]]](
    query: Q, column: QueryableAttribute[str], site: str | None
) -> Q:
    """``query`` kept to ``site``'s rows (None: every site's)."""
    return query if site is None else query.where(column == site)


def visible(signed: sessions.Signed, site: str, what: str) -> None:
    """404 for a row of a site they may not see: as if it did not exist, so an id tried at
    random tells a school's account nothing of another school."""
    if not signed.person.sees(site):
        raise HTTPException(404, f"there is no {what}")


def here(signed: sessions.Signed) -> None:
    """403 unless they may see this console's own site: the pages that read its own files
    (policy, access log, lists) or change its filter are that site's."""
    if not signed.person.sees(current_site()):
        raise HTTPException(
            403, f"this console is {current_site()}'s; your account is {signed.person.scope}'s"
        )


def known_sites(s: Session) -> list[str]:
    """Every site that has recorded something, for a trust account's site filter."""
    found = union(select(Incident.site).distinct(), select(Change.site).distinct())
    return sorted({str(v) for v in s.scalars(select(found.subquery().c[0]))} | {current_site()})


async def checked_form(
    request: Request, signed: sessions.Signed, *, anywhere: bool = False
) -> FormData:
    """The posted form, if it carries this session's CSRF token; else 403. A post acts at
    this console's site (its rows are stamped with it), so a school's account may post only
    on its own school's console; a trust account on any (``anywhere``: signing out)."""
    form = await request.form()
    given = form.get("csrf")
    if not isinstance(given, str) or not secrets.compare_digest(given, signed.csrf):
        raise HTTPException(403, "this form has expired or did not come from this console")
    if not anywhere:
        here(signed)
    return form


def text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def safe_next(value: object) -> str | None:
    """A path on this console to go back to, never another site (``//host``, ``/\\host``)."""
    if not isinstance(value, str) or not value.startswith("/") or value[1:2] in ("/", "\\"):
        return None
    return value[:2000]


def see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True)
class Page[T]:
    """One page of a list: its rows, its number, and whether there are more either side."""

    items: Sequence[T]
    number: int
    has_next: bool
    param: str = "page"

    @property
    def has_prev(self) -> bool:
        return self.number > 1


def page_number(request: Request, name: str = "page") -> int:
    """The page asked for in the query (``name``: a page with two lists pages them apart)."""
    raw = request.query_params.get(name, "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


def paginate[T](
    s: Session, query: Select[T], number: int, per_page: int = PER_PAGE, param: str = "page"
) -> Page[T]:
    """Rows of ``query`` for page ``number``: one extra row is read to know if there is a next
    page, so no page ever counts the whole table."""
    rows = list(s.scalars(query.limit(per_page + 1).offset((number - 1) * per_page)))
    return Page(rows[:per_page], number, len(rows) > per_page, param)
