"""Proxy logins: checking a user name and password, and binding a login to an address.

Three ways to know who is asking beyond the client address (``auth`` in
``schoolgate.yaml``):

- a **users file** of ``NAME:HASH`` lines with bcrypt hashes (Apache's
  ``htpasswd -B`` format, or ``schoolgate users add``); bcrypt is salted,
  deliberately slow and maintained (mitmproxy itself depends on it);
- an **LDAP / Active Directory** simple bind through ldap3, with the login put
  into a DN template (escaped), so the directory checks the password;
- a **header** set by a trusted upstream (an SSO gateway), believed only from
  the addresses listed as trusted.

A successful check is cached for a few minutes (keyed by a SHA-256 of the
name and password, never the password itself) so that bcrypt's deliberate cost
is paid once per user, not once per connection. Failures are not cached.

Transparent clients have no proxy setting, so they cannot answer a 407. They
sign in once at the login page, and ``LoginBindings`` then binds their address
to that user for ``bind_minutes``. Bindings live in one small JSON file in the
data folder so that every worker process sees them; a worker rereads it when
it changes (``proxy.watch.FileWatch``, looked at most once a second).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import bcrypt
import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from proxy.settings import Auth, LdapLogin
from proxy.watch import FileWatch
from proxy.yamlfile import ConfigError, Problem

log = logging.getLogger("schoolgate.logins")

BINDINGS_FILE = "logins.json"
CACHE_SECONDS = 300.0
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# Checked against an unknown user so a miss costs as long as a hit (no user enumeration).
_DUMMY_HASH = bcrypt.hashpw(b"schoolgate", bcrypt.gensalt(rounds=10))


@dataclass(frozen=True, slots=True)
class Login:
    """A user known from a proxy login, a login page, a bound address or a trusted header."""

    user: str
    via: Literal["proxy", "page", "binding", "header"]
    # The device, where the binding knows it: the Wi-Fi client's MAC address from RADIUS
    # accounting (Calling-Station-Id). An address alone changes hands with every DHCP
    # lease, so incidents name the device the policies ask the school to isolate.
    device: str | None = None


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash for the users file."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def valid_name(user: str) -> bool:
    return bool(user) and len(user) <= 256 and user.isprintable() and ":" not in user


class UsersFile:
    """``NAME:BCRYPT-HASH`` lines; ``#`` comments and blank lines are ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hashes: dict[str, bytes] = {}
        problems = []
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError.single(path, 0, f"cannot read users file: {exc.strerror}") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not valid_name(user):
                problems.append(Problem(str(path), number, "expected NAME:HASH"))
            elif not hashed.startswith(_BCRYPT_PREFIXES):
                problems.append(
                    Problem(str(path), number, f"{user}: not a bcrypt hash (use htpasswd -B)")
                )
            elif user in self.hashes:
                problems.append(Problem(str(path), number, f"{user}: listed twice"))
            else:
                self.hashes[user] = hashed.encode()
        if problems:
            raise ConfigError(problems)

    def check(self, user: str, password: str) -> bool:
        hashed = self.hashes.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH)
        return ok and hashed is not None


class LdapChecker:
    """A simple bind as the user: the directory says whether the password is right."""

    def __init__(
        self,
        conf: LdapLogin,
        *,
        server: ldap3.Server | None = None,
        strategy: Literal["SYNC", "MOCK_SYNC"] = "SYNC",
    ) -> None:
        self.conf = conf
        self.server = server or ldap3.Server(conf.server, connect_timeout=conf.timeout_seconds)
        self.strategy = strategy

    def check(self, user: str, password: str) -> bool:
        # An empty password would be an "unauthenticated bind", which directories accept.
        if not password or not valid_name(user):
            return False
        dn = self.conf.user_dn.replace("{user}", escape_rdn(user))
        conn = ldap3.Connection(
            self.server,
            user=dn,
            password=password,
            client_strategy=self.strategy,
            receive_timeout=self.conf.timeout_seconds,
            raise_exceptions=False,
        )
        try:
            return bool(conn.bind())
        except LDAPException as exc:
            log.warning("LDAP bind for a login failed: %s", type(exc).__name__)
            return False
        finally:
            conn.unbind()


