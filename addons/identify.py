"""Identify: who is asking, from the client address or the proxy login.

Stores a frozen ``Identity`` in ``flow.metadata["schoolgate.identity"]``
(``addons.facts``) for the filter and the audit to read. A login comes from
``ProxyLogin`` (``flow.metadata["schoolgate.login"]``) or, when mitmproxy's
own ``proxyauth`` option is used, from ``flow.metadata["proxyauth"]``.

The identity of a client connection is kept too (``facts.client_identity``),
so that the filter decides a TLS ClientHello's SNI as the same person who
sent the CONNECT, or as the user bound to a transparent client's address.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import connection, http
from mitmproxy.proxy import layer

from addons import facts
from proxy.identity import Identity
from proxy.logins import Login


class Identify:
    def __init__(
        self,
        loader: facts.Policies,
        login_of_client: Callable[[connection.Client], Login | None] | None = None,
        directory_group: Callable[[Identity], Identity] | None = None,
    ) -> None:
        self.loader = loader
        # The login of a connection with no request yet (ProxyLogin.login_of_client).
        self.login_of_client = login_of_client or facts.client_login
        # A named user's directory group, from its cache (DirectoryLookup.identity).
        self.directory_group = directory_group or (lambda identity: identity)

    def _identify(self, flow: http.HTTPFlow) -> Identity:
        login: str | None = None
        found = facts.login_of(flow)
        if found is not None:
            login = found.user
        else:
            # mitmproxy's proxyauth addon leaves (user, password) here once a login checks out.
            auth = flow.metadata.get("proxyauth")
            login = auth[0] if isinstance(auth, tuple) and auth else None
        identity = self.loader.filterset.identities.resolve(flow.client_conn.peername[0], login)
        identity = self.directory_group(identity)
        flow.metadata[facts.IDENTITY] = identity
        return identity

    def of_client(self, client: connection.Client) -> Identity:
        """The identity of a client connection before (or without) any request on it."""
        found = facts.client_identity(client)
        if found is not None:
            return found
        login = self.login_of_client(client)
        identity = self.loader.filterset.identities.resolve(
            client.peername[0], login.user if login else None
        )
        return self.directory_group(identity)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        identity = self._identify(flow)
        if flow.response is None:
            facts.set_client_identity(flow.client_conn, identity)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """A connection with no CONNECT (transparent mode) is its address's, or its login's."""
        client = nextlayer.context.client
        if facts.client_identity(client) is None:
            facts.set_client_identity(client, self.of_client(client))

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)
