"""TlsPolicy: decide on the host before any TLS handshake; pass through or refuse undecrypted TLS.

In the ``next_layer`` hook, where mitmproxy has just chosen to intercept a
TLS connection, this addon reads the ClientHello's SNI itself and asks
``proxy.tlspolicy.choose``: intercept (the default: the filter then decides
per request and shows the block page), pass through untouched (a group
with ``intercept: false``, or a host on the ``no_decrypt`` list), or refuse
(such a connection to a blocked host, or HTTPS with no SNI where the group
says ``https_without_sni: block``). A refused connection costs no TLS
handshake: the client gets a TLS ``access_denied`` alert and the connection
closes. In regular mode a CONNECT whose host alone refuses it is answered
403 before any TLS starts. Each pass-through and refusal is one line in the
access log, and its ClientHello is announced to the other addons (the
``tls_clienthello`` hook, with ``ignore_connection`` set) since mitmproxy's
TLS layer never sees it: the incidents addon raises one for a blocked SNI.

Failure policy: an error while choosing refuses the connection.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from weakref import WeakKeyDictionary

from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.tls import (
    ClientTLSLayer,
    ServerTLSLayer,
    TlsClienthelloHook,
    parse_client_hello,
)

from addons.audit import Audit
from addons.blocking import ANSWERED, protection_block
from addons.filter import DECISION, failed_closed
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from proxy.decision import Decision
from proxy.identity import Identity
from proxy.tlspolicy import TlsChoice, choose, is_ip

log = logging.getLogger("schoolgate.tls")
# A TLS record: fatal alert, access_denied (RFC 8446 §6.2).
ACCESS_DENIED = b"\x15\x03\x01\x00\x02\x02\x31"
WITHHELD = "(withheld)"


class Refuse(layer.Layer):
    """The layer for a refused connection: optionally an alert, then close; ignore the rest."""

    def __init__(self, context: Context, alert: bytes = b"") -> None:
        super().__init__(context)
        self.alert = alert

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            if self.alert:
                yield commands.SendData(self.context.client, self.alert)
            yield commands.CloseConnection(self.context.client)


def drop_chosen_layers(nextlayer: layer.NextLayer) -> None:
    """Undo the layers another addon chose (they registered themselves in the context)."""
    chosen = nextlayer.layer
    stack = nextlayer.context.layers
    while chosen is not None:
        if chosen in stack:
            stack.remove(chosen)
        chosen = getattr(chosen, "child_layer", None)
    nextlayer.layer = None


class TlsPolicy:
    def __init__(self, loader: PolicyLoader, audit: Audit) -> None:
        self.loader = loader
        self.audit = audit
        self.errors = 0
        self.refused = 0
        self.passed = 0
        self._identities: WeakKeyDictionary[connection.Client, Identity] = WeakKeyDictionary()

    def _record(
        self,
        identity: Identity | None,
        client_ip: str,
        choice: TlsChoice,
        decision: Decision,
        via: str,
    ) -> None:
        illegal = decision.illegal
        self.audit.record(
            ref=None,
            user=identity.user if identity else None,
            group=identity.group if identity else None,
            client_ip=client_ip,
            method=via,
            scheme="https",
            host=WITHHELD if illegal else choice.host,
            path=None,
            decision=decision.decision,
            category=decision.category,
            action=decision.action,
            incident=decision.incident,
            rule=None if illegal else choice.reason,
            status=None,
            error=None,
            tls="passthrough" if choice.action == "pass" else "refused",
        )

    def _decision(self, identity: Identity | None, choice: TlsChoice) -> Decision:
        if choice.decision is not None:
            return choice.decision
        return protection_block(identity, choice.reason)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        identity = identity_of(flow)
        host = flow.request.host
        try:
            if identity is None:
                raise RuntimeError("no identity")
            self._identities[flow.client_conn] = identity
            if is_ip(host):
                return  # the SNI may still name the site: decided at the ClientHello
            choice = choose(
                self.loader.filterset,
                identity,
                sni=host,
                connect_host=host,
                when=datetime.now(UTC),
            )
        except Exception as exc:
            choice = self._failed(exc)
        if choice.action != "refuse":
            return
        decision = self._decision(identity, choice)
        flow.metadata[DECISION] = decision
        flow.metadata[ANSWERED] = True
        self.refused += 1
        self._record(identity, flow.client_conn.peername[0], choice, decision, "CONNECT")
        flow.response = http.Response.make(
            403,
            "Blocked by the school's web filter.\n",
            {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"},
        )

    def _failed(self, exc: Exception) -> TlsChoice:
        self.errors += 1
        if self.errors == 1:
            log.exception("TLS policy failed; refusing (later failures are only counted)")
        return TlsChoice("refuse", failed_closed(None, type(exc).__name__).rule)

    async def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if not isinstance(nextlayer.layer, ServerTLSLayer) or not isinstance(
            getattr(nextlayer.layer, "child_layer", None), ClientTLSLayer
        ):
            return
        context = nextlayer.context
        client_ip = context.client.peername[0]
        identity: Identity | None = None
        try:
            hello = parse_client_hello(nextlayer.data_client())
        except ValueError:
            return  # not a ClientHello after all: mitmproxy's TLS layer reports the error
        try:
            if hello is None:
                drop_chosen_layers(nextlayer)  # wait for the rest of the ClientHello
                return
            identity = self._identities.get(
                context.client
            ) or self.loader.filterset.identities.resolve(client_ip)
            address = context.server.address
            choice = choose(
                self.loader.filterset,
                identity,
                sni=hello.sni,
                connect_host=str(address[0]) if address else None,
                when=datetime.now(UTC),
            )
        except Exception as exc:
            choice = self._failed(exc)
        if choice.action == "intercept":
            return
        drop_chosen_layers(nextlayer)
        decision = self._decision(identity, choice)
        if choice.action == "pass":
            self.passed += 1
            if choice.connect_to and context.server.address:  # safe search by address
                context.server.address = (choice.connect_to, context.server.address[1])
            nextlayer.layer = layers.TCPLayer(context, ignore=True)
        else:
            self.refused += 1
            nextlayer.layer = Refuse(context, ACCESS_DENIED)
        self._record(identity, client_ip, choice, decision, "TLS")
        if hello is not None:
            # mitmproxy's TLS layer, which would announce this ClientHello, never runs for
            # a connection passed through or refused here; announce it to the addons that
            # watch ClientHellos (the incidents addon raises one for a blocked SNI), marked
            # as not intercepted.
            announced = tls.ClientHelloData(context, hello)
            announced.ignore_connection = True
            await ctx.master.addons.trigger_event(TlsClienthelloHook(announced))
