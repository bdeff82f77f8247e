"""UpstreamChain: chaining to a parent proxy without mitmproxy's five-host stall.

With ``upstream: http://PARENT:PORT`` the regular mode becomes mitmproxy's
``upstream:`` mode. There, every distinct host a client connection visits gets
its own connection to the parent, and mitmproxy allows at most five open
connections per client connection to one address (``max_conns`` in
``mitmproxy/proxy/server.py``), held until the parent closes them. So the sixth
host on a keep-alive client connection waits for the parent's idle timeout
(../shared/README.md, peers/RESULTS.md).

The fix here keeps at most ``MAX_IDLE`` connections to the parent open per
client connection: once a client connection holds that many, its next request
goes to the parent with ``Connection: close``, so the parent closes that
connection after answering and mitmproxy's slot is freed. The header is put
back as the client sent it (and a ``close`` the parent echoes is taken out of
the response) before mitmproxy decides about the client's side, so the
client's keep-alive connection stays open. The first hosts a client visits
keep their connections; later requests cost a new connection to the parent.
(Marking the *response* instead is racy: mitmproxy may decide about the
parent connection before a response hook has run.)

Failure policy: this addon only decides whether a parent connection is kept;
it never opens or changes what is filtered.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import mode_specs, server_hooks

MAX_IDLE = 4  # below mitmproxy's five per client connection, leaving one for the next host
_MARK = "schoolgate.upstream_connection_header"


class UpstreamChain:
    def __init__(self) -> None:
        self.parents: frozenset[tuple[str, int]] = frozenset()
        self._open: WeakKeyDictionary[connection.Client, set[connection.Server]] = (
            WeakKeyDictionary()
        )

    def configure(self, updated: set[str]) -> None:
        if "mode" in updated:
            modes = [mode_specs.ProxyMode.parse(spec) for spec in ctx.options.mode]
            self.parents = frozenset(
                m.address for m in modes if isinstance(m, mode_specs.UpstreamMode)
            )

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address in self.parents:
            self._open.setdefault(data.client, set()).add(data.server)

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        held = self._open.get(data.client)
        if held is not None:
            held.discard(data.server)

    def open_to_parent(self, client: connection.Client) -> int:
        """How many connections to the parent this client connection holds now."""
        return len(self._open.get(client, ()))

    def request(self, flow: http.HTTPFlow) -> None:
        if not self.parents or flow.response is not None:
            return
        if self.open_to_parent(flow.client_conn) < MAX_IDLE:
            return
        flow.metadata[_MARK] = flow.request.headers.get_all("Connection")
        flow.request.headers["Connection"] = "close"

    def response(self, flow: http.HTTPFlow) -> None:
        original = flow.metadata.pop(_MARK, None)
        if original is None:
            return
        # The client asked for nothing of the kind: its connection stays alive.
        if original:
            flow.request.headers.set_all("Connection", original)
        else:
            del flow.request.headers["Connection"]
        if flow.response is not None:
            kept = [
                v
                for v in flow.response.headers.get_all("Connection")
                if v.strip().lower() != "close"
            ]
            flow.response.headers.set_all("Connection", kept)

    def error(self, flow: http.HTTPFlow) -> None:
        self.response(flow)
