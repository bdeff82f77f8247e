"""The safeguarding lead's pages: the queue, an incident with the pupil's timeline.

Only the safeguarding roles (``incidents`` in ``accounts.MAY``: DSL and
reviewer) open them. What a page shows of an illegal hit is the list and
its reference, never an address: the incident row has none, the access log
withholds it, and the timeline shows "address withheld". A subject with no
sign-in (``ip:ADDRESS``) is a shared address or device, labelled as such,
never as a person.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy.console.accounts import MAY, TRUST, find_user
from proxy.console.governor import _day
from proxy.console.models import ConsoleUser
from proxy.console.sessions import Signed
from proxy.console.web import (
    State,
    at_sites,
    checked_form,
    here,
    known_sites,
    page_number,
    paginate,
    person,
    plain_category,
    render,
    see_other,
    site_of,
    state_of,
    text,
    visible,
)
from proxy.incidents import deliveries, logindex, safeguarding_csv, timeline
from proxy.incidents import queue as q
from proxy.incidents import report as termly
from proxy.incidents import store as log
from proxy.incidents.alerts import Alert, Email
from proxy.incidents.c3 import C3_COLUMNS, c3_row
from proxy.incidents.freetext import REFUSAL, mentions_address
from proxy.incidents.keyedhash import load_or_create_key
from proxy.incidents.models import Incident, SearchRecord
from proxy.store.site import current_site

AROUND = timedelta(minutes=30)
# Never read more than this many log lines into one page (a busy shared address).
TIMELINE_LIMIT = 2000


def who(subject: str) -> str:
    """A subject in plain words: a person's name, or a shared address that is no person."""
    if subject.startswith("ip:"):
        return f"shared address {subject[3:]} (nobody signed in: not one person)"
    return subject


def access_log(state: State) -> Path:
    return state.fs.settings.access_log_path


def filters_of(state: State, request: Request) -> q.Filters:
    p = request.query_params
    status = p.get("status", "waiting")
    return q.Filters(
        pupil=p.get("pupil", "").strip()[:200],
        group=p.get("group", "").strip()[:100],
        incident_type=p.get("type", "").strip()[:100],
        category=p.get("category", "").strip()[:100],
        since=_day(state, p["from"]) if p.get("from") else None,
        until=_day(state, p["to"], end=True) if p.get("to") else None,
        status=status if status in ("waiting", "open", "reviewed", "closed", "all") else "waiting",
    )


def actions_of(incident: Incident) -> list[str]:
    return [str(a["label"]) for a in json.loads(incident.actions or "[]")]


async def queue_page(request: Request) -> Response:
    signed = await person(request, "incidents")
    state = state_of(request)
    filters = filters_of(state, request)
    site = site_of(request, signed)
    with state.session(read_only=True) as s:
        page = paginate(s, at_sites(q.queue(filters), Incident.site, site), page_number(request))
        counts = q.waiting(s, site)
        choices = q.choices(s, site)
        sent = deliveries.recent(s, 10, site)
        sites = known_sites(s) if signed.person.every_site else []
        s.expunge_all()
    kept = {k: v for k, v in request.query_params.items() if k != "page" and v}
    base = "/queue" + (f"?{urlencode(kept)}" if kept else "")
    return render(
        request,
        "queue.html",
        signed,
        page=page,
        counts=counts,
        choices=choices,
        params=request.query_params,
        base=base,
        rank_of=q.rank_of,
        ranks=q.RANKS,
        actions_of=actions_of,
        who=who,
        alerts_configured=_alerts_configured(state),
        deliveries=sent,
        sites=sites,
    )


def _alerts_configured(state: State) -> bool:
    """Someone is told at once of an illegal hit: an e-mail address or a webhook."""
    illegal = state.fs.settings.alerts.illegal
    return bool(illegal.email or illegal.webhook)


@dataclass(frozen=True)
class Moment:
    """One row of the timeline: when, what kind, what."""

    at: datetime
    kind: str  # page, blocked, search, review, incident
    what: str
    here: bool = False  # part of this incident


