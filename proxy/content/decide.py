"""The technician's decision on a learned entry, for the console and the CLI alike.

``confirm`` makes a learned page (or image) a block in its category for every
group; ``reject`` opens it and it is never analysed again. Either is one
change-control row naming the person, and one line appended to the learned
list, in the same transaction: a failed write rolls the row back with it.
The console and ``schoolgate content confirm/reject`` each prove the person
their own way and then call ``decide``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from blocklists.normalise import BadURL, normalise_entry
from proxy.content.learned import LearnedEntry, LearnedList
from proxy.content.phrases import CATEGORY_WORDS
from proxy.store import chain

Decision = Literal["confirm", "reject"]
STATES: dict[Decision, Literal["confirmed", "rejected"]] = {
    "confirm": "confirmed",
    "reject": "rejected",
}


class NotAnAddress(ValueError):
    """What was given is not a page address; ``str()`` is one line."""


class NotLearned(LookupError):
    """The address is not on the learned list; ``str()`` is one line."""


def find(learned: LearnedList, entry: str) -> LearnedEntry:
    """The learned entry for ``entry`` (normalised as list entries are), or one of the above."""
    try:
        key = normalise_entry(entry)
    except BadURL as exc:
        raise NotAnAddress(f"{entry!r} is not a page address: {exc}") from None
    found = learned.get(key)
    if found is None:
        raise NotLearned(f"{key} is not on the learned list")
    return found


def decide(
    s: Session,
    learned: LearnedList,
    found: LearnedEntry,
    decision: Decision,
    *,
    by: str,
    reason: str,
    now: datetime,
    proof: dict[str, object],
) -> LearnedEntry:
    """Record ``decision`` on ``found`` by ``by`` in change control and the learned list."""
    decided = replace(found, state=STATES[decision], by=by)
    details: dict[str, object] = {
        "entry": found.entry,
        "category": found.category,
        "score": found.score,
        "phrases": list(found.phrases),
        "kind": found.kind,
    }
    if found.page is not None:
        details["page"] = found.page
    chain.append(
        s,
        at=now,
        kind=f"content.{decision}",
        actor=by,
        subject=f"{found.entry} ({CATEGORY_WORDS.get(found.category, found.category)})",
        reason=reason,
        details={**details, **proof},
    )
    # After the row, inside the caller's transaction: if appending fails, the row goes too.
    learned.add(decided)
    return decided
