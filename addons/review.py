"""Review: the block page's "request a review" form, answered by the proxy itself.

The form posts to ``REVIEW_PATH`` on the blocked host, so the post reaches
the proxy in regular and transparent mode alike, inside the same
(intercepted) connection as the block page. The page's form is signed as
the page is made (``addons.pipeline.serve_block``, never an illegal one):
a token with the block's reference, URL, category, client address and user
(``proxy/review.py``). This addon sits after every addon that can block;
when a post to ``REVIEW_PATH`` arrives it checks the token (the same
reference, client address and user), appends the request to
``DATA_DIR/review-requests.jsonl`` off the event loop, and answers with a
page saying what happens next, in place of whatever the post would have
got. A post on an illegal block keeps the illegal block page.

A token files once (a replay is answered 409 and files nothing), and one
client address files at most ``REVIEWS_PER_HOUR`` requests (then 429); the
limit is taken before the file is written, so a burst of posts cannot slip
past it while earlier ones are being written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from mitmproxy import http

from addons import facts
from addons.facts import ANSWERED, DECISION, decision_of, identity_of
from proxy.blockpage import REVIEW_PATH
from proxy.decision import Decision
from proxy.review import (
    REVIEW_FILE,
    Outcome,
    RateLimit,
    ReviewRequest,
    append,
    claim,
    clean_reason,
    prune_claims,
    reply_page,
    signing_key,
    unclaim,
    verify,
)

log = logging.getLogger("schoolgate.review")


class Review:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.filed = 0
        self.rejected = 0
        self.limit = RateLimit()
        self._pruned = 0.0

    def _signing_key(self) -> bytes:
        return signing_key(self.loader.filterset.settings.data_dir)

    def running(self) -> None:
        self._signing_key()  # made or read now, not on the first block page

    def _file_once(self, token: str, record: ReviewRequest) -> Outcome:
        """Off the event loop: claim the token, then append the request (once per token)."""
        data_dir = self.loader.filterset.settings.data_dir
        now = time.time()
        if now - self._pruned > 3600:
            self._pruned = now
            prune_claims(data_dir, now)
        if not claim(data_dir, token):
            return "used"
        try:
            append(data_dir / REVIEW_FILE, record)
        except OSError:
            unclaim(data_dir, token)  # nothing was filed: the same form may be sent again
            raise
        return "filed"

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "POST" or flow.request.path.split("?", 1)[0] != REVIEW_PATH:
            return
        decision = decision_of(flow)
        if decision is not None and decision.illegal:
            return  # the illegal block page stands; nothing about it is ever filed
        if flow.response is not None and (decision is None or not decision.blocked):
            return  # answered by an earlier addon for another reason (a login challenge)
        identity = identity_of(flow)
        form = flow.request.urlencoded_form
        client_ip = flow.client_conn.peername[0]
        token = form.get("token", "")
        vouched = verify(self._signing_key(), token, int(time.time()))
        reference = form.get("reference", "")
        outcome: Outcome = "expired"
        if (
            vouched is not None
            and vouched[0] == reference
            and vouched[1].client_ip == client_ip
            and identity is not None
            and vouched[1].user == identity.user
        ):
            blocked = vouched[1]
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
            if not self.limit.take(client_ip, time.monotonic()):
                outcome = "too_many"
            else:
                try:
                    outcome = await asyncio.to_thread(self._file_once, token, record)
                except OSError:
                    log.exception("could not record review request %s", reference)
                if outcome != "filed":
                    self.limit.give_back(client_ip)
        filed = outcome == "filed"
        if filed:
            self.filed += 1
        else:
            self.rejected += 1
        flow.metadata[DECISION] = Decision.allow(
            identity,
            "the block page's review form, answered by the proxy",
            by="review",
            action="review_request",
        )
        flow.metadata[ANSWERED] = True
        flow.response = http.Response.make(
            {"filed": 200, "used": 409, "too_many": 429}.get(outcome, 404),
            reply_page(
                school=self.loader.filterset.policy.school,
                reference=reference,
                filed=filed,
                why=outcome,
            ),
            {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
        )
