"""Filter: decide for every request, and block with the block page.

The host is decided at CONNECT (or from the TLS SNI in transparent mode)
before anything is decrypted; when the host alone decides a block, the
connection is marked and every request inside it gets the block page
without an upstream connection being made (the proxy runs with
``connection_strategy=lazy``). Otherwise each request is decided on its
full URL, on both the address it goes to and its ``Host`` header, and the
stricter answer wins, so a mismatched ``Host`` cannot sneak past.

Failure policy: mitmproxy logs a hook's exception and lets the flow go on,
which would mean "allow". So every hook here catches everything, blocks,
logs the first failure with its traceback, and counts them all.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from weakref import WeakKeyDictionary

from mitmproxy import connection, http, tls

from addons.identify import Identify, identity_of
from addons.policyload import PolicyLoader
from blocklists.normalise import BadURL, CanonicalURL, normalise_parts, normalise_url
from proxy import blockpage
from proxy.decision import Decision
from proxy.identity import Identity

DECISION = "schoolgate.decision"
REFERENCE = "schoolgate.reference"
LOOKUP_SECONDS = "schoolgate.lookup_seconds"
log = logging.getLogger("schoolgate.filter")

_SEVERITY = {None: 0, "unacceptable": 1, "illegal": 2}


def decision_of(flow: http.HTTPFlow) -> Decision | None:
    found = flow.metadata.get(DECISION)
    return found if isinstance(found, Decision) else None


def failed_closed(identity: Identity | None, why: str) -> Decision:
    """The decision when the filter itself cannot decide: block."""
    return Decision(
        decision="block",
        category=None,
        action="blocked",
        incident=None,
        incident_type=None,
        matched=None,
        rule=f"filter error, blocked to be safe: {why}",
        group=identity.group if identity else "unknown",
        user=identity.user if identity else None,
    )


def stricter(a: Decision, b: Decision) -> Decision:
    if a.blocked != b.blocked:
        return a if a.blocked else b
    return b if _SEVERITY[b.incident] > _SEVERITY[a.incident] else a


class Filter:
    def __init__(self, loader: PolicyLoader, identify: Identify | None = None) -> None:
        self.loader = loader
        self.identify = identify
        self.errors = 0
        self._host_blocks: WeakKeyDictionary[connection.Client, Decision] = WeakKeyDictionary()

    def _fail(self, flow: http.HTTPFlow | None, exc: Exception) -> Decision:
        self.errors += 1
        if self.errors == 1:
            log.exception("filter hook failed; blocking (later failures are only counted)")
        identity = identity_of(flow) if flow is not None else None
        return failed_closed(identity, type(exc).__name__)

    def _decide_host(self, client: connection.Client, host: str | None, identity: Identity) -> None:
        if not host:
            return
        decision = self.loader.filterset.decide_host(
            identity, host, datetime.now(UTC), self.loader.controls
        )
        if decision is not None:
            self._host_blocks[client] = decision

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # an earlier addon answered (a 407 login challenge)
            return
        try:
            identity = identity_of(flow)
            if identity is None:
                raise RuntimeError("no identity")
            self._decide_host(flow.client_conn, flow.request.host, identity)
        except Exception as exc:
            self._host_blocks[flow.client_conn] = self._fail(flow, exc)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        if client in self._host_blocks or data.client_hello.sni is None:
            return
        try:
            # The CONNECT's sender, or the user bound to a transparent client's address.
            if self.identify is not None:
                identity = self.identify.of_client(client)
            else:
                identity = self.loader.filterset.identities.resolve(client.peername[0])
            self._decide_host(client, data.client_hello.sni, identity)
        except Exception as exc:
            self._host_blocks[client] = self._fail(None, exc)

    def _decide(self, flow: http.HTTPFlow, identity: Identity) -> Decision:
        fs = self.loader.filterset
        now = datetime.now(UTC)
        request = flow.request
        try:
            url = normalise_parts(request.scheme, request.host, request.port, request.path)
        except BadURL as exc:
            raise ValueError(f"unparseable URL: {exc}") from None
        controls = self.loader.controls
        decision = fs.decide_url(identity, url, now, controls)
        header_host = request.host_header
        if header_host:
            try:
                other = normalise_url(f"{url.scheme}://{header_host}{request.path}")
            except BadURL:
                return stricter(decision, failed_closed(identity, "bad Host header"))
            if other.host != url.host:
                decision = stricter(decision, fs.decide_url(identity, other, now, controls))
        return decision

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # an earlier addon answered: nothing goes upstream
            return
        reference = blockpage.new_reference()
        flow.metadata[REFERENCE] = reference
        started = time.perf_counter()
        try:
            identity = identity_of(flow)
            if identity is None:
                raise RuntimeError("no identity")
            decision = self._host_blocks.get(flow.client_conn) or self._decide(flow, identity)
        except Exception as exc:
            decision = self._fail(flow, exc)
        flow.metadata[LOOKUP_SECONDS] = time.perf_counter() - started
        flow.metadata[DECISION] = decision
        if decision.blocked:
            self._block(flow, decision, reference)

    def _block(self, flow: http.HTTPFlow, decision: Decision, reference: str) -> None:
        try:
            url: str | None = normalise_url(flow.request.pretty_url).entry
        except BadURL:
            url = None
        page = blockpage.render(
            decision,
            school=self.loader.filterset.policy.school,
            reference=reference,
            url=None if decision.illegal else url,
            console_url=self.loader.filterset.settings.console_url,
        )
        flow.response = http.Response.make(
            403,
            page,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Schoolgate-Reference": reference,
            },
        )


__all__ = ["DECISION", "LOOKUP_SECONDS", "REFERENCE", "CanonicalURL", "Filter", "decision_of"]
