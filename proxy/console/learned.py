"""The technician's learned-list page: what content analysis found, to confirm or reject.

Lists the entries of ``DATA_DIR/learned.jsonl`` (``proxy.content.learned``),
newest first: the page or image, the category in plain words, the score, the
phrases that counted (or the class the image detector saw), when, and for an
image the page that showed it. Confirm makes the entry a block in its
category for every group (as a local block entry would); reject opens it
and it is never analysed again. Each decision is recorded in change control
as the signed-in person (``content.confirm`` / ``content.reject``, as
``schoolgate content confirm/reject`` records it), and appended to the list,
which every worker reads within a second; ``proxy.content.decide`` does both,
for the CLI too.
"""

from __future__ import annotations

from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from proxy.console.requests import actor_details
from proxy.console.web import PER_PAGE, Page, checked_form, person, render, see_other, state_of
from proxy.content import decide
from proxy.content.learned import LEARNED_FILE, LearnedEntry, LearnedList
from proxy.content.phrases import CATEGORY_WORDS


def _entries(request: Request) -> LearnedList:
    learned = LearnedList(state_of(request).fs.settings.data_dir / LEARNED_FILE)
    learned.refresh()
    return learned


def _when(entry: LearnedEntry) -> datetime | None:
    try:
        return datetime.fromisoformat(entry.at)
    except ValueError:
        return None


async def learned_page(request: Request) -> Response:
    signed = await person(request, "policy")
    everything = request.query_params.get("all") == "1"
    shown = sorted(
        (e for e in _entries(request).entries.values() if everything or e.state == "learned"),
        key=lambda e: e.at,
        reverse=True,
    )
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    start = (number - 1) * PER_PAGE
    page = Page(shown[start : start + PER_PAGE], number, len(shown) > start + PER_PAGE)
    return render(
        request,
        "learned.html",
        signed,
        page=page,
        everything=everything,
        words=CATEGORY_WORDS,
        when=_when,
        done=request.query_params.get("done"),
    )


async def learned_decide(request: Request) -> Response:
    signed = await person(request, "policy")
    form = await checked_form(request, signed)
    state = state_of(request)
    decision, reason = str(form.get("decision", "")), str(form.get("reason", "")).strip()
    if decision not in ("confirm", "reject"):
        raise HTTPException(400, "choose confirm or reject")
    if not reason:
        raise HTTPException(400, "say why: the reason is recorded for the governors")
    learned = _entries(request)
    try:
        found = decide.find(learned, str(form.get("entry", "")))
    except decide.NotAnAddress as exc:
        raise HTTPException(400, str(exc)) from None
    except decide.NotLearned as exc:
        raise HTTPException(404, str(exc)) from None
    with state.session() as s:
        decided = decide.decide(
            s,
            learned,
            found,
            "confirm" if decision == "confirm" else "reject",
            by=signed.person.name,
            reason=reason,
            now=state.now(),
            proof=actor_details(request),
        )
    return see_other(f"/learned?done={decided.state}")
