"""EarlyConnect: an allowed tunnel meets its server before the client's TLS handshake.

With ``connection_strategy=lazy`` (a blocked host never gets an upstream
connection) mitmproxy finishes the client's TLS handshake before it knows
the server, so it cannot mirror the server's ALPN: a browser offering h2
gets mitmproxy's slow HTTP/2 even from an HTTP/1.1 server
(``proxy/earlyconnect.py`` has the figures). mitmproxy's own eager strategy
sets ``establish_server_tls_first`` at the ClientHello (``TlsConfig``); this
addon sets it per tunnel, only for a CONNECT that nothing answered and whose
CONNECT host and SNI the Filter's one host decision at the ClientHello
allows (``may_connect_early`` reads it; nothing is looked up twice).
Everything else stays lazy. Requests inside are
still decided one by one by ``Filter``; this only changes when the
connection to an allowed host opens.

Only regular-mode tunnels: in transparent mode the destination address was
never decided at CONNECT, so those connections stay lazy.

Failure policy: any error leaves the tunnel lazy (the safe side: no early
connection), logged once and counted.
"""

from __future__ import annotations

import logging
from weakref import WeakKeyDictionary

from mitmproxy import connection, http, tls

from addons import facts
from addons.facts import identity_of
from proxy.earlyconnect import may_connect_early
from proxy.identity import Identity

log = logging.getLogger("schoolgate.earlyconnect")


class EarlyConnect:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.errors = 0
        self.early = 0
        self._tunnels: WeakKeyDictionary[connection.Client, tuple[Identity, str]] = (
            WeakKeyDictionary()
        )

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # After every addon that can refuse a CONNECT: an answered one opens no tunnel.
        identity = identity_of(flow)
        if flow.response is None and identity is not None:
            self._tunnels[flow.client_conn] = (identity, flow.request.host)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        tunnel = self._tunnels.pop(data.context.client, None)
        if tunnel is None or data.ignore_connection or not data.context.server.tls:
            return
        # The filter's one host decision, made at this ClientHello on its SNI and the CONNECT
        # host, as the pipeline left it: a host it blocked, or one a failing hook blocked to
        # be safe after the filter allowed it, is never met early. Nothing is decided again.
        decided = facts.host_decision(data.context.client)
        identity, connect_host = tunnel
        names = [connect_host]
        if data.client_hello.sni:
            names.append(data.client_hello.sni)
        try:
            early = may_connect_early(self.loader.filterset, identity, decided, names)
        except Exception:
            self.errors += 1
            if self.errors == 1:
                log.exception("early-connect check failed; left lazy (later failures counted)")
            return
        if early:
            self.early += 1
            data.establish_server_tls_first = True
