"""The incident log in the SQL store: raising with roll-up, the review record, closing, purging.

``apply_incident`` and ``apply_search`` are the store writer's handlers for
the events the proxy queues (``incident.raise``, ``search.seen``); the
rest is what the ``schoolgate incidents`` commands call. Every function
takes the caller's session: one transaction per command or writer batch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from proxy.incidents.events import (
    ROLLUP_WINDOW,
    IncidentEvent,
    SearchEvent,
    illegal_notice,
    rolls_into,
)
from proxy.incidents.freetext import REFUSAL, mentions_address
from proxy.incidents.models import AlertDelivery, Incident, IncidentReview, SearchRecord
from proxy.store.events import BATCH_HANDLERS, HANDLERS, Event
from proxy.store.models import Change
from proxy.store.site import current_site

INCIDENT_EVENT = "incident.raise"
SEARCH_EVENT = "search.seen"


class ReviewError(ValueError):
    """A review or close the record cannot take; ``str()`` is one line."""


def record_incident(
    session: Session, event: IncidentEvent, window: timedelta = ROLLUP_WINDOW
) -> tuple[Incident, bool]:
    """Add a hit to the log: (incident, True) for a new one, (incident, False) when rolled up."""
    if event.severity == "illegal" and event.url is not None:
        raise ValueError("refusing to store the URL of an illegal hit")
    candidate = session.scalars(
        select(Incident)
        .where(
            Incident.subject == event.subject,
            Incident.category == event.category,
            Incident.severity == event.severity,
            Incident.status != "closed",
            Incident.site == (event.site or current_site()),  # each school reviews its own
        )
        .order_by(Incident.last_seen.desc(), Incident.id.desc())
        .limit(1)
    ).first()
    if candidate is not None and rolls_into(candidate.last_seen, False, event.at, window):
        candidate.count += 1
        candidate.last_seen = max(candidate.last_seen, event.at)
        candidate.first_seen = min(candidate.first_seen, event.at)
        if event.search_query and event.search_query != candidate.search_query:
            candidate.search_query = event.search_query
        session.flush()
        return candidate, False
    incident = Incident(**_new_row(event))
    session.add(incident)
    session.flush()
    return incident, True


def _new_row(event: IncidentEvent) -> dict[str, Any]:
    """The columns of the incident a first hit opens."""
    actions = [{"key": key, "label": label} for key, label in event.actions]
    return {
        "first_seen": event.at,
        "last_seen": event.at,
        "count": 1,
        "subject": event.subject,
        "user": event.user,
        "group": event.group,
        "client_ip": event.client_ip,
        "device": event.device,
        "category": event.category,
        "incident_type": event.incident_type,
        "severity": event.severity,
        "url": None if event.severity == "illegal" else event.url,
        "url_hash": event.url_hash,
        "list_name": event.list_name,
        "reference": event.reference,
        "search_engine": event.search_engine,
        "search_query": event.search_query,
        "matched_term": event.matched_term,
        "actions": json.dumps(actions, ensure_ascii=False),
        "status": "open",
        "site": event.site or current_site(),
    }


# (subject, category, severity, site): each school reviews its own incidents.
RollupKey = tuple[str, str, str, str]


@dataclass
class _Rolling:
    """The incident a roll-up key's next hit may add to: one from the store, or new."""

    id: int | None  # None: opened by this batch, not inserted yet
    first_seen: datetime
    last_seen: datetime
    count: int
    search_query: str | None
    row: dict[str, Any] | None = None  # the new incident's columns
    changed: bool = False