class LoginChecker:
    """Checks a name and password against the users file, then LDAP; caches successes."""

    def __init__(self, checks: list[Callable[[str, str], bool]]) -> None:
        self.checks = checks
        self._ok: dict[bytes, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, auth: Auth) -> LoginChecker:
        checks: list[Callable[[str, str], bool]] = []
        if auth.users_file is not None:
            checks.append(UsersFile(auth.users_file).check)
        if auth.ldap is not None:
            checks.append(LdapChecker(auth.ldap).check)
        return cls(checks)

    @property
    def enabled(self) -> bool:
        return bool(self.checks)

    @staticmethod
    def _key(user: str, password: str) -> bytes:
        return hashlib.sha256(f"{user}\0{password}".encode()).digest()

    def cached(self, user: str, password: str, now: float | None = None) -> bool:
        """True when this exact login checked out within the last few minutes."""
        expires = self._ok.get(self._key(user, password))
        return expires is not None and expires > (time.monotonic() if now is None else now)

    def check(self, user: str, password: str) -> bool:
        """The slow check (bcrypt, a network bind): call it off the event loop."""
        if self.cached(user, password):
            return True
        if not valid_name(user) or not password:
            return False
        for check in self.checks:
            if check(user, password):
                with self._lock:
                    if len(self._ok) > 10_000:
                        self._ok.clear()
                    self._ok[self._key(user, password)] = time.monotonic() + CACHE_SECONDS
                return True
        return False


class _Binding(NamedTuple):
    user: str
    until: float
    device: str | None


