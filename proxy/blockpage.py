"""The block page a user sees, and the reference that ties it to the logs.

It says which category blocked the page, gives a reference to quote, and
says how to ask for a review. For an illegal category it uses the IWF-style
wording and shows no URL, host or entry: reviewers see that it matched,
not where.
"""

from __future__ import annotations

import html
import secrets
from importlib import resources
from string import Template
from urllib.parse import urlencode

from proxy.decision import Decision

_TEMPLATE = Template(
    resources.files("proxy").joinpath("templates/block.html").read_text(encoding="utf-8")
)

ILLEGAL_TEXT = (
    "Access to this page has been blocked because it may contain images of child sexual "
    "abuse, as identified by the Internet Watch Foundation (IWF). Attempting to view such "
    "content is a criminal offence. This attempt has been recorded and reported to the "
    "school's designated safeguarding lead."
)
# The CTIRU slot (proxy/illegal.py) holds police-assessed terrorist content, not IWF images.
TERRORISM_TEXT = (
    "Access to this page has been blocked because it may contain unlawful terrorist "
    "content, as assessed by the police. Viewing or sharing such content can be a criminal "
    "offence. This attempt has been recorded and reported to the school's designated "
    "safeguarding lead."
)


def illegal_text(decision: Decision) -> str:
    """The wording for an illegal hit: the terrorism list's own, else the IWF's."""
    source = decision.matched.list.split("/", 1)[0] if decision.matched else None
    return (
        TERRORISM_TEXT
        if "ctiru" in (source, decision.category) or decision.category == "terrorism"
        else ILLEGAL_TEXT
    )


def new_reference() -> str:
    """A short reference a user can read out to the IT office (``SG-`` and 8 hex digits)."""
    return "SG-" + secrets.token_hex(4).upper()


REVIEW_PATH = "/_schoolgate/review"

_REVIEW_FORM = """\
<form method="post" action="{action}" class="review" id="review">
  <h2>Request a review</h2>
  <input type="hidden" name="reference" value="{reference}">
  <input type="hidden" name="token" value="{token}">
  <label for="reason">Why do you need this page? (for example, the lesson it is for)</label>
  <textarea id="reason" name="reason" rows="3" maxlength="1000" required></textarea>
  <button type="submit">Send the request</button>
</form>"""


def render(
    decision: Decision,
    *,
    school: str,
    reference: str,
    url: str | None,
    reason: str | None = None,
    console_url: str | None = None,
    token: str = "",
) -> str:
    """The HTML of the block page for one decision.

    ``reason`` replaces the category sentence for blocks that are not about a
    category (a download, a search engine that cannot be locked). Every page
    but the illegal one carries the "request a review" form, which posts to
    ``REVIEW_PATH`` on the same host so that it reaches the proxy in every mode,
    and, when the settings give ``console_url``, a link for staff to the console's
    request form with the address and reference filled in. ``token`` is the form's
    signed token (``proxy.review.sign``), made by the caller for this very block, so the
    page goes out signed; no one edits its bytes afterwards.
    """
    if decision.illegal:
        title = "This page is blocked"
        reason = illegal_text(decision)
        review = (
            "If you think you reached this page by mistake, tell a member of staff you trust. "
            "Do not try to visit it again."
        )
        shown_url = ""
    else:
        category = decision.category or "not allowed for your group"
        title = "This site is blocked"
        reason = (
            html.escape(reason)
            if reason
            else (
                f"The school's web filter blocked this page: category <strong>"
                f"{html.escape(category)}</strong>."
            )
        )
        if decision.incident:
            reason += " This request has been recorded."
        review = (
            "If you need this page for your work, ask your teacher or the IT office to review it, "
            "quoting the reference below. Staff can ask for a site to be unblocked for a period "
            "of study; the headteacher approves such requests."
        )
        shown_url = f"<p class=url>{html.escape(url)}</p>" if url else ""
    form = (
        ""
        if decision.illegal
        else _REVIEW_FORM.format(
            action=REVIEW_PATH, reference=html.escape(reference), token=html.escape(token)
        )
    )
    if console_url and not decision.illegal:
        query = urlencode({"url": url or "", "reference": reference})
        link = f"{console_url.rstrip('/')}/request?{query}"
        form += (
            f'\n<p class="staff">Staff: <a id="console-request" href="{html.escape(link)}">'
            "ask for this site to be unblocked in the console</a> (you sign in first).</p>"
        )
    return _TEMPLATE.substitute(
        title=html.escape(title),
        school=html.escape(school),
        reason=reason,
        review=html.escape(review),
        reference=html.escape(reference),
        url=shown_url,
        form=form,
    )
