"""ContentAnalysis: score the text of the pages a group reads, and block what crosses the line.

For a group whose policy has ``content:`` (``analyse: [pages]``), an allowed
HTML or plain-text response is held (up to ``schoolgate_content_hold_kb``),
decoded (gzip, deflate, br, zstd; the page's charset) by mitmproxy, reduced
to the words a reader sees (``proxy.content.extract``) and scored against
the phrase lists (``proxy.content.phrases``). A category whose score reaches
the group's threshold replaces the page with the block page, which says in
plain words what the page looked like and never the phrases; the scores and
the phrases that counted go in ``flow.metadata[CONTENT]`` for the access log.
With ``action: log`` nothing is blocked: the scores are only recorded.

Failure policy: an error while scoring blocks the page (the pipeline's rule
for every request-path hook), since "could not read it" must not mean
"allowed" for the groups that asked for analysis. A response larger than the
hold bound, or already streamed, is passed unscored and counted in the log
(``content: "unscored: too large"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from addons.blocking import answered, protection_block, serve_block
from addons.identify import identity_of
from addons.policyload import PolicyLoader
from proxy.content.extract import page_text
from proxy.content.phrases import CATEGORY_WORDS, Scores
from proxy.policy import ContentRule

log = logging.getLogger("schoolgate.content")

# What was scored for the access log: a ContentVerdict.
CONTENT = "schoolgate.content"
_HOLD = "schoolgate.content_hold"
TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})


@dataclass(frozen=True, slots=True)
class ContentVerdict:
    """The scores of one page and what they led to (``blocked``, ``logged``, ``passed``)."""

    outcome: str
    scores: dict[str, int]
    phrases: tuple[str, ...]
    category: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "scores": self.scores,
            "phrases": list(self.phrases),
            "category": self.category,
        }


def _rule_for(loader: PolicyLoader, flow: http.HTTPFlow) -> ContentRule | None:
    identity = identity_of(flow)
    if identity is None:
        return None
    group = loader.filterset.policy.groups.get(identity.group)
    if group is None or group.content is None or "pages" not in group.content.analyse:
        return None
    return group.content


class ContentAnalysis:
    def __init__(self, loader: PolicyLoader) -> None:
        self.loader = loader
        self.scored = 0
        self.blocked = 0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_content_hold_kb",
            int,
            2048,
            "Pages up to this size are held and scored before they are sent (content analysis).",
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow) or flow.response is None or flow.response.stream:
            return
        if _rule_for(self.loader, flow) is None:
            return
        mime = flow.response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if mime not in TEXT_TYPES:
            return
        length = flow.response.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > ctx.options.schoolgate_content_hold_kb * 1024:
            flow.metadata[CONTENT] = ContentVerdict("unscored: too large", {}, ())
            return
        flow.metadata[_HOLD] = mime

    def response(self, flow: http.HTTPFlow) -> None:
        mime = flow.metadata.pop(_HOLD, None)
        if mime is None or flow.response is None or answered(flow):
            return
        rule = _rule_for(self.loader, flow)
        scorer = self.loader.filterset.policy.content
        if rule is None or scorer is None:
            return
        raw = flow.response.raw_content
        if raw is not None and len(raw) > ctx.options.schoolgate_content_hold_kb * 1024:
            # A chunked body with no Content-Length: too large to hold once read.
            flow.metadata[CONTENT] = ContentVerdict("unscored: too large", {}, ())
            return
        try:
            scores = scorer.score(page_text(flow.response.get_text(strict=False) or "", mime))
        except Exception:
            # Could not read it must not mean allowed, for the groups that asked for analysis.
            log.exception("content analysis failed; blocking the page")
            decision = protection_block(identity_of(flow), "content analysis failed")
            serve_block(self.loader, flow, decision, "This page could not be checked.")
            return
        self.scored += 1
        self._act(flow, rule, scores)

    def _act(self, flow: http.HTTPFlow, rule: ContentRule, scores: Scores) -> None:
        crossed = scores.crossed(rule.threshold_for())
        if not crossed:
            flow.metadata[CONTENT] = ContentVerdict(
                "passed", scores.by_category, tuple(h.phrase for h in scores.hits[:10])
            )
            return
        category, score = crossed[0]
        phrases = tuple(hit.phrase for hit in scores.phrases_for(category)[:10])
        if rule.action == "log":
            flow.metadata[CONTENT] = ContentVerdict("logged", scores.by_category, phrases, category)
            return
        flow.metadata[CONTENT] = ContentVerdict("blocked", scores.by_category, phrases, category)
        self.blocked += 1
        words = CATEGORY_WORDS[category]
        threshold = rule.threshold_for()[category]
        decision = protection_block(
            identity_of(flow),
            f"content analysis: the page's text scored {score} for {words} "
            f"(the group's threshold is {threshold})",
            category=category,
        )
        serve_block(
            self.loader,
            flow,
            decision,
            f"This page was blocked because its content looked like {words}.",
        )
