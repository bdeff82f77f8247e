"""Audit: one structured JSON line per request in the access log.

Written when the response is known (or the request failed), through
``AccessLog``'s background writer. An illegal hit is logged without its
host or URL: the log says that the illegal list matched, never where.
"""

from __future__ import annotations

from pathlib import Path

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from addons.filter import REFERENCE, decision_of
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from proxy.accesslog import AccessLog

WITHHELD = "(withheld)"


def _content_of(flow: http.HTTPFlow) -> dict[str, object]:
    """``{"content": …}`` when the page was content-analysed, else nothing (lines stay short)."""
    as_dict = getattr(flow.metadata.get("schoolgate.content"), "as_dict", None)
    return {"content": as_dict()} if callable(as_dict) else {}


class Audit:
    def __init__(self, loader: PolicyLoader) -> None:
        self.loader = loader
        self.log: AccessLog | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_access_log",
            str,
            "",
            "Access log file (JSON lines); empty means access.log in the data folder.",
        )

    def _open(self) -> None:
        path = ctx.options.schoolgate_access_log or str(
            self.loader.filterset.settings.data_dir / "access.log"
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
        if self.log is None:
            self._open()  # a request can arrive before every addon's `running` has run
        if self.log is None:
            return
        decision = decision_of(flow)
        identity = identity_of(flow)
        illegal = decision is not None and decision.illegal
        self.log.write(
            ref=flow.metadata.get(REFERENCE),
            user=identity.user if identity else None,
            group=identity.group if identity else None,
            client_ip=flow.client_conn.peername[0],
            method=flow.request.method,
            scheme=flow.request.scheme,
            host=WITHHELD if illegal else flow.request.pretty_host,
            path=WITHHELD if illegal else flow.request.path,
            decision=decision.decision if decision else None,
            category=decision.category if decision else None,
            action=decision.action if decision else None,
            incident=decision.incident if decision else None,
            rule=decision.rule if decision and not illegal else None,
            status=flow.response.status_code if flow.response else None,
            error=error,
            # Content analysis (addons/content): the scores and the phrases that counted.
            **_content_of(flow),
        )

    def record(self, **fields: object) -> None:
        """One line for an event with no HTTP flow (a refused connection), same log."""
        if self.log is None:
            self._open()  # a connection can arrive before every addon's `running` has run
        if self.log is not None:
            self.log.write(**fields)

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._write(flow, flow.error.msg if flow.error else "error")
