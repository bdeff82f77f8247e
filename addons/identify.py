"""Identify: who is asking, from the client address or the proxy login.

Stores a frozen ``Identity`` in ``flow.metadata["schoolgate.identity"]``
for the filter and the audit to read.
"""

from __future__ import annotations

from mitmproxy import http

from addons.policyload import PolicyLoader
from proxy.identity import Identity

IDENTITY = "schoolgate.identity"


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    found = flow.metadata.get(IDENTITY)
    return found if isinstance(found, Identity) else None


class Identify:
    def __init__(self, loader: PolicyLoader) -> None:
        self.loader = loader

    def _identify(self, flow: http.HTTPFlow) -> None:
        # mitmproxy's proxyauth addon leaves (user, password) here once a login checks out.
        auth = flow.metadata.get("proxyauth")
        login = auth[0] if isinstance(auth, tuple) and auth else None
        flow.metadata[IDENTITY] = self.loader.filterset.identities.resolve(
            flow.client_conn.peername[0], login
        )

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._identify(flow)