def _moments(
    state: State, incident: Incident, since: datetime, until: datetime
) -> tuple[list[Moment], int, bool]:
    """The subject's pages, blocks, searches and reviews around the incident, oldest first;
    the number of this incident's own hits found in the log; whether the log was cut."""
    rows: list[Moment] = []
    hits = 0
    cut = False
    for n, line in enumerate(timeline.activity(access_log(state), incident.subject, since, until)):
        if n >= TIMELINE_LIMIT:
            cut = True
            break
        own = (
            line.blocked
            and line.category == incident.category
            and incident.first_seen - timedelta(seconds=2) <= line.at
            and line.at <= incident.last_seen + timedelta(seconds=2)
        )
        hits += own
        if line.blocked:
            what = line.address + (f" ({line.category})" if line.category else "")
            rows.append(Moment(line.at, "blocked", what, own))
        elif line.is_page:
            rows.append(Moment(line.at, "page", line.address))
    return rows, hits, cut


def seen_incident(s: Session, signed: Signed, incident_id: int) -> Incident:
    """The incident, if their account may see its site; else 404, as for no incident."""
    incident = s.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(404, f"there is no incident #{incident_id}")
    visible(signed, incident.site, f"incident #{incident_id}")
    return incident


async def incident_page(
    request: Request, *, error: str | None = None, typed: FormData | None = None
) -> Response:
    signed = await person(request, "incidents")
    state = state_of(request)
    incident_id = int(request.path_params["id"])
    mine = None if signed.person.every_site else signed.person.scope
    with state.session(read_only=True) as s:
        incident = seen_incident(s, signed, incident_id)
        reviews = log.reviews_of(s, incident_id)
        earlier = q.earlier(s, incident, site=mine)
        since, until = incident.first_seen - AROUND, incident.last_seen + AROUND
        searches = q.searches_of(s, incident.subject, since, until, site=incident.site)
        # The timeline is read from this gateway's access log: another site's is on its disk.
        log_here = incident.site == current_site()
        moments, hits, cut = _moments(state, incident, since, until) if log_here else ([], 0, False)
        shown = log.view(incident, reviews)
        where = log.where_text(incident)
        s.expunge_all()
    for search in searches:
        own = (
            incident.severity == "concerning"
            and search.concerning == incident.category
            and incident.first_seen - timedelta(seconds=2) <= search.at
            and search.at <= incident.last_seen + timedelta(seconds=2)
        )
        label = f"{search.engine}: “{search.query}”"
        if search.concerning:
            label += f" (concerning: {search.concerning.replace('_', ' ')})"
        moments.append(Moment(search.at, "search", label, own))
    for r in reviews:
        moments.append(
            Moment(
                r.reviewed_at, "review", f"reviewed by {r.first_reviewer} and {r.second_reviewer}"
            )
        )
    moments.sort(key=lambda m: m.at)
    occurrences = [m for m in moments if m.here]
    return render(
        request,
        "incident.html",
        signed,
        i=shown,
        incident=incident,
        where=where,
        who=who(incident.subject),
        occurrences=occurrences,
        hits_in_log=hits,
        moments=moments,
        cut=cut,
        since=since,
        until=until,
        earlier=earlier,
        rank=q.RANKS[q.rank_of(incident)],
        pending=next((r for r in reviews if r.second_signed_at is None), None),
        signed_review=any(r.second_signed_at is not None for r in reviews),
        reviewers=reviewers(state, signed.person.name, incident.site),
        log_here=log_here,
        referrals=log.REFERRALS,
        error=error,
        typed=typed or FormData(),
        done=request.query_params.get("done"),
        status_code=400 if error else 200,
    )


# --- form C2 in the console: the first reviewer fills it, the second signs from their login ---

C2_FIELDS = ("first_position", "second_position", "computer", "reason", "concern", "conclusion")