def record_incidents(
    session: Session, events: Sequence[IncidentEvent], window: timedelta = ROLLUP_WINDOW
) -> tuple[int, int]:
    """Add many hits at once, exactly as ``record_incident`` one by one would: (opened, rolled).

    The writer's batch: one read of each roll-up key's current incident (the latest
    one still open, as ``record_incident`` picks it), the roll-up worked out in
    memory in the events' order, then one bulk UPDATE of the incidents that took
    hits and one bulk INSERT of those opened. Three statements per batch, whatever
    its size, where one by one cost three or four per hit. The read-then-write is
    safe because the writer holds the store's write lock for the whole batch
    (``chain.lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite).
    """
    for event in events:
        if event.severity == "illegal" and event.url is not None:
            raise ValueError("refusing to store the URL of an illegal hit")
    if not events:
        return 0, 0
    current = _current_incidents(session, {_key(e) for e in events})
    stored = list(current.values())  # a key's incident stays here when a new one takes over
    opened: list[_Rolling] = []
    rolled = 0
    for event in events:
        key = _key(event)
        state = current.get(key)
        if state is not None and rolls_into(state.last_seen, False, event.at, window):
            state.count += 1
            state.last_seen = max(state.last_seen, event.at)
            state.first_seen = min(state.first_seen, event.at)
            if event.search_query and event.search_query != state.search_query:
                state.search_query = event.search_query
            state.changed = True
            rolled += 1
            continue
        row = _new_row(event)
        state = _Rolling(None, event.at, event.at, 1, event.search_query, row)
        current[key] = state
        opened.append(state)
    updates = [
        {
            "id": s.id,
            "count": s.count,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            "search_query": s.search_query,
        }
        for s in stored
        if s.changed
    ]
    if updates:
        session.execute(update(Incident), updates)
    if opened:
        rows = []
        for s in opened:
            assert s.row is not None
            rows.append(
                {
                    **s.row,
                    "count": s.count,
                    "first_seen": s.first_seen,
                    "last_seen": s.last_seen,
                    "search_query": s.search_query,
                }
            )
        session.execute(insert(Incident), rows)
    return len(opened), rolled


def _key(event: IncidentEvent) -> RollupKey:
    return (event.subject, event.category, event.severity, event.site or current_site())


def _current_incidents(session: Session, keys: set[RollupKey]) -> dict[RollupKey, _Rolling]:
    """For each key, the incident ``record_incident`` would add to: latest ``last_seen`` not
    closed (ties to the newest row). One query, ranked by the database."""
    session.flush()
    key_columns = (Incident.subject, Incident.category, Incident.severity, Incident.site)
    ranked = (
        select(
            *key_columns,
            Incident.id,
            Incident.first_seen,
            Incident.last_seen,
            Incident.count,
            Incident.search_query,
            func.row_number()
            .over(
                partition_by=key_columns,
                order_by=(Incident.last_seen.desc(), Incident.id.desc()),
            )
            .label("rank"),
        )
        .where(Incident.status != "closed", tuple_(*key_columns).in_(sorted(keys)))
        .subquery()
    )
    found: dict[RollupKey, _Rolling] = {}
    rows = session.execute(select(ranked).where(ranked.c.rank == 1))
    for subject, category, severity, site, id_, first, last, count, query, _rank in rows:
        found[(subject, category, severity, site)] = _Rolling(id_, first, last, count, query)
    return found


def record_search(session: Session, event: SearchEvent) -> SearchRecord:
    row = SearchRecord(
        at=event.at,
        user=event.user,
        group=event.group,
        client_ip=event.client_ip,
        engine=event.engine,
        query=event.query,
        concerning=event.concerning,
    )
    session.add(row)
    session.flush()
    return row


# --- the store writer's handlers ----------------------------------------------------------


def incident_event(event: IncidentEvent) -> Event:
    return Event(INCIDENT_EVENT, event.as_dict(), at=event.at.isoformat(), id=event.event_id)


def search_store_event(event: SearchEvent) -> Event:
    return Event(SEARCH_EVENT, event.as_dict(), at=event.at.isoformat(), id=event.event_id)


def _apply_incident(session: Session, event: Event) -> Change | None:
    record_incident(session, IncidentEvent.from_dict(event.data))
    return None


def _apply_search(session: Session, event: Event) -> Change | None:
    record_search(session, SearchEvent.from_dict(event.data))
    return None


def _apply_incidents(session: Session, batch: Sequence[Event]) -> None:
    # Each hit at the site its event was raised at (a bulk INSERT skips the column default).
    record_incidents(
        session, [dataclasses.replace(IncidentEvent.from_dict(e.data), site=e.site) for e in batch]
    )


