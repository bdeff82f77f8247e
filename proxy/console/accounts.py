"""Console accounts: roles, argon2 passwords, the TOTP second factor, throttling and lockout.

One function, ``authenticate``, decides whether a name, password and code
prove a person, for the console's sign-in page and for the CLI's
person-acting commands alike, and records the attempt either way. It refuses
(with a reason that does not tell an attacker which part was wrong):

- a name with ``LOCK_AFTER`` failures within ``WINDOW``: locked for ``LOCK_FOR``;
- an address with ``ADDRESS_LIMIT`` failures within ``WINDOW`` (guessing many names);
- a wrong password, or a missing, wrong or already-used TOTP code for any role
  but ``staff`` (the DfE cyber security standards ask MFA for whoever sees
  incidents or changes the filter).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from proxy.console.models import ConsoleSignIn, ConsoleUser
from proxy.settings import Settings
from proxy.store.engine import session as store_session
from proxy.store.site import SITE_PATTERN, current_site

log = logging.getLogger("schoolgate.console")

ROLES: dict[str, str] = {
    "technician": "Technician",
    "approver": "Head or senior leader (approves unblocks)",
    "dsl": "Designated safeguarding lead",
    "reviewer": "Deputy safeguarding lead (reviews incidents)",
    "governor": "E-safety governor (read-only)",
    "staff": "Member of staff (asks for unblocks)",
}
NO_SECOND_FACTOR = frozenset({"staff"})
# An account's scope: a site's name (a school's account sees that school's rows only), or
# this, which no site name can be (SITE_PATTERN): a trust account sees every school's.
TRUST = "*"
WINDOW = timedelta(minutes=15)
LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
ADDRESS_LIMIT = 20
ISSUER = "Schoolgate"
REFUSED = "the name, password or code is not right"

# The password of an account made with `users add --ldap` is the directory's: a simple bind
# as the user with the proxy's LDAP settings (auth.ldap) checks it; nothing is stored here.
LDAP_PASSWORD = "ldap"
Directory = Callable[[str, str], bool]

_hasher = PasswordHasher()
# Verifying against this costs the same as a real hash: an unknown name takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(Exception):
    """An account cannot be made as asked; ``str()`` is one line."""


class SignInRefused(Exception):
    """The attempt did not prove who it claims; ``str()`` is safe to show."""


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who has just proved who they are."""

    name: str
    role: str
    # the site whose rows they may see, or TRUST for every site (no default: say which)
    scope: str

    @property
    def role_label(self) -> str:
        label = ROLES.get(self.role, self.role)
        return f"{label}, whole trust" if self.every_site else f"{label}, {self.scope}"

    @property
    def every_site(self) -> bool:
        return self.scope == TRUST

    def sees(self, site: str) -> bool:
        """May they see a row recorded at ``site``?"""
        return self.every_site or site == self.scope


def check_scope(scope: str) -> str:
    """A site's name or ``TRUST``; anything else is refused in one line."""
    if scope != TRUST and not SITE_PATTERN.match(scope):
        raise AccountError(
            f"{scope!r}: a site is lower-case letters, digits, - or _ (or {TRUST} for the trust)"
        )
    return scope


def needs_second_factor(role: str) -> bool:
    return role not in NO_SECOND_FACTOR


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise AccountError("a password needs at least 10 characters")
    return _hasher.hash(password)


def add_user(
    session: Session,
    name: str,
    role: str,
    password: str,
    now: datetime,
    *,
    email: str | None = None,
    ldap: bool = False,
    scope: str | None = None,
) -> tuple[ConsoleUser, str | None]:
    """Create an account; returns it and its TOTP provisioning URI (None for staff).

    ``ldap``: the password is checked against the directory, not stored. ``scope``: the
    site whose rows they see, or ``TRUST`` for every site (default: this process's site).
    """
    scope = check_scope(current_site() if scope is None else scope)
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not name or any(c.isspace() for c in name) or len(name) > 200:
        raise AccountError(f"{name!r}: a name is one word, like the proxy login (j.meer)")
    if session.scalars(select(ConsoleUser.id).where(ConsoleUser.name == name)).first():
        raise AccountError(f"{name} already has an account")
    secret = pyotp.random_base32() if needs_second_factor(role) else None
    user = ConsoleUser(
        name=name,
        role=role,
        password_hash=LDAP_PASSWORD if ldap else hash_password(password),
        totp_secret=secret,
        email=email,
        created_at=now,
        disabled=False,
        site=scope,
    )
    session.add(user)
    session.flush()
    log.info("console account %s created with role %s at %s", name, role, scope)
    return user, provisioning_uri(user)


def set_scope(session: Session, name: str, scope: str) -> ConsoleUser:
    """Make ``name`` see ``scope``'s rows: a site's name, or ``TRUST`` for every site."""
    user = find_user(session, name)
    if user is None:
        raise AccountError(f"no console account {name!r}")
    user.site = check_scope(scope)
    log.info("console account %s now sees %s", name, scope)
    return user


def provisioning_uri(user: ConsoleUser) -> str | None:
    """The otpauth:// URI an authenticator app takes (as a QR code or typed in)."""
    if user.totp_secret is None:
        return None
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.name, issuer_name=ISSUER)


