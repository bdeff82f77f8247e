"""Filter groups from the school's directory: LDAP / Active Directory group membership.

A user the proxy knows by name (a proxy login, the login page, RADIUS from
the Wi-Fi) but whom ``policy.yaml`` does not list gets the filter group of
the first ``directory.groups`` entry they are a member of. Membership is read
both ways directories keep it: the user entry's ``memberOf`` (Active
Directory, OpenLDAP's memberof overlay) and a search for groups naming the
user (``member`` / ``uniqueMember`` with the user's DN, ``memberUid`` with
the name, for groupOfNames and posixGroup). Answers, and failures, are
cached for ``cache_minutes`` (a failure for one minute), so the directory is
asked once per user, not once per request; the caller does the asking off
the request path (``addons/identify.py`` runs it in a thread).
"""

from __future__ import annotations

import logging
import os
import time
from threading import Lock

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from proxy.settings import Directory

log = logging.getLogger("schoolgate.directory")
_FAILURE_SECONDS = 60.0


class DirectoryGroups:
    """User name -> filter group from directory membership, cached."""

    def __init__(self, settings: Directory, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        env = os.environ if environ is None else environ
        self._password = env.get(settings.bind_password_env) if settings.bind_password_env else None
        self._order = {g.dn.lower(): i for i, g in enumerate(settings.groups)}
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = Lock()
        self.errors = 0

    def cached(self, user: str, now: float | None = None) -> tuple[bool, str | None]:
        """(known, group): ``known`` is False when the directory must be asked first."""
        now = time.monotonic() if now is None else now
        found = self._cache.get(user.lower())
        if found is None or found[1] <= now:
            return False, None
        return True, found[0]

    def lookup(self, user: str) -> str | None:
        """Ask the directory (blocking); the answer is cached. None on failure or no group."""
        now = time.monotonic()
        try:
            group = self._ask(user)
            until = now + self.settings.cache_minutes * 60
        except LDAPException as exc:
            self.errors += 1
            if self.errors == 1:
                log.error("directory lookup failed (later failures are only counted): %s", exc)
            group, until = None, now + _FAILURE_SECONDS
        with self._lock:
            self._cache[user.lower()] = (group, until)
        return group

    def _ask(self, user: str) -> str | None:
        s = self.settings
        # No schema read (get_info NONE): memberOf is not in every schema (OpenLDAP without
        # its overlay), and ldap3 would refuse to ask for it.
        server = ldap3.Server(s.server, connect_timeout=s.timeout_seconds, get_info=ldap3.NONE)
        with ldap3.Connection(
            server,
            user=s.bind_dn,
            password=self._password,
            auto_bind=True,
            receive_timeout=max(1, round(s.timeout_seconds)),  # ldap3 packs it as an int
            read_only=True,
        ) as conn:
            name = escape_filter_chars(user)
            conn.search(s.base_dn, s.user_filter.replace("{user}", name), attributes=["memberOf"])
            if not conn.entries:
                return None
            entry = conn.entries[0]
            dn = entry.entry_dn
            groups = (
                {str(g).lower() for g in entry["memberOf"].values} if "memberOf" in entry else set()
            )
            escaped_dn = escape_filter_chars(dn)
            conn.search(
                s.base_dn,
                f"(|(member={escaped_dn})(uniqueMember={escaped_dn})(memberUid={name}))",
                attributes=[],
            )
            groups |= {e.entry_dn.lower() for e in conn.entries}
        ranked = sorted((self._order[g], g) for g in groups if g in self._order)
        return s.groups[ranked[0][0]].group if ranked else None