def reviewers(state: State, me: str, site: str) -> list[str]:
    """Who may be asked to sign as the second reviewer: the safeguarding roles who may see
    ``site``'s incidents (that school's, or the trust's), not me."""
    with state.session(read_only=True) as s:
        return sorted(
            u.name
            for u in s.scalars(
                select(ConsoleUser).where(
                    ConsoleUser.role.in_(MAY["incidents"]),
                    ConsoleUser.disabled.is_(False),
                    ConsoleUser.site.in_((site, TRUST)),
                )
            )
            if u.name.casefold() != me.casefold()
        )


def _invite(state: State, incident_id: int, first: str, second: str) -> None:
    """E-mail the invited second reviewer, when their console account has an address."""
    with state.session(read_only=True) as s:
        user = find_user(s, second)
    if user is None or not user.email or state.alerter is None:
        return
    text = (
        f"{first} has reviewed safeguarding incident #{incident_id} and asks you to sign the "
        "review as the second reviewer.\n\nSign in to the web filter's console to read and "
        "sign it.\n"
    )
    alert = Alert("c2", f"Please sign the review of incident #{incident_id}", text, {})
    state.alerter.send(alert, [Email(state.fs.settings.alerts.smtp, (user.email,))])


async def review_submit(request: Request) -> Response:
    signed = await person(request, "incidents")
    form = await checked_form(request, signed)
    state = state_of(request)
    incident_id = int(request.path_params["id"])
    second = text(form, "second_reviewer", 200)
    c2 = log.ReviewForm(
        first_reviewer=signed.person.name,
        first_position=text(form, "first_position", 200),
        second_reviewer=second,
        second_position=text(form, "second_position", 200),
        computer=text(form, "computer"),
        reason=text(form, "reason"),
        concern=text(form, "concern") or None,
        conclusion=text(form, "conclusion"),
        action_taken=text(form, "action_taken"),
        referred_to=tuple(str(v) for v in form.getlist("referred_to")),
    )
    with state.session(read_only=True) as s:
        site = seen_incident(s, signed, incident_id).site
    try:
        if second not in reviewers(state, signed.person.name, site):
            raise log.ReviewError("ask someone else with a safeguarding account to sign")
        with state.session() as s:
            log.review(s, incident_id, c2, state.now(), second_signs_later=True)
    except log.ReviewError as exc:
        # Typed text goes back into the form, except whatever names an address.
        kept = FormData([(k, v) for k, v in form.multi_items() if not mentions_address(str(v))])
        return await incident_page(request, error=str(exc), typed=kept)
    _invite(state, incident_id, signed.person.name, second)
    return see_other(f"/incidents/{incident_id}?done=review")


async def sign_submit(request: Request) -> Response:
    signed = await person(request, "incidents")
    await checked_form(request, signed)
    state = state_of(request)
    incident_id = int(request.path_params["id"])
    try:
        with state.session() as s:
            seen_incident(s, signed, incident_id)
            log.sign(s, incident_id, signed.person.name, state.now())
    except log.ReviewError as exc:
        return await incident_page(request, error=str(exc))
    return see_other(f"/incidents/{incident_id}?done=signed")


async def close_submit(request: Request) -> Response:
    signed = await person(request, "incidents")
    form = await checked_form(request, signed)
    state = state_of(request)
    incident_id = int(request.path_params["id"])
    outcome = text(form, "outcome")
    try:
        with state.session() as s:
            if seen_incident(s, signed, incident_id).severity == "illegal" and mentions_address(
                outcome
            ):
                raise log.ReviewError(f"outcome: {REFUSAL}")
            log.close(s, incident_id, signed.person.name, outcome, state.now())
    except log.ReviewError as exc:
        return await incident_page(request, error=str(exc))
    return see_other(f"/incidents/{incident_id}?done=closed")


# --- the pupil's page: one person's (or one shared address's) history over a period ---

LONGEST = timedelta(days=31)
HISTORY_LIMIT = 200_000  # log lines read into one answer, at most


@dataclass
class History:
    subject: str
    since: datetime
    until: datetime
    sites: dict[str, int]
    categories: dict[str, int]
    blocks: list[timeline.LogLine]
    pages: list[timeline.LogLine]
    searches: list[SearchRecord]
    cut: bool


