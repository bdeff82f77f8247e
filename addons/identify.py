"""Identify: who is asking, from the client address or the proxy login.

Stores a frozen ``Identity`` in ``flow.metadata["schoolgate.identity"]``
(``addons.facts``) for the filter and the audit to read. A login comes from
``ProxyLogin`` (``flow.metadata["schoolgate.login"]``); a login from an
address binding that names its device (RADIUS) gives the identity its
``device``, which incidents record and alerts show.

The identity of a client connection is kept too (``facts.client_identity``),
so that the filter decides a TLS ClientHello's SNI as the same person who
sent the CONNECT, or as the user bound to a transparent client's address.
"""

from __future__ import annotations

import dataclasses
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

    def _resolve(self, ip: str, login: Login | None) -> Identity:
        identity = self.loader.filterset.identities.resolve(ip, login.user if login else None)
        if login is not None and login.device is not None:
            # The device the login's binding names (RADIUS): incidents and alerts show it.
            identity = dataclasses.replace(identity, device=login.device)
        return self.directory_group(identity)

    def _identify(self, flow: http.HTTPFlow) -> Identity:
        identity = self._resolve(flow.client_conn.peername[0], facts.login_of(flow))
        flow.metadata[facts.IDENTITY] = identity
        return identity

    def of_client(self, client: connection.Client) -> Identity:
        """The identity of a client connection before (or without) any request on it."""
        found = facts.client_identity(client)
        if found is not None:
            return found
        return self._resolve(client.peername[0], self.login_of_client(client))

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
