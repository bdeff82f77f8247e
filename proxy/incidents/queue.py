"""The safeguarding queue: open incidents, most serious first, and what waits on whom.

Read-only queries over the incident tables (the store's writer owns the
writes). The order is the DSL's, not the clock's: illegal hits first, then
searches for suicide or self-harm, then other concerning searches, then
unacceptable hits; newest first within each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from proxy.incidents.models import Incident, IncidentReview, SearchRecord

URGENT_SEARCHES = ("suicide", "self_harm")
RANKS = {
    0: "illegal (IWF or police list)",
    1: "search about suicide or self-harm",
    2: "other concerning search",
    3: "unacceptable site",
}


def rank() -> ColumnElement[int]:
    return case(
        (Incident.severity == "illegal", 0),
        (and_(Incident.severity == "concerning", Incident.category.in_(URGENT_SEARCHES)), 1),
        (Incident.severity == "concerning", 2),
        else_=3,
    )


def rank_of(incident: Incident) -> int:
    if incident.severity == "illegal":
        return 0
    if incident.severity == "concerning":
        return 1 if incident.category in URGENT_SEARCHES else 2
    return 3


@dataclass(frozen=True)
class Filters:
    """What the DSL narrowed the queue to; empty strings mean "any"."""

    pupil: str = ""
    group: str = ""
    incident_type: str = ""
    category: str = ""
    since: datetime | None = None
    until: datetime | None = None
    status: str = "open"  # open, reviewed (awaiting closure), closed, or all

    def apply(self, query: Select[tuple[Incident]]) -> Select[tuple[Incident]]:
        if self.status in ("open", "reviewed", "closed"):
            query = query.where(Incident.status == self.status)
        elif self.status == "waiting":
            query = query.where(Incident.status != "closed")
        if self.pupil:
            like = f"%{self.pupil.lower()}%"
            query = query.where(
                or_(func.lower(Incident.subject).like(like), Incident.client_ip == self.pupil)
            )
        if self.group:
            query = query.where(Incident.group == self.group)
        if self.incident_type:
            query = query.where(Incident.incident_type == self.incident_type)
        if self.category:
            query = query.where(Incident.category == self.category)
        if self.since is not None:
            query = query.where(Incident.last_seen >= self.since)
        if self.until is not None:
            query = query.where(Incident.first_seen < self.until)
        return query


def queue(filters: Filters) -> Select[tuple[Incident]]:
    """The queue's query, most serious first, newest first within a severity."""
    return filters.apply(select(Incident)).order_by(
        rank(), Incident.last_seen.desc(), Incident.id.desc()
    )


@dataclass(frozen=True)
class Waiting:
    first_review: int
    second_review: int
    closure: int
    illegal_open: int


def waiting(session: Session, site: str | None = None) -> Waiting:
    """How many incidents wait for a first review, a second signature, or closing
    (``site``: that school's only; None: the whole trust's)."""
    query = select(Incident.status, func.count()).group_by(Incident.status)
    unsigned_q = (
        select(func.count())
        .select_from(IncidentReview)
        .where(IncidentReview.second_signed_at.is_(None))
    )
    illegal_q = (
        select(func.count())
        .select_from(Incident)
        .where(Incident.severity == "illegal", Incident.status != "closed")
    )
    if site is not None:
        query = query.where(Incident.site == site)
        unsigned_q = unsigned_q.where(IncidentReview.site == site)
        illegal_q = illegal_q.where(Incident.site == site)
    rows: dict[str, int] = dict(session.execute(query).tuples().all())
    unsigned = session.scalar(unsigned_q)
    illegal = session.scalar(illegal_q)
    return Waiting(
        first_review=max(0, rows.get("open", 0) - (unsigned or 0)),
        second_review=unsigned or 0,
        closure=rows.get("reviewed", 0),
        illegal_open=illegal or 0,
    )


def choices(session: Session, site: str | None = None) -> dict[str, list[str]]:
    """The groups, types and categories incidents have, for the filter's lists."""
    return {
        name: sorted(
            v
            for v in session.scalars(
                select(column).distinct().where(Incident.site == site)
                if site is not None
                else select(column).distinct()
            )
            if v
        )
        for name, column in (
            ("group", Incident.group),
            ("incident_type", Incident.incident_type),
            ("category", Incident.category),
        )
    }


def to_sign(session: Session, name: str) -> list[IncidentReview]:
    """Reviews waiting for ``name``'s signature as the second reviewer."""
    return list(
        session.scalars(
            select(IncidentReview)
            .where(
                IncidentReview.second_signed_at.is_(None),
                func.lower(IncidentReview.second_reviewer) == name.casefold(),
            )
            .order_by(IncidentReview.reviewed_at)
        )
    )


def earlier(
    session: Session, incident: Incident, limit: int = 50, site: str | None = None
) -> list[Incident]:
    """The same person's (or address's) other incidents before this one, newest first
    (``site``: at that school only)."""
    query = (
        select(Incident)
        .where(Incident.subject == incident.subject, Incident.id != incident.id)
        .where(Incident.first_seen <= incident.last_seen)
    )
    if site is not None:
        query = query.where(Incident.site == site)
    return list(session.scalars(query.order_by(Incident.first_seen.desc()).limit(limit)))


def searches_of(
    session: Session,
    subject: str,
    since: datetime,
    until: datetime,
    limit: int = 2000,
    site: str | None = None,
) -> list[SearchRecord]:
    """The subject's searches in a period (``ip:ADDRESS``: that address, nobody signed in;
    ``site``: at that school only)."""
    query = select(SearchRecord).where(SearchRecord.at >= since, SearchRecord.at < until)
    if site is not None:
        query = query.where(SearchRecord.site == site)
    if subject.startswith("ip:"):
        query = query.where(SearchRecord.user.is_(None), SearchRecord.client_ip == subject[3:])
    else:
        query = query.where(SearchRecord.user == subject)
    return list(session.scalars(query.order_by(SearchRecord.at).limit(limit)))