def _history(state: State, request: Request, signed: Signed) -> History | None:
    p = request.query_params
    raw = p.get("who", "").strip()[:200]
    if not raw:
        return None
    # An address (digits, dots, colons) is a shared address unless someone signed in from it.
    subject = raw if raw.startswith("ip:") or not _is_address(raw) else f"ip:{raw}"
    today = state.now().astimezone(state.fs.policy.timezone).date()
    since = _day(state, p.get("from") or (today - timedelta(days=6)).isoformat())
    until = _day(state, p.get("to") or today.isoformat(), end=True)
    if until <= since:
        raise HTTPException(400, "the end is before the start")
    if until - since > LONGEST:
        raise HTTPException(400, "choose at most 31 days")
    sites: dict[str, int] = {}
    categories: dict[str, int] = {}
    blocks: list[timeline.LogLine] = []
    pages: list[timeline.LogLine] = []
    cut = False
    # Read through the index of page loads by person (proxy/incidents/logindex.py): a month
    # of a busy school's log is read in a second or two rather than scanned for minutes.
    key = load_or_create_key(state.fs.settings.data_dir)
    found_lines = logindex.activity(access_log(state), subject, since, until, key)
    for n, line in enumerate(found_lines):
        if n >= HISTORY_LIMIT:
            cut = True
            break
        if line.category:
            categories[line.category] = categories.get(line.category, 0) + 1
        if line.blocked:
            blocks.append(line)
        elif line.is_page:
            pages.append(line)
            sites[line.host] = sites.get(line.host, 0) + 1
    with state.session(read_only=True) as s:
        found = q.searches_of(s, subject, since, until, limit=5000, site=site_of(request, signed))
        s.expunge_all()
    return History(subject, since, until, sites, categories, blocks, pages, found, cut)


def _cell(value: str) -> str:
    """A pupil typed this (a search): never let a spreadsheet run it as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _is_address(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF.:" for c in value) and any(c in ".:" for c in value)


async def pupil_page(request: Request) -> Response:
    signed = await person(request, "incidents")
    here(signed)  # the history is read from this site's access log
    state = state_of(request)
    history = _history(state, request, signed)
    today = state.now().astimezone(state.fs.policy.timezone).date()
    return render(
        request,
        "pupil.html",
        signed,
        h=history,
        who=who(history.subject) if history else None,
        params=request.query_params,
        default_from=(today - timedelta(days=6)).isoformat(),
        default_to=today.isoformat(),
        top=lambda d: sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:50],
        export=f"/pupil.csv?{urlencode(dict(request.query_params))}",
    )


async def pupil_csv(request: Request) -> Response:
    signed = await person(request, "incidents")
    here(signed)
    state = state_of(request)
    history = _history(state, request, signed)
    if history is None:
        raise HTTPException(400, "say whose history: ?who=NAME")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time (UTC)", "who", "what", "where or what", "category", "shared address"])
    shared = "yes" if history.subject.startswith("ip:") else "no"
    name = history.subject.removeprefix("ip:")
    rows: list[tuple[datetime, str, str, str]] = [
        (x.at, "blocked" if x.blocked else "opened a page", x.address, x.category or "")
        for x in history.blocks + history.pages
    ] + [(r.at, "searched", f"{r.engine}: {r.query}", r.concerning or "") for r in history.searches]
    for at, what, where, category in sorted(rows, key=lambda r: r[0]):
        writer.writerow(
            [at.isoformat(timespec="seconds"), name, what, _cell(where), category, shared]
        )
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="history-{safe}.csv"'},
    )


# --- the live badge: every open DSL page hears of an urgent incident within seconds ---

BADGE_POLL_S = 2.0
BADGE_LIFETIME_S = 300.0  # then the browser reconnects, and the session is checked again


def _urgent(state: State, site: str | None) -> dict[str, int]:
    query = select(func.count(), func.max(Incident.id)).where(
        Incident.status != "closed", q.rank() <= 1
    )
    with state.session(read_only=True) as s:
        count, newest = s.execute(at_sites(query, Incident.site, site)).one()
    return {"urgent": int(count or 0), "newest": int(newest or 0)}


async def live_badge(request: Request) -> Response:
    """Server-sent events: the number of open illegal and suicide/self-harm incidents."""
    signed = await person(request, "incidents")
    state = state_of(request)
    site = None if signed.person.every_site else signed.person.scope

    async def events() -> AsyncIterator[str]:
        last: dict[str, int] | None = None
        started = time.monotonic()
        quiet = 0.0
        while time.monotonic() - started < BADGE_LIFETIME_S:
            if await request.is_disconnected():
                return
            now = await run_in_threadpool(_urgent, state, site)
            if now != last:
                yield f"data: {json.dumps(now)}\n\n"
                last, quiet = now, 0.0
            elif quiet >= 15:
                yield ": still here\n\n"  # keeps proxies from closing an idle stream
                quiet = 0.0
            await asyncio.sleep(BADGE_POLL_S)
            quiet += BADGE_POLL_S

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


# --- exports: the printable C2 (PDF), the reporting log (C3) as CSV ---


async def c2_pdf(request: Request) -> Response:
    """Form C2 of one incident, printed by the termly report's HTML-to-PDF path (WeasyPrint)."""
    signed = await person(request, "incidents")
    state = state_of(request)
    incident_id = int(request.path_params["id"])
    with state.session(read_only=True) as s:
        incident = seen_incident(s, signed, incident_id)
        shown = log.view(incident, log.reviews_of(s, incident_id))
        where = log.where_text(incident)
        subject = who(incident.subject)
    page = state.templates.get_template("c2_print.html").render(
        i=shown, where=where, who=subject, school=state.fs.policy.school, made=state.now()
    )
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "c2.pdf"
        try:
            termly.write_pdf(page, out)
        except termly.PdfUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        body = out.read_bytes()
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="c2-incident-{incident_id}.pdf"'},
    )


