"""TlsPolicy: a tunnel carries only what was decided.

Every connection's bytes are looked at before any upstream connection is
made (the proxy runs with ``connection_strategy=lazy``), in the
``next_layer`` hook, where mitmproxy chooses how to handle them. Whatever
mitmproxy chose, this addon decides:

- **TLS**, recognised by a handshake record with *any* record-layer version
  byte (mitmproxy alone only knows 0x00-0x03; servers ignore that byte), once
  the whole ClientHello is in: ``proxy.tlspolicy.choose`` says intercept,
  pass through untouched (a group with ``intercept: false``, a ``no_decrypt``
  host) or refuse, from the filter's one decision on the host
  (``facts.host_decision``: CONNECT host and SNI, suspensions and overrides
  included). An SNI that cannot be read counts as none (``https_without_sni``).
  A refusal costs no handshake: a TLS ``access_denied`` alert, then close.
- **HTTP**: each request is decided by the filter; a host the filter
  blocked outright gets the block page for every request, upstream never asked.
- **Anything else** (SSH, OpenVPN, raw TCP) is refused, unless its
  ``host:port`` is on the policy's ``tcp_passthrough`` list and the host is
  not blocked. A client must speak first: nothing is opened for a silent one.

In regular mode a CONNECT that the host alone refuses for a pass-through
group (or a ``no_decrypt`` host) is answered 403 before any TLS starts.
Each pass-through and refusal is one line in the access log (the audit reads
``facts.tunnel_record``).

Failure policy: an exception here reaches the pipeline, which refuses the
connection (``addons/pipeline.py``).
"""

from __future__ import annotations

import logging
import re

from mitmproxy import http
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import modes
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.tls import ClientTLSLayer, ServerTLSLayer

from addons import facts
from addons.pipeline import Refuse, drop_chosen_layers, plain_403, refuse_layer
from proxy.decision import Decision
from proxy.identity import Identity
from proxy.tlspolicy import HostDecision, TlsChoice, choose, is_ip, tcp_passthrough_allowed

log = logging.getLogger("schoolgate.tls")
# A request line: METHOD SP TARGET SP HTTP/x(.y) (RFC 9112 §3); anything else is not HTTP.
REQUEST_LINE = re.compile(rb"[A-Za-z]{3,20} [^ \r\n]+ HTTP/\d(\.\d)?\r?\n")
# Longer than any real ClientHello or request line still incomplete: stop waiting, refuse.
MAX_UNDECIDED = 64 * 1024


def what_is(data: bytes) -> str:
    """``tls``, ``http``, ``more`` (cannot tell yet) or ``other``, from a client's first bytes."""
    if facts.starts_like_tls(data):
        return "tls"
    if len(data) < 3:  # the start of a TLS record header, or of a request method
        return "more" if data.isalpha() or b"\x16\x03".startswith(data) else "other"
    if not data[:3].isalpha():
        return "other"
    end = data.find(b"\n")
    if end < 0:  # a request line still arriving is printable ASCII
        return "more" if len(data) < 8192 and all(32 <= b < 127 for b in data) else "other"
    return "http" if REQUEST_LINE.match(data[: end + 1]) else "other"


def _is_proxy_protocol(context: Context) -> bool:
    """The client talking to the proxy itself (the explicit proxy's own HTTP), not a tunnel."""
    stack = context.layers
    return len(stack) == 1 and isinstance(
        stack[0], modes.HttpProxy | modes.HttpUpstreamProxy | modes.ReverseProxy
    )


