"""The console's tables: accounts, server-side sessions, and the sign-in log.

They share the store's ``Base`` (``proxy.store.models``) so one Alembic history
creates them. A session row holds only the SHA-256 of its cookie token, so a
copy of the database cannot be replayed as a signed-in browser; the sign-in
log is what login throttling and lockout count from, so every console process
(and the CLI) sees the same failures.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from proxy.store.models import Base, UTCDateTime, site_column


class ConsoleUser(Base):
    """A person who signs in to the console (or proves who they are to the CLI)."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # the last TOTP time step accepted: a code seen once is never accepted again
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    email: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where they may look: one school's site, or ``*`` for every site of the trust
    # (proxy.console.accounts.TRUST); every page keeps a school account to its own rows.
    site: Mapped[str] = mapped_column(String(63), server_default="main")


class ConsoleSession(Base):
    """A signed-in browser: the token's hash, its CSRF token, and when it was made and used."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsoleSignIn(Base):
    """One sign-in attempt, kept or refused, with the address it came from."""

    __tablename__ = "console_signins"
    __table_args__ = (
        Index("ix_console_signins_name_at", "name", "at"),
        Index("ix_console_signins_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(20))  # console, cli
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(200))


class PolicyProposal(Base):
    """A policy change waiting for a second person (``policy_changes: two_person``)."""

    __tablename__ = "console_policy_proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    # the policy in force when it was proposed: applying it over another would undo that one
    base_sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(20))  # applied, withdrawn
    # each site's policy is its own (its overlay): a proposal waits on its own site's console
    site: Mapped[str] = site_column()