async def c3_csv(request: Request) -> Response:
    """The reporting log (form C3) as CSV: the same rows as ``incidents export``."""
    signed = await person(request, "incidents")
    state = state_of(request)
    p = request.query_params
    since = _day(state, p["from"]) if p.get("from") else None
    until = _day(state, p["to"], end=True) if p.get("to") else None
    zone = state.fs.policy.timezone
    with state.session(read_only=True) as s:
        rows = [
            c3_row(i, log.view(i, log.reviews_of(s, i.id)), zone)
            for i in log.find(s, since=since, until=until, site=site_of(request, signed))
        ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(C3_COLUMNS)
    # A pupil's search is in "what": never let a spreadsheet run it as a formula.
    writer.writerows([safeguarding_csv.safe(c) for c in r] for r in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="reporting-log-c3.csv"'},
    )


async def safeguarding_export(request: Request) -> Response:
    """Incidents for CPOMS or MyConcern (``layout`` in the path): one incident with ``id``,
    or those first seen between ``from`` and ``to``; no illegal address, no formula."""
    await person(request, "incidents")
    state = state_of(request)
    layout = request.path_params["layout"]
    if layout not in safeguarding_csv.LAYOUTS:
        raise HTTPException(404)
    p = request.query_params
    zone = state.fs.policy.timezone
    with state.session(read_only=True) as s:
        if p.get("id", "").isdigit():
            one = s.get(Incident, int(p["id"]))
            if one is None:
                raise HTTPException(404)
            found = [one]
        else:
            since = _day(state, p["from"]) if p.get("from") else None
            until = _day(state, p["to"], end=True) if p.get("to") else None
            found = log.find(s, since=since, until=until)
        rows = [
            safeguarding_csv.row(i, log.reviews_of(s, i.id), zone, plain_category) for i in found
        ]
    name = f"{layout}-incident-{p['id']}" if p.get("id", "").isdigit() else f"{layout}-incidents"
    return Response(
        safeguarding_csv.write(rows, layout),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
