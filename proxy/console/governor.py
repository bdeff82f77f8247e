"""The governor's read-only pages: the change log with its chain and anchor, exports, the
termly report and the annual review.

Exports are ``changes export`` (``proxy.store.export``); the report is
``report termly`` (``proxy.incidents.report``): the same code, so the
console and the command line cannot disagree. The log page shows the chain
head to write down; checking the whole chain reads every row, so it is a
separate page the governor asks for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from proxy.console.web import (
    State,
    at_sites,
    here,
    known_sites,
    page_number,
    paginate,
    person,
    render,
    site_of,
    state_of,
)
from proxy.incidents import report as termly
from proxy.store import chain, export
from proxy.store.models import Change
from proxy.store.site import current_site

KIND_GROUPS = {
    "": "everything",
    "override": "unblocks and switch-offs",
    "access": "suspensions of internet access",
    "policy": "policy changes",
    "lists": "list updates",
}


def _day(state: State, value: str, *, end: bool = False) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, "give dates as YYYY-MM-DD") from None
    start = datetime(day.year, day.month, day.day, tzinfo=state.fs.policy.timezone)
    return start + timedelta(days=1) if end else start


async def changes(request: Request) -> Response:
    signed = await person(request, "changes")
    state = state_of(request)
    kind = request.query_params.get("kind", "")
    if kind not in KIND_GROUPS:
        kind = ""
    site = site_of(request, signed)
    query = at_sites(select(Change).order_by(Change.seq.desc()), Change.site, site)
    if kind:
        query = query.where(Change.kind.startswith(f"{kind}."))
    with state.session(read_only=True) as s:
        page = paginate(s, query, page_number(request))
        head = chain.head(s)
        sites = known_sites(s) if signed.person.every_site else []
    today = datetime.now(UTC).date()
    return render(
        request,
        "changes.html",
        signed,
        page=page,
        head=head,
        kind=kind,
        kinds=KIND_GROUPS,
        labels=chain.KINDS,
        applied=request.query_params.get("applied"),
        term_start=(today - timedelta(days=90)).isoformat(),
        today=today.isoformat(),
        sites=sites,
        site=request.query_params.get("site", ""),
    )


async def verify(request: Request) -> Response:
    signed = await person(request, "changes")
    state = state_of(request)
    with state.session(read_only=True) as s:
        check = chain.verify(s)
    return render(request, "verify.html", signed, check=check)


async def export_changes(request: Request) -> Response:
    signed = await person(request, "changes")
    state = state_of(request)
    q = request.query_params
    site = site_of(request, signed)
    period = export.Period(_day(state, q.get("from", "")), _day(state, q.get("to", ""), end=True))
    fmt = q.get("format", "csv")
    with state.session(read_only=True) as s:
        rows = list(
            s.scalars(
                at_sites(
                    select(Change)
                    .where(Change.at >= period.start, Change.at < period.end)
                    .order_by(Change.seq),
                    Change.site,
                    site,
                )
            )
        )
        check = chain.verify(s)
    render_as = export.to_html if fmt == "html" else export.to_csv
    body = render_as(
        rows,
        school=_naming(state.fs.policy.school, site),
        period=period,
        made=state.now(),
        check=check,
        zone=state.fs.policy.timezone,
    )
    if fmt == "html":
        return HTMLResponse(body)
    name = f"schoolgate-changes-{site or 'trust'}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def report(request: Request) -> Response:
    signed = await person(request, "changes")
    state = state_of(request)
    q = request.query_params
    if not q.get("from") or not q.get("to"):
        today = datetime.now(UTC).date()
        return render(
            request,
            "report_form.html",
            signed,
            start=(today - timedelta(days=90)).isoformat(),
            end=today.isoformat(),
        )
    since, until = _day(state, q["from"]), _day(state, q["to"], end=True)
    if until <= since:
        raise HTTPException(400, "the end is before the start")
    # The blocked-site figures come from this gateway's own access log, so a report is of
    # this site, or (for a trust account) of the whole trust with this site's blocked figures.
    here(signed)
    site = site_of(request, signed)
    if site is not None and site != current_site():
        raise HTTPException(
            400, f"open {site}'s report on {site}'s console: its blocked-site figures are there"
        )
    fs = state.fs
    with state.session(read_only=True) as s:
        data = termly.gather(
            s,
            fs.settings.data_dir,
            _naming(fs.policy.school, site),
            since,
            until,
            fs.policy.timezone,
            state.now(),
            access_log=fs.settings.access_log_path,
            site=site,
        )
    return HTMLResponse(termly.render_html(data))


def _naming(school: str, site: str | None) -> str:
    """A report or export's title names what it covers: one site, or the whole trust."""
    return f"{school} (whole trust)" if site is None else f"{school} (site {site})"


# What the DfE filtering and monitoring standards ask a school to review at least once a
# year, and where Schoolgate holds the evidence.
ANNUAL_REVIEW = [
    (
        "The filtering provision is reviewed at least annually, by the senior leadership "
        "team, the DSL, the IT provider and a governor",
        "The change log and its export for the year; this page, printed, signed by each.",
        "/changes",
    ),
    (
        "Roles and responsibilities for filtering and monitoring are named",
        "The console accounts and their roles (technician, approver, DSL, governor).",
        None,
    ),
    (
        "What is blocked, and why, matches the school's risk assessment",
        "The policy in force and every change to it, with its reason and impact.",
        "/changes?kind=policy",
    ),
    (
        "Illegal content (IWF, police-assessed terrorist content) is always blocked",
        "The illegal lists cannot be opened by any group, override or allow entry; "
        "their updates are in the list history.",
        "/changes?kind=lists",
    ),
    (
        "Unblocks are approved by someone other than the person asking, and are time-limited",
        "Every unblock's request, approval or decline, and end, with the names of the people.",
        "/changes?kind=override",
    ),
    (
        "Incidents are recorded, reviewed by two people and acted on",
        "The termly report: incidents by type, severity and status, with the reviews.",
        "/report",
    ),
    (
        "The system is checked to be working (blocking, alerts, lists up to date)",
        "The technician's status page: list ages and update results, alerts configured.",
        None,
    ),
]


async def annual_review(request: Request) -> Response:
    signed = await person(request, "changes")
    return render(request, "annual.html", signed, items=ANNUAL_REVIEW)