class TlsPolicy:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.refused = 0
        self.passed = 0

    # -- CONNECT ---------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity at CONNECT")
        host = flow.request.host
        if is_ip(host):
            return  # the SNI may still name the site: decided at the ClientHello
        decided = facts.host_decision(flow.client_conn)
        choice = choose(self.loader.filterset, identity, decided)
        # A group that intercepts is refused nothing here: it gets the block page inside TLS.
        if choice.action != "refuse" or self._intercepts(identity, decided):
            return
        decision = self._decision(identity, choice)
        flow.metadata[facts.DECISION] = decision
        flow.metadata[facts.ANSWERED] = True
        self.refused += 1
        flow.response = plain_403(close=True)

    def _intercepts(self, identity: Identity, decided: facts.HostDecision | None) -> bool:
        group = self.loader.filterset.policy.groups[identity.group]
        if not group.intercept:
            return False
        if decided is None:
            return True
        allowed = Decision.allow(identity, "probe", by="tls")
        probe = choose(
            self.loader.filterset, identity, HostDecision(decided.hosts, allowed, False, "CONNECT")
        )
        return probe.action == "intercept"

    @staticmethod
    def _decision(identity: Identity | None, choice: TlsChoice) -> Decision:
        if choice.decision is not None and choice.decision.blocked:
            return choice.decision
        return Decision.block(identity, choice.reason, by="tls")

    # -- the bytes of a connection ---------------------------------------------------------

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if context.client.transport_protocol != "tcp" or _is_proxy_protocol(context):
            return
        if isinstance(nextlayer.layer, Refuse):
            return  # an earlier addon (or the pipeline, failing closed) refused it already
        data = nextlayer.data_client()
        kind = what_is(data)
        if kind == "more" and len(data) < MAX_UNDECIDED:
            drop_chosen_layers(nextlayer)  # wait for more bytes; nothing is opened meanwhile
            return
        if kind == "tls":
            self._tls(nextlayer, data)
        elif kind == "http":
            if not isinstance(nextlayer.layer, layers.HttpLayer):
                drop_chosen_layers(nextlayer)
                nextlayer.layer = layers.HttpLayer(context, HTTPMode.transparent)
        else:
            self._raw(nextlayer)

    def _target(self, nextlayer: layer.NextLayer) -> tuple[str | None, int | None]:
        address = nextlayer.context.server.address
        if not address:
            return None, None
        return str(address[0]), int(address[1])

    def _raw(self, nextlayer: layer.NextLayer) -> None:
        """Neither TLS nor HTTP: refused, unless explicitly on ``tcp_passthrough``."""
        context = nextlayer.context
        host, port = self._target(nextlayer)
        decided = facts.host_decision(context.client)
        identity = facts.client_identity(context.client)
        fs = self.loader.filterset
        # Only on the filter's decision for this very destination, and only if it allows.
        allowed = decided is not None and not decided.decision.blocked and decided.covers(host)
        if allowed and tcp_passthrough_allowed(fs, host, port):
            drop_chosen_layers(nextlayer)
            nextlayer.layer = layers.TCPLayer(context)
            reason = f"{host}:{port} is on the policy's tcp_passthrough list"
            self.passed += 1
            facts.set_tunnel_record(
                nextlayer,
                facts.TunnelRecord(
                    "pass", "tcp", host, port, Decision.allow(identity, reason, by="tunnel"), reason
                ),
            )
            return
        refuse_layer(nextlayer)
        self.refused += 1
        if decided is not None and decided.decision.blocked:
            decision = decided.decision
            reason = f"not TLS or HTTP, to a blocked host: {decision.rule}"
        else:
            reason = (
                "not TLS or HTTP (raw TCP such as SSH or a VPN), "
                "and not on the policy's tcp_passthrough list"
            )
            decision = Decision.block(identity, reason, by="tunnel")
        facts.set_tunnel_record(
            nextlayer, facts.TunnelRecord("refuse", "tcp", host, port, decision, reason)
        )

    def _tls(self, nextlayer: layer.NextLayer, data: bytes) -> None:
        context = nextlayer.context
        host, port = self._target(nextlayer)
        identity = facts.client_identity(context.client)
        if identity is None:
            raise RuntimeError("no identity at the ClientHello")
        try:
            hello = facts.tls_client_hello(data)
        except ValueError:
            hello = None
            reason = "a TLS record that is not a ClientHello"
            refuse_layer(nextlayer, alert=True)
            self.refused += 1
            decision = Decision.block(identity, reason, by="tls")
            facts.set_tunnel_record(
                nextlayer, facts.TunnelRecord("refuse", "tls", host, port, decision, reason)
            )
            return
        if hello is None:
            if len(data) < MAX_UNDECIDED:
                drop_chosen_layers(nextlayer)  # wait for the rest of the ClientHello
                return
            refuse_layer(nextlayer, alert=True)
            return
        sni, unreadable = facts.sni_of(hello)
        decided = facts.host_decision(context.client)
        choice = choose(
            self.loader.filterset,
            identity,
            decided,
            no_name=sni is None and (host is None or is_ip(host)),
            unreadable_sni=unreadable,
        )
        shown = sni or host
        if choice.action == "intercept":
            self._intercept(nextlayer)
            if decided is not None and decided.final and decided.decision.blocked:
                # Logged now: a device that does not trust the school's CA never sends the
                # request that would be logged with the block page.
                facts.set_tunnel_record(
                    nextlayer,
                    facts.TunnelRecord(
                        "intercept",
                        "tls",
                        shown,
                        port,
                        decided.decision,
                        "a blocked host: every request inside gets the block page",
                    ),
                )
            return
        if choice.action == "pass":
            decision = choice.decision or Decision.allow(identity, choice.reason, by="tls")
        elif decided is not None and decided.decision.blocked:
            decision = decided.decision  # the host's own block (an illegal one stays withheld)
        else:
            decision = self._decision(identity, choice)
        if choice.action == "pass":
            self.passed += 1
            drop_chosen_layers(nextlayer)
            if choice.connect_to and context.server.address:  # safe search by address
                context.server.address = (choice.connect_to, context.server.address[1])
            nextlayer.layer = layers.TCPLayer(context, ignore=True)
        else:
            self.refused += 1
            refuse_layer(nextlayer, alert=True)
        facts.set_tunnel_record(
            nextlayer,
            facts.TunnelRecord(
                choice.action, "tls", choice.host or shown, port, decision, choice.reason
            ),
        )

    @staticmethod
    def _intercept(nextlayer: layer.NextLayer) -> None:
        """mitmproxy's TLS layers, fed the ClientHello with standard record version bytes.

        mitmproxy's own parser refuses a record version byte above 0x03, which
        servers (and OpenSSL) ignore; only the record headers change.
        """
        context = nextlayer.context
        chosen = nextlayer.layer
        if not (
            isinstance(chosen, ServerTLSLayer)
            and isinstance(getattr(chosen, "child_layer", None), ClientTLSLayer)
        ):
            drop_chosen_layers(nextlayer)
            server_tls = ServerTLSLayer(context)
            server_tls.child_layer = ClientTLSLayer(context)
            nextlayer.layer = server_tls
        data = nextlayer.data_client()
        fixed = facts.normalise_records(data)
        if fixed != data:
            kept = [
                e
                for e in nextlayer.events
                if not (isinstance(e, events.DataReceived) and e.connection == context.client)
            ]
            nextlayer.events[:] = [*kept, events.DataReceived(context.client, fixed)]
