"""Identify: who is asking, from the client address or the proxy login.

Stores a frozen ``Identity`` in ``flow.metadata["schoolgate.identity"]``
for the filter and the audit to read. A login comes from ``ProxyLogin``
(``flow.metadata["schoolgate.login"]``) or, when mitmproxy's own
``proxyauth`` option is used, from ``flow.metadata["proxyauth"]``.

The identity of a client connection is kept too (per connection, in a
``WeakKeyDictionary`` as mitmproxy's ``proxyauth`` does), so that the filter
decides a TLS ClientHello's SNI as the same person who sent the CONNECT, or
as the user bound to a transparent client's address.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from mitmproxy import connection, http

from addons.directory import DirectoryLookup
from addons.login import ProxyLogin, login_of
from addons.policyload import PolicyLoader
from proxy.identity import Identity

IDENTITY = "schoolgate.identity"


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    found = flow.metadata.get(IDENTITY)
    return found if isinstance(found, Identity) else None


class Identify:
    def __init__(
        self,
        loader: PolicyLoader,
        logins: ProxyLogin | None = None,
        directory: DirectoryLookup | None = None,
    ) -> None:
        self.loader = loader
        self.logins = logins
        self.directory = directory
        self._by_client: WeakKeyDictionary[connection.Client, Identity] = WeakKeyDictionary()

    def _identify(self, flow: http.HTTPFlow) -> Identity:
        login: str | None = None
        found = login_of(flow)
        if found is not None:
            login = found.user
        else:
            # mitmproxy's proxyauth addon leaves (user, password) here once a login checks out.
            auth = flow.metadata.get("proxyauth")
            login = auth[0] if isinstance(auth, tuple) and auth else None
        identity = self.loader.filterset.identities.resolve(flow.client_conn.peername[0], login)
        if self.directory is not None:  # a named user's directory group, from its cache
            identity = self.directory.identity(identity)
        flow.metadata[IDENTITY] = identity
        return identity

    def of_client(self, client: connection.Client) -> Identity:
        """The identity of a client connection before (or without) any request on it."""
        found = self._by_client.get(client)
        if found is not None:
            return found
        login = self.logins.login_of_client(client) if self.logins else None
        identity = self.loader.filterset.identities.resolve(
            client.peername[0], login.user if login else None
        )
        return self.directory.identity(identity) if self.directory is not None else identity

    def http_connect(self, flow: http.HTTPFlow) -> None:
        identity = self._identify(flow)
        if flow.response is None:
            self._by_client[flow.client_conn] = identity

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)
