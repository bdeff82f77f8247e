"""The incident tables: incidents, their two-person reviews (form C2), and searches.

They share the store's ``Base`` (``proxy.store.models``) so one Alembic
history creates them. An illegal incident has no URL column value at all:
``url`` is NULL and a CHECK constraint keeps it so, whatever writes the row;
``url_hash`` and ``list_name`` stand in for it. A review's two reviewers
must differ, also enforced by the database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from proxy.store.models import Base, UTCDateTime, site_column


class Incident(Base):
    """One incident: a hit, or several rolled up (``count``, ``first_seen``…``last_seen``)."""

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint("severity <> 'illegal' OR url IS NULL", name="illegal_has_no_url"),
        CheckConstraint("status IN ('open', 'reviewed', 'closed')", name="status_known"),
        Index("ix_incidents_rollup", "subject", "category", "severity", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer, default=1)
    subject: Mapped[str] = mapped_column(String(200))
    user: Mapped[str | None] = mapped_column(String(200))
    group: Mapped[str] = mapped_column(String(100))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    incident_type: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text)
    url_hash: Mapped[str | None] = mapped_column(String(100))
    list_name: Mapped[str | None] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(40))
    search_engine: Mapped[str | None] = mapped_column(String(40))
    search_query: Mapped[str | None] = mapped_column(Text)
    matched_term: Mapped[str | None] = mapped_column(Text)
    actions: Mapped[str] = mapped_column(Text, default="[]")
    status: Mapped[str] = mapped_column(String(20), default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(Text)
    digested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    site: Mapped[str] = site_column()


class IncidentReview(Base):
    """Form C2, "Record of reviewing devices / internet sites": two reviewers, never one."""

    __tablename__ = "incident_reviews"
    __table_args__ = (
        CheckConstraint(
            "lower(first_reviewer) <> lower(second_reviewer)", name="two_different_reviewers"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_reviewer: Mapped[str] = mapped_column(String(200))
    first_position: Mapped[str] = mapped_column(String(200))
    second_reviewer: Mapped[str] = mapped_column(String(200))
    second_position: Mapped[str] = mapped_column(String(200))
    computer: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    concern: Mapped[str | None] = mapped_column(Text)
    conclusion: Mapped[str] = mapped_column(Text)
    action_taken: Mapped[str] = mapped_column(Text)
    # The first reviewer signs by filling the form (``reviewed_at``); the second signs from
    # their own login later: NULL until then, and the incident cannot be closed.
    second_signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    site: Mapped[str] = site_column()
    # Where the incident was referred outside the school (keys of store.REFERRALS, comma
    # separated); NULL: nowhere. The termly report counts as referred only these.
    referred_to: Mapped[str | None] = mapped_column(Text)


class SearchRecord(Base):
    """A search query seen at a search engine: the DfE's "the search term being blocked"."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user: Mapped[str | None] = mapped_column(String(200))
    group: Mapped[str] = mapped_column(String(100))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(40))
    query: Mapped[str] = mapped_column(Text)
    concerning: Mapped[str | None] = mapped_column(String(100))
    site: Mapped[str] = site_column()


class AlertDelivery(Base):
    """Each try at delivering an alert by one channel: sent, or failed and why (never a URL:
    alerts carry none)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(200))
    ok: Mapped[bool] = mapped_column(Boolean)
    attempt: Mapped[int] = mapped_column(Integer)
    final: Mapped[bool] = mapped_column(Boolean)  # sent, or given up: no more tries
    detail: Mapped[str | None] = mapped_column(Text)
    # the site the alert was raised at: each school's DSL sees its own school's alerts
    site: Mapped[str] = site_column()
