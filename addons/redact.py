"""Redact: remember the hosts and addresses of illegal hits so no log line names them.

When a CONNECT host, a TLS SNI or a request is decided illegal, the host
(every spelling the client used: the CONNECT authority, the Host header, the
SNI) and the address the proxy would connect to are added to
``proxy.redaction.REDACTIONS``. The logging record factory installed by
``proxy/master.py`` then withholds them from every later log line of this
process, mitmproxy's own included ("the client does not trust the proxy's
certificate for HOST" when a device without the school's CA opens an
illegal host). It sits right after the filter and never changes a flow.

It reads the filter's one decision (``addons.facts``): the host decision
of the connection at CONNECT and SNI, the request's decision after that.
Failure policy: it never changes a flow; an error reaches the pipeline,
which blocks.
"""

from __future__ import annotations

from mitmproxy import connection, http, tls

from addons import facts
from proxy.redaction import REDACTIONS, Redactions


def _illegal_host(client: connection.Client) -> bool:
    decided = facts.host_decision(client)
    return decided is not None and decided.decision.illegal


class Redact:
    def __init__(self, redactions: Redactions = REDACTIONS) -> None:
        self.redactions = redactions

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if _illegal_host(flow.client_conn):
            self.redactions.add(flow.request.host, flow.request.host_header)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni
        if sni is None or sni in self.redactions:
            return
        if _illegal_host(data.context.client):
            address = data.context.server.address
            self.redactions.add(sni, str(address[0]) if address else None)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        decision = facts.decision_of(flow)
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
