"""Filter: the one place a host or a request is decided; blocks with the block page.

Once per connection it decides the host: at CONNECT, then again when the
TLS ClientHello arrives (its SNI together with the CONNECT host, or the
original destination in transparent mode), with identity, suspensions and
overrides. That ``HostDecision`` goes into ``addons.facts`` for TlsPolicy,
Incidents and Audit to read; none of them decides again. When the host alone
decides a block, every request inside the connection gets it, without an
upstream connection being made (``connection_strategy=lazy``). Otherwise each
request is decided once, on its full URL, on both the address it goes to and
its ``Host`` header, and the stricter answer wins, so a mismatched ``Host``
cannot sneak past.

Failure policy: an exception here reaches the pipeline, which blocks the
request (or refuses the connection) and counts it (``addons/pipeline.py``).
A URL that cannot be read is a block, whatever the reason it cannot.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from mitmproxy import http
from mitmproxy.proxy import layer

from addons import facts
from addons.pipeline import serve_block
from blocklists.normalise import normalise_parts, normalise_url
from proxy import blockpage
from proxy.decision import Decision, stricter
from proxy.identity import Identity
from proxy.tlspolicy import decide_hosts

log = logging.getLogger("schoolgate.filter")


class Filter:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader

    def decide_hosts(
        self, identity: Identity, names: tuple[str | None, ...], via: str
    ) -> facts.HostDecision | None:
        """The one decision on a connection's host names (None when it has none)."""
        return decide_hosts(
            self.loader.filterset, identity, names, datetime.now(UTC), self.loader.controls, via
        )

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # an earlier addon answered (a 407 login challenge)
            return
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity at CONNECT")
        decided = self.decide_hosts(identity, (flow.request.host,), "CONNECT")
        if decided is not None:
            facts.set_host_decision(flow.client_conn, decided)
            flow.metadata[facts.DECISION] = decided.decision

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Decide the connection's host: from a TLS ClientHello's SNI with the CONNECT host,
        or, for a connection with no decision on its destination yet (transparent mode),
        from the destination alone."""
        context = nextlayer.context
        address = context.server.address
        if context.client.transport_protocol != "tcp" or not address:
            return  # the client talking to the proxy itself: nothing to decide yet
        destination = str(address[0])
        identity = facts.client_identity(context.client)
        data = nextlayer.data_client()
        if facts.starts_like_tls(data):
            try:
                hello = facts.tls_client_hello(data)
            except ValueError:
                return  # not a ClientHello: TlsPolicy refuses the connection
            if hello is None:
                return  # wait for the rest
            if identity is None:
                raise RuntimeError("no identity at the ClientHello")
            sni, _ = facts.sni_of(hello)
            decided = self.decide_hosts(identity, (sni, destination), "SNI")
        else:
            known = facts.host_decision(context.client)
            if known is not None and (known.covers(destination) or known.decision.blocked):
                return  # decided already; and a block (failing closed too) is never undone
            if identity is None:
                raise RuntimeError("no identity for the connection")
            decided = self.decide_hosts(identity, (destination,), "destination")
        if decided is not None:
            facts.set_host_decision(context.client, decided)

    def _decide(self, flow: http.HTTPFlow, identity: Identity) -> Decision:
        fs = self.loader.filterset
        now = datetime.now(UTC)
        request = flow.request
        try:
            url = normalise_parts(request.scheme, request.host, request.port, request.path)
        except Exception as exc:  # BadURL or a bug in normalising: either way, a block
            return Decision.failed(identity, f"unreadable URL ({type(exc).__name__})")
        controls = self.loader.controls
        decision = fs.decide_url(identity, url, now, controls)
        header_host = request.host_header
        # The Host header most often names the request's own host (every absolute-form
        # request a browser sends through the proxy): decided already, so not normalised
        # and decided again (about 15 µs a request).
        if header_host and header_host not in (request.host, f"{request.host}:{request.port}"):
            try:
                other = normalise_url(f"{url.scheme}://{header_host}{request.path}")
            except Exception:
                return stricter(decision, Decision.failed(identity, "bad Host header"))
            if other.host != url.host:
                decision = stricter(decision, fs.decide_url(identity, other, now, controls))
        return decision

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # an earlier addon answered: nothing goes upstream
            return
        reference = blockpage.new_reference()
        flow.metadata[facts.REFERENCE] = reference
        started = time.perf_counter()
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity")
        decided = facts.host_decision(flow.client_conn)
        if decided is not None and decided.final:
            decision = decided.decision
        else:
            decision = self._decide(flow, identity)
        flow.metadata[facts.LOOKUP_SECONDS] = time.perf_counter() - started
        flow.metadata[facts.DECISION] = decision
        if decision.blocked:
            serve_block(self.loader, flow, decision)


__all__ = ["Filter"]