def _apply_searches(session: Session, batch: Sequence[Event]) -> None:
    """Searches are plain rows: one bulk INSERT for the batch."""
    rows = []
    for e in batch:
        event = SearchEvent.from_dict(e.data)
        rows.append(
            {
                "at": event.at,
                "user": event.user,
                "group": event.group,
                "client_ip": event.client_ip,
                "engine": event.engine,
                "query": event.query,
                "concerning": event.concerning,
                "site": e.site,
            }
        )
    if rows:
        session.execute(insert(SearchRecord), rows)


# Importing this module teaches the store's writer the incident events; the
# events carry everything (recommended actions included), so no state is needed.
HANDLERS[INCIDENT_EVENT] = _apply_incident
HANDLERS[SEARCH_EVENT] = _apply_search
# The writer applies a batch's incidents and searches together (a busy school raises
# tens a second): a few statements per batch instead of a few per event.
BATCH_HANDLERS[INCIDENT_EVENT] = _apply_incidents
BATCH_HANDLERS[SEARCH_EVENT] = _apply_searches


# --- reading, for the CLI, exports and the report -----------------------------------------


def find(
    session: Session,
    *,
    status: str | None = None,
    severity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    site: str | None = None,
) -> list[Incident]:
    query = select(Incident).order_by(Incident.first_seen, Incident.id)
    if site is not None:
        query = query.where(Incident.site == site)
    if status is not None:
        query = query.where(Incident.status == status)
    if severity is not None:
        query = query.where(Incident.severity == severity)
    if since is not None:
        query = query.where(Incident.last_seen >= since)
    if until is not None:
        query = query.where(Incident.first_seen < until)
    return list(session.scalars(query))


