"""Review: the block page's "request a review" form, answered by the proxy itself.

The form posts to ``REVIEW_PATH`` on the blocked host, so the post reaches
the proxy in regular and transparent mode alike, inside the same
(intercepted) connection as the block page. This addon sits after every
addon that can block: it remembers each block it sees answered (never an
illegal one) by its reference, and when a post to ``REVIEW_PATH`` arrives
it replaces whatever answer the post got with the reply page, after
appending the request to ``DATA_DIR/review-requests.jsonl`` off the event
loop. A post on an illegal block keeps the illegal block page.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from mitmproxy import http

from addons.blocking import ANSWERED
from addons.filter import DECISION, REFERENCE, decision_of
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from blocklists.normalise import BadURL, normalise_url
from proxy.blockpage import REVIEW_PATH
from proxy.decision import Decision
from proxy.review import (
    REVIEW_FILE,
    Blocked,
    Recent,
    ReviewRequest,
    append,
    clean_reason,
    reply_page,
)

log = logging.getLogger("schoolgate.review")


class Review:
    def __init__(self, loader: PolicyLoader) -> None:
        self.loader = loader
        self.recent = Recent()
        self.filed = 0

    def response(self, flow: http.HTTPFlow) -> None:
        """Remember what was blocked under each reference, for the form's post."""
        decision = decision_of(flow)
        reference = flow.metadata.get(REFERENCE)
        if decision is None or not decision.blocked or decision.illegal:
            return
        if not isinstance(reference, str) or flow.metadata.get("schoolgate.review"):
            return
        try:
            url: str | None = normalise_url(flow.request.pretty_url).entry
        except BadURL:
            url = None
        self.recent.remember(
            reference,
            Blocked(url, decision.category, decision.rule, flow.client_conn.peername[0]),
        )

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "POST" or flow.request.path.split("?", 1)[0] != REVIEW_PATH:
            return
        decision = decision_of(flow)
        if decision is not None and decision.illegal:
            return  # the illegal block page stands; nothing about it is ever filed
        identity = identity_of(flow)
        form = flow.request.urlencoded_form
        reference = form.get("reference", "")
        client_ip = flow.client_conn.peername[0]
        blocked = self.recent.get(reference)
        filed = blocked is not None and blocked.client_ip == client_ip and identity is not None
        if filed and blocked is not None and identity is not None:
            record = ReviewRequest(
                time=datetime.now(UTC).isoformat(timespec="seconds"),
                user=identity.user,
                group=identity.group,
                client_ip=client_ip,
                url=blocked.url,
                category=blocked.category,
                reason=clean_reason(form.get("reason", "")),
                reference=reference,
            )
            path = self.loader.filterset.settings.data_dir / REVIEW_FILE
            try:
                await asyncio.to_thread(append, path, record)
                self.filed += 1
            except OSError:
                log.exception("could not record review request %s", reference)
                filed = False
        flow.metadata[DECISION] = Decision(
            decision="allow",
            category=None,
            action="review_request",
            incident=None,
            incident_type=None,
            matched=None,
            rule="the block page's review form, answered by the proxy",
            group=identity.group if identity else "unknown",
            user=identity.user if identity else None,
        )
        flow.metadata[ANSWERED] = True
        flow.metadata["schoolgate.review"] = True
        flow.response = http.Response.make(
            200 if filed else 404,
            reply_page(
                school=self.loader.filterset.policy.school, reference=reference, filed=filed
            ),
            {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
        )
