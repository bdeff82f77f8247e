"""Circumvention: close the ways round the filter that are not a category of site.

- CONNECT only to the group's ``allowed_ports`` (443 unless the policy says
  more): a tunnel to port 22 or 8443 is answered 403 and logged.
- HTTP/3 (QUIC over UDP) is refused, so browsers fall back to TCP where
  the filter sees them; ``Alt-Svc`` advertisements are removed from
  responses so browsers are not invited to try. (In transparent mode the
  firewall must also drop UDP 443: see the README.)
- DNS-over-HTTPS by the shape of the request (``application/dns-message``
  or ``application/dns-json``), on any host, for groups with ``doh:
  blocked`` or ``unacceptable`` (the latter raises ``subvert_filtering``).
  Known DoH hosts are a category of their own (lists ``doh`` and
  ``ut1/doh``), blocked like any other.

Proxy and VPN sites are categories too (``bypass`` in the demo policy,
``incident: subvert_filtering``), so the filter blocks them and raises the
incident.

Failure policy: an exception here reaches the pipeline, which blocks the
request or refuses the tunnel (``addons/pipeline.py``).
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy import layer

from addons import facts
from addons.pipeline import plain_403, refuse_layer, serve_block
from proxy.decision import Decision

SUBVERT = "subvert_filtering"
DOH_TYPES = ("application/dns-message", "application/dns-json")


def looks_like_doh(request: http.Request) -> bool:
    """A DNS query over HTTPS, whatever host it goes to (RFC 8484, and the JSON variant)."""
    content_type = request.headers.get("content-type", "").lower()
    accept = request.headers.get("accept", "").lower()
    return any(t in content_type or t in accept for t in DOH_TYPES)


class Circumvention:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.refused_quic = 0

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity at CONNECT")
        group = self.loader.filterset.policy.groups[identity.group]
        port = flow.request.port
        if group.port_allowed(port):
            return
        allowed = ", ".join(
            str(low) if low == high else f"{low}-{high}" for low, high in group.allowed_ports
        )
        flow.metadata[facts.DECISION] = Decision.block(
            identity,
            f"CONNECT to port {port} is not allowed for group {group.name} (allowed: {allowed})",
            by="circumvention",
        )
        flow.metadata[facts.ANSWERED] = True
        flow.response = plain_403(close=True)
        flow.response.content = (
            b"Blocked by the school's web filter: tunnels are allowed to web ports only.\n"
        )

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """QUIC (UDP to port 443) is refused whoever asks: it cannot be filtered."""
        context = nextlayer.context
        address = context.server.address
        if context.client.transport_protocol != "udp" or not address or address[1] != 443:
            return
        refuse_layer(nextlayer)
        self.refused_quic += 1

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if facts.answered_early(flow):
            return
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity")
        group = self.loader.filterset.policy.groups[identity.group]
        if group.doh == "acceptable" or not looks_like_doh(flow.request):
            return
        unacceptable = group.doh == "unacceptable"
        decision = Decision.block(
            identity,
            f"DNS-over-HTTPS request: {group.doh} for group {group.name}",
            by="circumvention",
            action="unacceptable" if unacceptable else "blocked",
            incident="unacceptable" if unacceptable else None,
            incident_type=SUBVERT if unacceptable else None,
        )
        serve_block(
            self.loader,
            flow,
            decision,
            "Looking up addresses through DNS-over-HTTPS goes round the school's filter, "
            "so it is blocked.",
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Browsers learn of HTTP/3 from ``Alt-Svc``; without it they stay on TCP."""
        if flow.response is not None and "alt-svc" in flow.response.headers:
            del flow.response.headers["alt-svc"]
