"""The technician's learned-list page: what content analysis found, to confirm or reject.

Lists the entries of ``DATA_DIR/learned.jsonl`` (``proxy.content.learned``),
newest first: the page or image, the category in plain words, the score, the
phrases that counted (or the class the image detector saw), when, and for an
image the page that showed it. Confirm makes the entry a block in its
category for every group (as a local block entry would); reject opens it
and it is never analysed again. Each decision is recorded in change control
as the signed-in person (``content.confirm`` / ``content.reject``, as
``schoolgate content confirm/reject`` records it), and appended to the list,
which every worker reads within a second.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from blocklists.normalise import BadURL, normalise_entry
from proxy.console.requests import actor_details
from proxy.console.web import PER_PAGE, Page, checked_form, person, render, see_other, state_of
from proxy.content.learned import LEARNED_FILE, LearnedEntry, LearnedList
from proxy.content.phrases import CATEGORY_WORDS
from proxy.store import chain


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
    try:
        key = normalise_entry(str(form.get("entry", "")))
    except BadURL as exc:
        raise HTTPException(400, f"not a page address: {exc}") from None
    learned = _entries(request)
    found = learned.get(key)
    if found is None:
        raise HTTPException(404, "that address is not on the learned list")
    decided = replace(
        found, state="confirmed" if decision == "confirm" else "rejected", by=signed.person.name
    )
    now = state.now()
    with state.session() as s:
        chain.append(
            s,
            at=now,
            kind=f"content.{decision}",
            actor=signed.person.name,
            subject=f"{key} ({CATEGORY_WORDS.get(found.category, found.category)})",
            reason=reason,
            details={"entry": key, "category": found.category, "score": found.score,
                     "phrases": list(found.phrases), "kind": found.kind,
                     **actor_details(request)},
        )  # fmt: skip
        # Inside the transaction: a failed write rolls the change-log row back with it.
        learned.add(decided)
    return see_other(f"/learned?done={decided.state}")
