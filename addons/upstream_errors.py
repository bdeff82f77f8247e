"""UpstreamErrors: a page in the school's name when the site itself cannot be reached.

When the upstream connection fails (the name does not resolve, the server
refuses, its TLS certificate is not valid, it does not answer), mitmproxy
answers the browser with its own bare "502 Bad Gateway" page, built by
``format_error`` in ``mitmproxy.proxy.layers.http._base`` and imported by
name into its HTTP/1 and HTTP/2 layers. Neither the ``error`` hook nor any
other lets an addon answer instead: the page is written after the hook,
from the failure's message alone. So ``load`` replaces ``format_error`` in
those two modules, once per process, with one that renders
``proxy/errorpage.py``'s page for 502 and 504 (and mitmproxy's own page for
anything else), and the ``error`` hook, which runs just before with the
flow, leaves the flow's reference under its error message for the page to
quote, so the page's reference is the one in the access log.

Two failures with the identical message at the same moment could swap
their references; the page's text is right either way.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from mitmproxy import http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.layers.http import _base, _http1, _http2

from addons import facts
from proxy import blockpage, errorpage

log = logging.getLogger("schoolgate.upstream")
_BRANDED = frozenset({502, 504})
_original: Callable[[int, str], bytes] = _base.format_error
_active: list[UpstreamErrors] = []  # the addon whose school and references the page uses


def format_error(status_code: int, message: str) -> bytes:
    """mitmproxy's error page, or the school's page for an upstream failure."""
    if not _active or status_code not in _BRANDED:
        return _original(status_code, message)
    addon = _active[-1]
    try:
        return addon.page(message).encode("utf-8")
    except Exception:  # the page must never cost the user the error itself
        log.exception("upstream error page failed; mitmproxy's page is sent")
        return _original(status_code, message)


class UpstreamErrors:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.pages = 0
        self._references: OrderedDict[str, str] = OrderedDict()

    def load(self, loader: Loader) -> None:
        _active[:] = [self]
        # Both layers imported it by name, so their own references are replaced.
        _http1.format_error = format_error  # type: ignore[attr-defined]
        _http2.format_error = format_error  # type: ignore[attr-defined]

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.error is None or flow.response is not None:
            return
        reference = facts.reference_of(flow) or blockpage.new_reference()
        self._references[flow.error.msg] = str(reference)
        while len(self._references) > 256:
            self._references.popitem(last=False)

    def page(self, message: str) -> str:
        reference = self._references.pop(message, None) or blockpage.new_reference()
        self.pages += 1
        log.info("upstream failure page %s: %s", reference, errorpage.classify(message).kind)
        return errorpage.render(
            message, school=self.loader.filterset.policy.school, reference=reference
        )
