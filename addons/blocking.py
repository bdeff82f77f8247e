"""Blocking from the protection addons: one way to build the decision and serve the page.

The filter decides on categories; safe search, downloads and the
circumvention checks block for reasons of their own. They all answer with
the same block page and put the same ``Decision`` in the flow's metadata,
so the audit logs them and the review form works for them alike.
"""

from __future__ import annotations

from mitmproxy import http

from addons.filter import DECISION, REFERENCE, decision_of
from addons.policyload import PolicyLoader
from blocklists.normalise import BadURL, normalise_url
from proxy import blockpage
from proxy.decision import Decision
from proxy.identity import Identity

# Set on a flow the proxy answered itself (block page, review page): later addons leave it be.
ANSWERED = "schoolgate.answered"


def answered(flow: http.HTTPFlow) -> bool:
    """Whether the proxy, not the origin, is answering this flow."""
    decision = decision_of(flow)
    return bool(flow.metadata.get(ANSWERED)) or (decision is not None and decision.blocked)


def answered_early(flow: http.HTTPFlow) -> bool:
    """For request hooks: ``answered``, or an earlier addon set a response (a login challenge).

    Such a flow is marked, so the response hooks leave it alone too.
    """
    if flow.response is not None:
        flow.metadata[ANSWERED] = True
        return True
    return answered(flow)


def protection_block(
    identity: Identity | None,
    rule: str,
    *,
    incident_type: str | None = None,
    category: str | None = None,
) -> Decision:
    """A block by a protection; with ``incident_type`` it is unacceptable and raises one."""
    return Decision(
        decision="block",
        category=category,
        action="unacceptable" if incident_type else "blocked",
        incident="unacceptable" if incident_type else None,
        incident_type=incident_type,
        matched=None,
        rule=rule,
        group=identity.group if identity else "unknown",
        user=identity.user if identity else None,
    )


def block_page(
    loader: PolicyLoader, flow: http.HTTPFlow, decision: Decision, reason: str
) -> http.Response:
    """The block page for ``decision``, with ``reason`` in place of the category sentence."""
    reference = flow.metadata.get(REFERENCE)
    if not isinstance(reference, str):
        reference = blockpage.new_reference()
        flow.metadata[REFERENCE] = reference
    try:
        url: str | None = normalise_url(flow.request.pretty_url).entry
    except BadURL:
        url = None
    page = blockpage.render(
        decision,
        school=loader.filterset.policy.school,
        reference=reference,
        url=url,
        reason=reason,
        console_url=loader.filterset.settings.console_url,
    )
    return http.Response.make(
        403,
        page,
        {
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Schoolgate-Reference": reference,
        },
    )


def serve_block(loader: PolicyLoader, flow: http.HTTPFlow, decision: Decision, reason: str) -> None:
    """Answer ``flow`` with the block page and record why."""
    flow.metadata[DECISION] = decision
    flow.metadata[ANSWERED] = True
    flow.response = block_page(loader, flow, decision, reason)
