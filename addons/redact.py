"""Redact: remember the hosts and addresses of illegal hits so no log line names them.

When a CONNECT host, a TLS SNI or a request is decided illegal, the host
(every spelling the client used: the CONNECT authority, the Host header, the
SNI) and the address the proxy would connect to are added to
``proxy.redaction.REDACTIONS``. The logging record factory installed by
``proxy/master.py`` then withholds them from every later log line of this
process, mitmproxy's own included ("the client does not trust the proxy's
certificate for HOST" when a device without the school's CA opens an
illegal host). It sits right after the filter and never changes a flow.

The CONNECT and SNI hosts are decided here from the host alone (one lookup
per connection, as the filter makes), since the filter keeps that decision
per connection, not in the flow. Failure policy: an error here is logged,
withheld like any other line, and changes no decision.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mitmproxy import http, tls

from addons.filter import decision_of
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from proxy.identity import Identity
from proxy.redaction import REDACTIONS, Redactions


class Redact:
    def __init__(self, loader: PolicyLoader, redactions: Redactions = REDACTIONS) -> None:
        self.loader = loader
        self.redactions = redactions

    def _illegal_host(self, identity: Identity, host: str | None) -> bool:
        if not host:
            return False
        decision = self.loader.filterset.decide_host(
            identity, host, datetime.now(UTC), self.loader.controls
        )
        return decision is not None and decision.illegal

    def http_connect(self, flow: http.HTTPFlow) -> None:
        identity = identity_of(flow)
        if identity is not None and self._illegal_host(identity, flow.request.host):
            self.redactions.add(flow.request.host, flow.request.host_header)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni
        client = data.context.client
        if sni is None or sni in self.redactions:
            return
        identity = self.loader.filterset.identities.resolve(client.peername[0])
        if self._illegal_host(identity, sni):
            address = data.context.server.address
            self.redactions.add(sni, str(address[0]) if address else None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        decision = decision_of(flow)
        if decision is None or not decision.illegal:
            return
        request = flow.request
        address = flow.server_conn.address
        self.redactions.add(
            request.host,
            request.pretty_host,
            request.host_header,
            str(address[0]) if address else None,
        )