class LoginBindings:
    """Client address -> (user, until, device), shared by every worker through one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        # Stamped before the first read, so an edit made while reading is seen next time.
        self._watch = FileWatch([path])
        self._bindings: dict[str, _Binding] = self._read()
        self._checked = 0.0

    def _read(self) -> dict[str, _Binding]:
        try:
            data: Any = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        out = {}
        if isinstance(data, dict):
            for ip, row in data.items():
                if isinstance(row, dict) and isinstance(row.get("user"), str):
                    device = row.get("device")
                    out[str(ip)] = _Binding(
                        row["user"],
                        float(row.get("until", 0)),
                        device if isinstance(device, str) else None,
                    )
        return out

    def _write(self, bindings: dict[str, _Binding]) -> None:
        """Replace the file whole (the caller holds the lock)."""
        rows: dict[str, dict[str, object]] = {}
        for ip, (user, until, device) in bindings.items():
            rows[ip] = {"user": user, "until": until}
            if device is not None:
                rows[ip]["device"] = device
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(rows), "utf-8")
        os.replace(tmp, self.path)

    def _refresh(self, now: float, *, fresh: bool = False) -> None:
        if not fresh and now - self._checked < 1.0:
            return
        self._checked = now
        if self._watch.changed():
            self._bindings = self._read()  # a missing file reads as no bindings

    def login_at(self, ip: str, now: float | None = None, *, fresh: bool = False) -> Login | None:
        """The login bound to this address now (with its device, when known), if any.

        Requests read the file at most once a second; ``fresh`` reads it now if it changed.
        Signing out must be fresh: another worker may have bound the address within the
        last second, and a stale view would answer "not signed in" and unbind nothing,
        leaving the next person at a shared device signed in as the last.
        """
        now = time.time() if now is None else now
        self._refresh(now, fresh=fresh)
        found = self._bindings.get(ip)
        if found is None or found.until <= now:
            return None
        return Login(found.user, "binding", found.device)

    def user_at(self, ip: str, now: float | None = None, *, fresh: bool = False) -> str | None:
        """The user bound to this address now, if any (``fresh``: as ``login_at``)."""
        login = self.login_at(ip, now, fresh=fresh)
        return login.user if login is not None else None

    def bind(
        self, ip: str, user: str, minutes: int, now: float | None = None, device: str | None = None
    ) -> None:
        """Bind ``ip`` to ``user`` (and ``device``), one writer at a time."""
        now = time.time() if now is None else now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = {k: v for k, v in self._read().items() if v.until > now}
            current[ip] = _Binding(user, now + minutes * 60, device)
            self._write(current)
        self._bindings = current
        self._checked = 0.0

    def unbind(self, ip: str) -> None:
        """Forget the binding of ``ip`` (signing out)."""
        if not self.path.exists():
            return
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._read()
            current.pop(ip, None)
            self._write(current)
        self._bindings = current
        self._checked = 0.0


@dataclass(slots=True)
class _Failures:
    count: int = 0  # tries in a row not yet followed by a right password
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Password tries, counted per user and per client address: back-off, then a lockout.

    Each try is counted when it starts (so a burst of parallel guesses is
    throttled like a sequence) and forgotten when the password is right.
    After ``free`` tries in a row without a right password, a key (a user
    name, an address) must wait before the next try, twice as long each time
    (1 s, 2 s, 4 s …); when a try fails with ``lockout_after`` counted, the key
    is locked for ``lockout_seconds`` and every try, even with the right
    password, is refused without being checked. Counts live in memory per
    process, and a run of tries idle for a lockout period is forgotten.
    """

    def __init__(
        self, *, free: int = 5, lockout_after: int = 10, lockout_seconds: float = 900.0
    ) -> None:
        self.free = free
        self.lockout_after = lockout_after
        self.lockout_seconds = lockout_seconds
        self.lockouts = 0
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def configure(self, *, free: int, lockout_after: int, lockout_seconds: float) -> None:
        self.free, self.lockout_seconds = free, lockout_seconds
        self.lockout_after = max(lockout_after, free + 1)

    @staticmethod
    def keys(user: str | None, ip: str) -> tuple[str, ...]:
        return (f"address {ip}",) if not user else (f"user {user.lower()}", f"address {ip}")

    def _current(self, key: str, now: float) -> _Failures | None:
        found = self._keys.get(key)
        if (
            found is not None
            and found.locked_until <= now
            and (now - found.last > self.lockout_seconds)
        ):
            del self._keys[key]  # an old run of tries is forgotten
            return None
        return found

    def wait(self, user: str | None, ip: str, now: float) -> float:
        """Seconds before this user may try from this address again (0: try now)."""
        longest = 0.0
        with self._lock:
            for key in self.keys(user, ip):
                found = self._current(key, now)
                if found is None:
                    continue
                if found.locked_until > now:
                    longest = max(longest, found.locked_until - now)
                elif found.count >= self.free:
                    delay = min(2.0 ** (found.count - self.free), self.lockout_seconds)
                    longest = max(longest, found.last + delay - now)
        return max(0.0, longest)

    def attempt(self, user: str | None, ip: str, now: float) -> None:
        """Count a try that is about to be checked."""
        with self._lock:
            if len(self._keys) > 100_000:
                for key in list(self._keys):
                    self._current(key, now)
            for key in self.keys(user, ip):
                found = self._keys.setdefault(key, _Failures())
                found.count += 1
                found.last = now

    def failed(self, user: str | None, ip: str, now: float) -> list[str]:
        """The try was wrong; the keys it has just locked out (to log)."""
        locked = []
        with self._lock:
            for key in self.keys(user, ip):
                found = self._keys.setdefault(key, _Failures(1, now))
                if found.count >= self.lockout_after and found.locked_until <= now:
                    found.locked_until = now + self.lockout_seconds
                    found.count = 0
                    self.lockouts += 1
                    locked.append(key)
        return locked

    def succeeded(self, user: str, ip: str) -> None:
        """The password was right: the user's and the address's runs of tries end."""
        with self._lock:
            for key in self.keys(user, ip):
                self._keys.pop(key, None)
