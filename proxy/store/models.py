"""The store's tables, as SQLAlchemy 2 models.

Times are stored as naive UTC and read back as aware UTC (``UTCDateTime``),
so SQLite and PostgreSQL give back the same values and the change log's
hashes do not depend on the database. ``details`` is canonical JSON text for
the same reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from proxy.store.site import DEFAULT_SITE, current_site


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as naive UTC; read back with ``tzinfo=UTC``."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: give it a timezone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


def site_column() -> Mapped[str]:
    """The site a row was recorded at (``proxy.store.site``): stamped on insert."""
    return mapped_column(String(63), default=current_site, server_default=DEFAULT_SITE, index=True)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Change(Base):
    """One row of the change-control log: append-only, each row's hash covers the previous."""

    __tablename__ = "changes"
    # The console lists one kind newest first (list updates, policy changes) from a large log;
    # and one school's rows newest first: without (site, seq) SQLite read every row of the
    # site through ix_changes_site and sorted them (1.2 s for page 1 of a million rows,
    # python -m bench.console; 0.1 ms with it).
    __table_args__ = (
        Index("ix_changes_kind_seq", "kind", "seq"),
        Index("ix_changes_site_seq", "site", "seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    actor: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = site_column()


class Override(Base):
    """A time-limited unblock or filter switch-off; it applies once a second person approves."""

    __tablename__ = "overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(40), unique=True)
    what_kind: Mapped[str] = mapped_column(String(10))
    what: Mapped[str] = mapped_column(Text)
    scope_kind: Mapped[str] = mapped_column(String(10))
    scope: Mapped[str | None] = mapped_column(String(200))
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expiry_recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    site: Mapped[str] = site_column()


class Suspension(Base):
    """A user's internet access removed ("removal of network / internet access rights")."""

    __tablename__ = "suspensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(200), index=True)
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(200))
    restored_by: Mapped[str | None] = mapped_column(String(200))
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    site: Mapped[str] = site_column()


class AppliedEvent(Base):
    """Events the writer has applied, by id: replaying the spool twice applies each once."""

    __tablename__ = "applied_events"

    event_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    change_seq: Mapped[int | None] = mapped_column(Integer)
