"""Downloads: block file kinds by what they are, and files over a group's size limit.

Per group, ``downloads: {block: [executable, installer, script, archive], max_mb: N}``.
The core (``proxy/downloads.py``) says what a body is from its magic bytes,
its content type and its file name. Three paths, chosen at the response
headers:

1. The headers decide (``Content-Length`` over the limit, a blocked content
   type or file name): the user gets the block page at once; the origin's
   body is read and dropped, never forwarded or held in memory.
2. A body of known length up to ``BUFFER_BYTES`` that mitmproxy holds (it is
   not over ``stream_large_bodies``, ``addons/limits.py``): the ``response``
   hook sniffs the decoded first bytes, so a renamed ``.exe`` still gets the
   block page.
3. Anything else (no length, chunked, or large): the body streams through a
   ``StreamGuard`` that holds back the first bytes until it can sniff them
   and counts as it goes. A hit there comes after the headers have gone,
   so the transfer is cut: the browser reports a failed download, never a
   complete file. Live feeds (server-sent events, MJPEG) are left alone:
   holding their first bytes back would stall them, and no browser saves one.

Each block is logged in the access log with the rule that says why. For
groups with kinds to block, requests ask only for gzip or deflate, the
encodings a streamed body can be sniffed through.

Failure policy: an exception while deciding reaches the pipeline, which
blocks the download: the block page at the headers, or the transfer cut
once a streamed body has begun (``addons/pipeline.py``).
"""

from __future__ import annotations

import contextlib
import logging

from mitmproxy import exceptions, http

from addons import facts
from addons.facts import DECISION, answered, answered_early, identity_of
from addons.pipeline import serve_at_headers, serve_block
from proxy.decision import Decision
from proxy.downloads import (
    SNIFF_BYTES,
    Rules,
    StreamGuard,
    Verdict,
    check_body,
    check_headers,
    filename_of,
)

BUFFER_BYTES = 8 * 1024 * 1024
# Long-lived feeds a browser reads as they come (server-sent events, MJPEG cameras).
LIVE_STREAMS = frozenset({"text/event-stream", "multipart/x-mixed-replace"})
BLOCKED_PAGE = "schoolgate.downloads.page"
SNIFF = "schoolgate.downloads.sniff"
log = logging.getLogger("schoolgate.downloads")


class Downloads:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.blocked = 0

    def _rules(self, flow: http.HTTPFlow) -> Rules | None:
        identity = identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity")
        group = self.loader.filterset.policy.groups[identity.group]
        rules = Rules.of(group.downloads.block, group.downloads.max_mb)
        return rules if rules.active else None

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered_early(flow):
            return
        rules = self._rules(flow)
        if rules is not None and rules.kinds and "accept-encoding" in flow.request.headers:
            flow.request.headers["accept-encoding"] = "gzip, deflate"

    def _verdict_rule(self, flow: http.HTTPFlow, verdict: Verdict) -> str:
        identity = identity_of(flow)
        return f"{verdict.describe()} for group {identity.group if identity else 'unknown'}"

    def _page(self, flow: http.HTTPFlow, verdict: Verdict) -> http.Response:
        self.blocked += 1
        decision = Decision.block(
            identity_of(flow), self._verdict_rule(flow, verdict), by="downloads"
        )
        reason = (
            "This download is larger than the school allows."
            if verdict.kind == "too_large"
            else f"The school's filter does not allow downloading this kind of file "
            f"({verdict.kind}: {verdict.what})."
        )
        response = serve_block(self.loader, flow, decision, reason)
        flow.metadata[BLOCKED_PAGE] = response.content
        log.info("download blocked: %s", decision.rule)
        return response

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow) or flow.response is None:
            return
        rules = self._rules(flow)
        if rules is None:
            return
        response = flow.response
        length_text = response.headers.get("content-length", "")
        length = int(length_text) if length_text.strip().isdigit() else None
        name = filename_of(response.headers.get("content-disposition"), flow.request.path)
        verdict = check_headers(
            rules,
            content_type=response.headers.get("content-type"),
            content_disposition=response.headers.get("content-disposition"),
            path=flow.request.path,
            content_length=length,
        )
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if verdict is not None:
            self._replace_now(flow, verdict)
        elif mime in LIVE_STREAMS:
            return  # a live feed, never saved as a file: holding bytes back would stall it
        elif length is not None and (
            not rules.kinds or (length <= BUFFER_BYTES and not response.stream)
        ):
            # Held whole (mitmproxy streams bodies over stream_large_bodies before this
            # hook: such a body is never held, so it is sniffed on the stream below).
            if rules.kinds:
                flow.metadata[SNIFF] = (rules, name)
        else:
            guard = StreamGuard(
                rules,
                name,
                response.headers.get("content-encoding"),
                lambda verdict: self._cut(flow, verdict),
            )
            response.stream = guard.feed

    def _replace_now(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        serve_at_headers(flow, self._page(flow, verdict))

    def _cut(self, flow: http.HTTPFlow, verdict: Verdict) -> None:
        """A streamed body turned out to be blocked: nothing more goes on, and the flow dies."""
        self.blocked += 1
        flow.metadata[DECISION] = Decision.block(
            identity_of(flow), self._verdict_rule(flow, verdict) + " (transfer cut)", by="downloads"
        )
        log.info("download cut: %s", flow.metadata[DECISION].rule)
        with contextlib.suppress(exceptions.ControlException):
            flow.kill()  # already ended: nothing more is forwarded either way

    def response(self, flow: http.HTTPFlow) -> None:
        page = flow.metadata.get(BLOCKED_PAGE)
        if isinstance(page, bytes) and flow.response is not None:
            # A body-less origin response overwrote the page's content: put it back.
            if not flow.response.content:
                flow.response.content = page
            return
        sniff = flow.metadata.pop(SNIFF, None)
        if sniff is None or flow.response is None:
            return
        rules, name = sniff
        head = (flow.response.get_content(strict=False) or b"")[:SNIFF_BYTES]
        verdict = check_body(rules, head, name)
        if verdict is not None:
            flow.response = self._page(flow, verdict)
