"""DirectoryLookup: filter groups from directory membership, asked before anyone is identified.

A user the proxy knows by name (a proxy login, the login page, RADIUS) but
whom ``policy.yaml`` does not list gets the filter group of their first
mapped directory group (``directory`` in settings; ``proxy/directory.py``).
This addon runs just before ``Identify``: when a request names such a user
and the answer is not cached, it asks the directory in a thread (never on
the event loop) and caches it; ``Identify`` then reads only the cache
(``identity``), so its hooks and a TLS ClientHello's decision stay
synchronous. A transparent client's first TLS connection, decided before any
request names the user, uses what is cached so far.

Failure policy: a failed lookup leaves the address's own group (never wider
than without a directory), is cached for a minute, and logged once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from mitmproxy import http

from addons import facts
from proxy.directory import DirectoryGroups
from proxy.identity import Identity

log = logging.getLogger("schoolgate.directory")


class DirectoryLookup:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self._groups: DirectoryGroups | None = None

    def groups(self) -> DirectoryGroups | None:
        settings = self.loader.filterset.settings.directory
        if settings is None:
            return None
        if self._groups is None or self._groups.settings is not settings:
            self._groups = DirectoryGroups(settings)
        return self._groups

    def _asks(self, identity: Identity) -> bool:
        return identity.user is not None and identity.source not in ("login", "address")

    def identity(self, identity: Identity) -> Identity:
        """``identity`` with its directory group, from the cache only."""
        groups = self.groups()
        if groups is None or not self._asks(identity):
            return identity
        assert identity.user is not None
        _, group = groups.cached(identity.user)
        if group is None or group not in self.loader.filterset.policy.groups:
            return identity
        return dataclasses.replace(identity, group=group, source="directory")

    async def _warm(self, flow: http.HTTPFlow) -> None:
        groups = self.groups()
        login = facts.login_of(flow)
        if groups is None or login is None:
            return
        fs = self.loader.filterset
        identity = fs.identities.resolve(flow.client_conn.peername[0], login.user)
        if not self._asks(identity) or groups.cached(login.user)[0]:
            return
        try:
            await asyncio.to_thread(groups.lookup, login.user)
        except Exception:
            # Not on the request path's decision: a failed lookup leaves the address's group.
            log.exception("directory lookup failed")

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        await self._warm(flow)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        await self._warm(flow)
