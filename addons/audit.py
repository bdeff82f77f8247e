"""Audit: one structured JSON line per request, refused CONNECT or decided tunnel.

Written when the response is known (or the request failed), when a CONNECT
is refused (``http_connect_error``), and when a tunnel is passed through or
refused (``facts.tunnel_record``, left by TlsPolicy), through ``AccessLog``'s
background writer. An illegal hit is logged without its host or URL
(``Decision.shown``): the log says that the illegal list matched, never where.

``host`` is what the client named (the ``Host`` header, which a client may
set to anything); ``server_addr`` is the address the proxy actually connected
to (IP and port), or, for a request answered without a connection (a block),
the one it would have connected to, so ``Host: www.bbc.co.uk`` sent to
another address shows both.
"""

from __future__ import annotations

from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer

from addons import facts
from proxy.accesslog import AccessLog
from proxy.decision import WITHHELD_HOST as WITHHELD
from proxy.redaction import REDACTIONS


def server_addr(flow: http.HTTPFlow) -> str:
    """``IP:PORT`` the proxy connected to, else the ``HOST:PORT`` it would have."""
    conn = flow.server_conn
    # Not connected (answered by the proxy): where the request was going, which is the
    # request's own target (the absolute URL or CONNECT, or the original destination
    # in transparent mode), never the Host header.
    address = conn.peername or conn.address or (flow.request.host, flow.request.port)
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unless_illegal(address: str) -> str:
    """The address, or ``WITHHELD`` when its host was decided illegal on this proxy."""
    host = address.rpartition(":")[0].strip("[]")
    return WITHHELD if host in REDACTIONS else address


def _content_of(flow: http.HTTPFlow) -> dict[str, object]:
    """``{"content": …}`` when the page was content-analysed, else nothing (lines stay short)."""
    as_dict = getattr(flow.metadata.get("schoolgate.content"), "as_dict", None)
    return {"content": as_dict()} if callable(as_dict) else {}


class Audit:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.log: AccessLog | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_access_log",
            str,
            "",
            "Access log file (JSON lines); empty means access_log in schoolgate.yaml.",
        )

    def _open(self) -> None:
        # The settings' path is the one the console and `purge` read too.
        path = ctx.options.schoolgate_access_log or str(
            self.loader.filterset.settings.access_log_path
        )
        if self.log is not None:
            self.log.stop()
        self.log = AccessLog(Path(path))
        self.log.start()

    def configure(self, updated: set[str]) -> None:
        # configure() only hears of options that change, and the first change (the listen
        # address, at start) comes before any request: open the default path then, since
        # other addons' running() may take a while (store migrations) with servers up.
        if self.log is None or "schoolgate_access_log" in updated:
            self._open()

    def running(self) -> None:
        if self.log is None:
            self._open()

    def done(self) -> None:
        if self.log is not None:
            self.log.stop()
            self.log = None

    def _write(self, flow: http.HTTPFlow, error: str | None = None) -> None:
        decision = facts.decision_of(flow)
        identity = facts.identity_of(flow)
        host: str | None = flow.request.pretty_host
        path: str | None = flow.request.path
        rule = None
        illegal = decision is not None and decision.illegal
        if decision is not None:
            host, path, rule = decision.shown(host, path)
        self.record(
            ref=facts.reference_of(flow),
            user=identity.user if identity else None,
            group=identity.group if identity else None,
            client_ip=flow.client_conn.peername[0],
            method=flow.request.method,
            scheme=flow.request.scheme,
            host=host,
            server_addr=WITHHELD if illegal else _unless_illegal(server_addr(flow)),
            path=None if flow.request.method == "CONNECT" else path,
            decision=decision.decision if decision else None,
            category=decision.category if decision else None,
            action=decision.action if decision else None,
            incident=decision.incident if decision else None,
            rule=rule,
            status=flow.response.status_code if flow.response else None,
            # The content type tells the DSL's timeline a page from its images and scripts.
            ctype=flow.response.headers.get("content-type") if flow.response else None,
            error=error,
            # Content analysis (addons/content): the scores and the phrases that counted.
            **_content_of(flow),
        )

    def record(self, **fields: object) -> None:
        """One line in the access log.

        A line may be refused for another reason (HTTPS to an address with no SNI)
        than that its host is illegal: a host decided illegal is withheld anyway."""
        host = fields.get("host")
        if isinstance(host, str) and host in REDACTIONS:
            fields["host"] = WITHHELD
        if self.log is None:
            self._open()  # a connection can arrive before every addon's `running` has run
        if self.log is not None:
            self.log.write(**fields)

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._write(flow, flow.error.msg if flow.error else "error")

    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A refused CONNECT (blocked host, port, login): no request follows it."""
        self._write(flow)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """A tunnel passed through or refused: TlsPolicy left what and why."""
        found = facts.tunnel_record(nextlayer)
        if found is None:
            return
        decision = found.decision
        identity = facts.client_identity(nextlayer.context.client)
        host, _, _ = decision.shown(found.host, None)
        self.record(
            ref=None,
            user=identity.user if identity else decision.user,
            group=identity.group if identity else decision.group,
            client_ip=nextlayer.context.client.peername[0],
            method="TLS" if found.kind == "tls" else "TCP",
            scheme="https" if found.kind == "tls" else "tcp",
            host=host,
            port=found.port,
            path=None,
            decision=decision.decision,
            category=decision.category,
            action=decision.action,
            incident=decision.incident,
            rule=None if decision.illegal else found.reason,
            status=None,
            error=None,
            tls={"pass": "passthrough", "refuse": "refused"}.get(found.action, found.action)
            if found.kind == "tls"
            else None,
            tunnel=found.action,
        )
