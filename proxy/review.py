"""Review requests from the block page: remembered blocks, the record, the reply page.

The block page's form posts its reference and the user's reason. The proxy
remembers recent blocks by reference (``Recent``, bounded), so the record
holds the URL and category the proxy itself saw, never what a form claims.
Each request is one JSON line appended to ``DATA_DIR/review-requests.jsonl``
with ``time, user, group, client_ip, url, category, reason, reference``;
the change-control store ingests that file as override requests. Illegal
blocks are never remembered, so they can never be filed (their page has no
form either).
"""

from __future__ import annotations

import html
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

REVIEW_FILE = "review-requests.jsonl"
MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Blocked:
    """What the proxy blocked under one reference."""

    url: str | None
    category: str | None
    rule: str
    client_ip: str | None


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    time: str
    user: str | None
    group: str
    client_ip: str | None
    url: str | None
    category: str | None
    reason: str
    reference: str

    def json_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False) + "\n"


class Recent:
    """The last ``size`` blocks by reference (oldest forgotten first)."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[str, Blocked] = OrderedDict()

    def remember(self, reference: str, blocked: Blocked) -> None:
        self._items[reference] = blocked
        self._items.move_to_end(reference)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, reference: str) -> Blocked | None:
        return self._items.get(reference)


def clean_reason(text: str) -> str:
    """The user's reason on one line, without control characters, at most ``MAX_REASON``."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat[:MAX_REASON]


def append(path: Path, request: ReviewRequest) -> None:
    """Append one line with a single write, so concurrent writers never interleave lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = request.json_line().encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }}
main {{ max-width: 40rem; margin: 4rem auto; background: #fff; padding: 2rem 2.5rem;
border-radius: .5rem; border-top: .4rem solid #2e6b3a; }}
.ref {{ font-family: monospace; background: #eef1f4; padding: .2rem .5rem; }}</style>
</head><body><main><h1>{title}</h1>{body}<footer>{school} &middot; web filter</footer>
</main></body></html>
"""


def reply_page(*, school: str, reference: str, filed: bool) -> str:
    """What the user sees after posting the form: what happens next, or why nothing did."""
    if filed:
        title = "Your request has been sent"
        body = (
            "<p>The school's IT office will look at this page and the reason you gave. "
            "If it is needed for your work, a teacher can ask for it to be unblocked for a "
            "period of study; the headteacher approves such requests. Until then the page "
            "stays blocked.</p>"
            f'<p>Your reference is <span class="ref" id="reference">{html.escape(reference)}'
            "</span>. Quote it if you ask about this request.</p>"
        )
    else:
        title = "This request could not be sent"
        body = (
            "<p>The filter no longer remembers this block (or it was not yours). Go back, "
            "reload the blocked page and send the form again, or ask your teacher.</p>"
        )
    return _PAGE.format(title=html.escape(title), body=body, school=html.escape(school))