def searches(
    session: Session,
    *,
    user: str | None = None,
    group: str | None = None,
    concerning: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[SearchRecord]:
    query = select(SearchRecord).order_by(SearchRecord.at, SearchRecord.id)
    if user is not None:
        query = query.where(SearchRecord.user == user)
    if group is not None:
        query = query.where(SearchRecord.group == group)
    if concerning:
        query = query.where(SearchRecord.concerning.is_not(None))
    if since is not None:
        query = query.where(SearchRecord.at >= since)
    if until is not None:
        query = query.where(SearchRecord.at < until)
    return list(session.scalars(query))


def get(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise ReviewError(f"no incident #{incident_id}")
    return incident


def reviews_of(session: Session, incident_id: int) -> list[IncidentReview]:
    return list(
        session.scalars(
            select(IncidentReview)
            .where(IncidentReview.incident_id == incident_id)
            .order_by(IncidentReview.id)
        )
    )


def where_text(incident: Incident) -> str:
    """What was reached for, as anyone may be shown it: never an illegal URL."""
    if incident.severity == "illegal":
        notice = illegal_notice(incident.list_name, incident.category)
        return f"{notice} (list {incident.list_name or '?'}, {incident.url_hash or 'no hash'})"
    if incident.search_query is not None:
        return f"search on {incident.search_engine}: {incident.search_query!r}"
    return incident.url or "-"


def view(incident: Incident, reviews: Sequence[IncidentReview] = ()) -> dict[str, Any]:
    """An incident as shown and exported; an illegal one carries the notice, not a URL."""
    illegal = incident.severity == "illegal"
    return {
        "id": incident.id,
        "site": incident.site,
        "status": incident.status,
        "severity": incident.severity,
        "incident_type": incident.incident_type,
        "category": incident.category,
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "count": incident.count,
        "user": incident.user,
        "group": incident.group,
        "client_ip": incident.client_ip,
        "device": incident.device,
        "url": None if illegal else incident.url,
        "notice": illegal_notice(incident.list_name, incident.category) if illegal else None,
        "list": incident.list_name,
        "url_hash": incident.url_hash,
        "search_engine": incident.search_engine,
        "search_query": incident.search_query,
        "matched_term": incident.matched_term,
        "reference": incident.reference,
        "recommended_actions": [a["label"] for a in json.loads(incident.actions or "[]")],
        "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
        "closed_by": incident.closed_by,
        "outcome": incident.outcome,
        "reviews": [
            {
                "reviewed_at": r.reviewed_at.isoformat(),
                "first_reviewer": r.first_reviewer,
                "first_position": r.first_position,
                "second_reviewer": r.second_reviewer,
                "second_position": r.second_position,
                "computer": r.computer,
                "reason": r.reason,
                "concern": r.concern,
                "conclusion": r.conclusion,
                "action_taken": r.action_taken,
                "referred_to": referred_words(r.referred_to),
                "second_signed_at": (
                    r.second_signed_at.isoformat() if r.second_signed_at else None
                ),
            }
            for r in reviews
        ],
    }


# --- the review (form C2) and closing ------------------------------------------------------


# Where an incident can be referred outside the school (form C2's "action taken"), in the
# words the termly report and the C2 print use.
REFERRALS = {
    "police": "the police",
    "local_authority": "the local authority (LADO or children's social care)",
    "iwf_ceop": "the IWF or CEOP",
    "prevent": "Prevent (Channel)",
    "other_agency": "another agency",
}


def referred_words(stored: str | None) -> list[str]:
    """A review's ``referred_to`` in words (unknown keys as they are)."""
    return [REFERRALS.get(key, key) for key in (stored or "").split(",") if key]


@dataclass(frozen=True)
class ReviewForm:
    """Form C2: two reviewers with positions, the computer used, reason, conclusion, action."""

    first_reviewer: str
    first_position: str
    second_reviewer: str
    second_position: str
    computer: str
    reason: str
    conclusion: str
    action_taken: str
    concern: str | None = None
    referred_to: tuple[str, ...] = ()  # keys of REFERRALS: where it was actually referred

    def problems(self) -> list[str]:
        found = [
            f"{name.replace('_', ' ')} is empty"
            for name in (
                "first_reviewer",
                "first_position",
                "second_reviewer",
                "second_position",
                "computer",
                "reason",
                "conclusion",
                "action_taken",
            )
            if not str(getattr(self, name)).strip()
        ]
        if self.first_reviewer.strip().casefold() == self.second_reviewer.strip().casefold():
            found.append("the two reviewers must be two different people")
        found += [f"referred to: unknown {k!r}" for k in self.referred_to if k not in REFERRALS]
        return found


def refuse_addresses(form: ReviewForm) -> None:
    """An illegal incident's free text must not quote the address (it would show everywhere)."""
    for name in ("computer", "reason", "concern", "conclusion", "action_taken"):
        if mentions_address(getattr(form, name)):
            raise ReviewError(f"{name.replace('_', ' ')}: {REFUSAL}")


def review(
    session: Session,
    incident_id: int,
    form: ReviewForm,
    now: datetime,
    *,
    second_signs_later: bool = False,
) -> IncidentReview:
    """Record a two-person review; the incident becomes ``reviewed`` (a closed one cannot be).

    ``second_signs_later``: the first reviewer filled the form alone (the console); the
    incident stays open until the second reviewer signs (``sign``)."""
    problems = form.problems()
    if problems:
        raise ReviewError("; ".join(problems))
    incident = get(session, incident_id)
    if incident.status == "closed":
        raise ReviewError(f"incident #{incident_id} is closed")
    if incident.severity == "illegal":
        refuse_addresses(form)
    if unsigned(session, incident_id) is not None:
        raise ReviewError(f"incident #{incident_id} has a review waiting for its second signature")
    row = IncidentReview(
        incident_id=incident.id,
        reviewed_at=now,
        first_reviewer=form.first_reviewer.strip(),
        first_position=form.first_position.strip(),
        second_reviewer=form.second_reviewer.strip(),
        second_position=form.second_position.strip(),
        computer=form.computer.strip(),
        reason=form.reason.strip(),
        concern=form.concern.strip() if form.concern else None,
        conclusion=form.conclusion.strip(),
        action_taken=form.action_taken.strip(),
        referred_to=",".join(k for k in REFERRALS if k in form.referred_to) or None,
        second_signed_at=None if second_signs_later else now,
    )
    session.add(row)
    if not second_signs_later:
        incident.status = "reviewed"
    session.flush()
    return row


def unsigned(session: Session, incident_id: int) -> IncidentReview | None:
    """The incident's review waiting for its second reviewer's signature, if any."""
    return session.scalars(
        select(IncidentReview).where(
            IncidentReview.incident_id == incident_id, IncidentReview.second_signed_at.is_(None)
        )
    ).first()


def sign(session: Session, incident_id: int, by: str, now: datetime) -> IncidentReview:
    """The invited second reviewer signs the review; only they can, never the first."""
    incident = get(session, incident_id)
    row = unsigned(session, incident_id)
    if row is None:
        raise ReviewError(f"incident #{incident_id} has no review waiting for a signature")
    who = by.strip().casefold()
    if who == row.first_reviewer.casefold():
        raise ReviewError("you filled in this review: a second person must sign it")
    if who != row.second_reviewer.casefold():
        raise ReviewError(f"only {row.second_reviewer}, who was asked, can sign this review")
    row.second_signed_at = now
    if incident.status == "open":
        incident.status = "reviewed"
    session.flush()
    return row


def close(session: Session, incident_id: int, by: str, outcome: str, now: datetime) -> Incident:
    """Close an incident with its outcome; it must have had its two-person review."""
    if not by.strip() or not outcome.strip():
        raise ReviewError("closing needs --by and --outcome")
    incident = get(session, incident_id)
    if incident.status == "closed":
        raise ReviewError(f"incident #{incident_id} is already closed")
    if not reviews_of(session, incident_id):
        raise ReviewError(
            f"incident #{incident_id} has no review yet: record one with `incidents review` first"
        )
    if not any(r.second_signed_at is not None for r in reviews_of(session, incident_id)):
        raise ReviewError(f"incident #{incident_id}: the second reviewer has not signed yet")
    incident.status = "closed"
    incident.closed_at = now
    incident.closed_by = by.strip()
    incident.outcome = outcome.strip()
    session.flush()
    return incident


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Purged:
    incidents: int
    reviews: int
    searches: int
    alert_deliveries: int = 0


def purge(
    session: Session, now: datetime, incidents_days: int, access_days: int, *, site: str | None
) -> Purged:
    """Delete closed incidents (with their reviews), searches and the record of alert
    deliveries past their retention (deliveries by the incidents': they are about them, and
    name who was told).

    ``site``: that school's rows only, by its own ``retention_days`` (one school's settings
    never delete another's records on a trust's shared store); None: every site's, which
    only an explicit trust-wide purge asks for."""
    incident_cutoff = now - timedelta(days=incidents_days)
    old = select(Incident.id).where(
        Incident.status == "closed", Incident.last_seen < incident_cutoff
    )
    if site is not None:
        old = old.where(Incident.site == site)
    ids = list(session.scalars(old))
    reviews = 0
    if ids:
        doomed = select(IncidentReview).where(IncidentReview.incident_id.in_(ids))
        for row in session.scalars(doomed):
            session.delete(row)
            reviews += 1
        for incident in session.scalars(select(Incident).where(Incident.id.in_(ids))):
            session.delete(incident)
    removed = len(ids)
    searches = 0
    cutoff = now - timedelta(days=access_days)
    searched = select(SearchRecord.id).where(SearchRecord.at < cutoff)
    if site is not None:
        searched = searched.where(SearchRecord.site == site)
    old_ids = list(session.scalars(searched))
    for start in range(0, len(old_ids), 500):
        chunk = old_ids[start : start + 500]
        session.execute(delete(SearchRecord).where(SearchRecord.id.in_(chunk)))
        searches += len(chunk)
    told = delete(AlertDelivery).where(AlertDelivery.at < incident_cutoff)
    if site is not None:
        told = told.where(AlertDelivery.site == site)
    deliveries = cast(CursorResult[Any], session.execute(told)).rowcount
    session.flush()
    return Purged(removed, reviews, searches, deliveries)
