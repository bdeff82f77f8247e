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

Failure policy: an error while checking blocks the request or refuses the
tunnel.
"""

from __future__ import annotations

import logging

from mitmproxy import http
from mitmproxy.proxy import layer

from addons.audit import Audit
from addons.blocking import ANSWERED, answered_early, protection_block, serve_block
from addons.filter import DECISION, failed_closed
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from addons.tlspolicy import Refuse, drop_chosen_layers
from proxy.decision import Decision
from proxy.identity import Identity

SUBVERT = "subvert_filtering"
DOH_TYPES = ("application/dns-message", "application/dns-json")
log = logging.getLogger("schoolgate.circumvention")


def looks_like_doh(request: http.Request) -> bool:
    """A DNS query over HTTPS, whatever host it goes to (RFC 8484, and the JSON variant)."""
    content_type = request.headers.get("content-type", "").lower()
    accept = request.headers.get("accept", "").lower()
    return any(t in content_type or t in accept for t in DOH_TYPES)


class Circumvention:
    def __init__(self, loader: PolicyLoader, audit: Audit) -> None:
        self.loader = loader
        self.audit = audit
        self.errors = 0
        self.refused_quic = 0

    def _fail(self, exc: Exception, identity: Identity | None) -> Decision:
        self.errors += 1
        if self.errors == 1:
            log.exception("circumvention check failed; blocking (later failures are only counted)")
        return failed_closed(identity, f"circumvention: {type(exc).__name__}")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        identity = identity_of(flow)
        decision: Decision | None = None
        try:
            if identity is None:
                raise RuntimeError("no identity")
            group = self.loader.filterset.policy.groups[identity.group]
            port = flow.request.port
            if not group.port_allowed(port):
                allowed = ", ".join(
                    str(low) if low == high else f"{low}-{high}"
                    for low, high in group.allowed_ports
                )
                decision = protection_block(
                    identity,
                    f"CONNECT to port {port} is not allowed for group {group.name} "
                    f"(allowed: {allowed})",
                )
        except Exception as exc:
            decision = self._fail(exc, identity)
        if decision is None:
            return
        flow.metadata[DECISION] = decision
        flow.metadata[ANSWERED] = True
        self.audit.record(
            ref=None,
            user=decision.user,
            group=decision.group,
            client_ip=flow.client_conn.peername[0],
            method="CONNECT",
            scheme="https",
            host=flow.request.host,
            path=None,
            decision="block",
            category=None,
            action=decision.action,
            incident=None,
            rule=decision.rule,
            status=403,
            error=None,
        )
        flow.response = http.Response.make(
            403,
            "Blocked by the school's web filter: tunnels are allowed to web ports only.\n",
            {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"},
        )

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """QUIC (UDP to port 443) is refused whoever asks: it cannot be filtered."""
        context = nextlayer.context
        address = context.server.address
        if context.client.transport_protocol != "udp" or not address or address[1] != 443:
            return
        drop_chosen_layers(nextlayer)
        nextlayer.layer = Refuse(context)
        self.refused_quic += 1

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered_early(flow):
            return
        identity = identity_of(flow)
        try:
            if identity is None:
                raise RuntimeError("no identity")
            group = self.loader.filterset.policy.groups[identity.group]
            if group.doh == "acceptable" or not looks_like_doh(flow.request):
                return
            decision = protection_block(
                identity,
                f"DNS-over-HTTPS request: {group.doh} for group {group.name}",
                incident_type=SUBVERT if group.doh == "unacceptable" else None,
            )
        except Exception as exc:
            decision = self._fail(exc, identity)
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