def find_user(session: Session, name: str) -> ConsoleUser | None:
    return session.scalars(select(ConsoleUser).where(ConsoleUser.name == name)).first()


def users(session: Session) -> list[ConsoleUser]:
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.name)))


def _failures(
    session: Session, column: InstrumentedAttribute[Any], value: str, since: datetime
) -> int:
    found = session.scalar(
        select(func.count(ConsoleSignIn.id)).where(
            column == value,
            ConsoleSignIn.ok.is_(False),
            ConsoleSignIn.at >= since,
        )
    )
    return int(found or 0)


def _record(
    session: Session, now: datetime, name: str, address: str | None, via: str, ok: bool, why: str
) -> None:
    session.add(ConsoleSignIn(at=now, name=name[:200], address=address, via=via, ok=ok, reason=why))
    session.flush()
    if ok:
        log.info("sign-in: %s via %s from %s", name, via, address or "-")
    else:
        log.warning("sign-in refused: %s via %s from %s: %s", name, via, address or "-", why)


def _code_ok(user: ConsoleUser, code: str, now: datetime) -> bool:
    """The code is right for now (±30 s) and newer than the last one accepted."""
    if user.totp_secret is None:
        return False
    totp = pyotp.TOTP(user.totp_secret)
    code = code.strip().replace(" ", "")
    stamp = now.timestamp()
    for drift in (0, -1, 1):
        step = int(stamp // totp.interval) + drift
        if secrets.compare_digest(totp.at(step * totp.interval), code):
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False  # a code already used: replayed, or read over a shoulder
            user.totp_last_step = step
            return True
    return False


def authenticate(
    session: Session,
    name: str,
    password: str,
    code: str,
    now: datetime,
    *,
    address: str | None = None,
    via: str = "console",
    directory: Directory | None = None,
) -> Person:
    """Prove a person, record the attempt, or raise ``SignInRefused``."""
    name = name.strip()
    if address and _failures(session, ConsoleSignIn.address, address, now - WINDOW) >= (
        ADDRESS_LIMIT
    ):
        _record(session, now, name, address, via, False, "too many failures from this address")
        raise SignInRefused("too many failed sign-ins from this address: wait 15 minutes")
    user = find_user(session, name)
    if user is not None and user.locked_until is not None and now < user.locked_until:
        _record(session, now, name, address, via, False, "account locked")
        raise SignInRefused(
            "this account is locked after repeated failures: wait 15 minutes or ask the technician"
        )
    if user is not None and user.password_hash == LDAP_PASSWORD:
        password_ok = directory is not None and directory(name, password)
    else:
        try:
            password_ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            password_ok = False
    why = ""
    if user is None:
        why = "no such account"
    elif user.disabled:
        why = "account disabled"
    elif not password_ok:
        why = "wrong password"
    elif needs_second_factor(user.role) and not _code_ok(user, code, now):
        why = "wrong or reused code"
    if why:
        _record(session, now, name, address, via, False, why)
        if user is not None and _failures(session, ConsoleSignIn.name, name, now - WINDOW) >= (
            LOCK_AFTER
        ):
            user.locked_until = now + LOCK_FOR
            log.warning("console account %s locked until %s", name, user.locked_until)
        raise SignInRefused(REFUSED)
    assert user is not None
    if user.password_hash != LDAP_PASSWORD and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.locked_until = None
    _record(session, now, name, address, via, True, "signed in")
    return Person(user.name, user.role, user.site)


def sign_in(
    engine: Engine,
    name: str,
    password: str,
    code: str,
    now: datetime,
    *,
    address: str | None = None,
    via: str = "console",
    directory: Directory | None = None,
) -> Person:
    """``authenticate`` in its own transaction, which keeps the record of a refusal too."""
    refused: SignInRefused | None = None
    with store_session(engine) as s:
        try:
            return authenticate(
                s, name, password, code, now, address=address, via=via, directory=directory
            )
        except SignInRefused as exc:
            refused = exc
    raise refused


# Who may do what, for the console's pages and the CLI's person-acting commands alike.
MAY: dict[str, frozenset[str]] = {
    "request": frozenset({"technician", "approver", "dsl", "reviewer", "staff"}),
    "approve": frozenset({"approver"}),
    "end": frozenset({"approver", "technician", "dsl"}),
    "suspend": frozenset({"approver", "dsl", "technician"}),
    "policy": frozenset({"technician", "approver"}),
    "review": frozenset({"dsl", "reviewer", "approver"}),
    # a pupil's incidents and history: the safeguarding roles only (the DSL's pages, next)
    "incidents": frozenset({"dsl", "reviewer"}),
    "status": frozenset({"technician"}),
    "changes": frozenset({"governor", "technician", "approver", "dsl"}),
}


def may(role: str, action: str) -> bool:
    return role in MAY[action]


def who_may(action: str) -> str:
    return " or ".join(sorted(MAY[action]))


def directory_for(settings: Settings) -> Directory | None:
    """The proxy's LDAP bind (``auth.ldap``), for accounts made with ``--ldap``."""
    if settings.auth.ldap is None:
        return None
    from proxy.logins import LdapChecker

    return LdapChecker(settings.auth.ldap).check
