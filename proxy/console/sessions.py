"""Server-side console sessions: a random cookie token, its hash in the store, two timeouts.

A session ends after ``IDLE`` without a request, and ``ABSOLUTE`` after sign-in
whatever happens; signing out deletes the row. Each session has its own CSRF
token, which every form carries and every post must give back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from proxy.console.accounts import Person, find_user
from proxy.console.models import ConsoleSession

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=8)
# last_seen is written at most this often, not on every page
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Signed:
    """The person a request comes from, and the CSRF token their forms carry."""

    person: Person
    csrf: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start(session: Session, person: Person, now: datetime) -> str:
    """A new session for ``person``; returns the cookie token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            token_hash=_hash(token),
            user=person.name,
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            last_seen=now,
        )
    )
    # Sessions long over are removed as new ones begin.
    session.execute(delete(ConsoleSession).where(ConsoleSession.last_seen < now - ABSOLUTE))
    return token


def resume(
    session: Session,
    token: str | None,
    now: datetime,
    *,
    idle: timedelta = IDLE,
    absolute: timedelta = ABSOLUTE,
) -> Signed | None:
    """The signed-in person for a cookie token, or None (unknown, expired, or account gone)."""
    if not token:
        return None
    row = session.get(ConsoleSession, _hash(token))
    if row is None:
        return None
    if now - row.last_seen > idle or now - row.created_at > absolute:
        session.delete(row)
        return None
    user = find_user(session, row.user)
    if user is None or user.disabled:
        session.delete(row)
        return None
    if now - row.last_seen > TOUCH_EVERY:
        row.last_seen = now
    return Signed(Person(user.name, user.role, user.site), row.csrf)


def end(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _hash(token)))
