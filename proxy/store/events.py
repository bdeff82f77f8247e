"""Events the proxy records, and how each becomes rows in the store.

A hook builds an ``Event`` (JSON-able, with a unique id) and hands it to the
writer; ``apply_event`` turns it into rows inside the writer's transaction
and notes its id in ``applied_events``, so an event replayed twice (from
the spool after a crash, or a JSON-lines file read again after a restart)
is applied once. Events read from files get ids derived from their content
or reference, which is what makes re-reading those files harmless.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from blocklists.normalise import BadURL, normalise_entry
from proxy.store import chain, control
from proxy.store.models import AppliedEvent, Change, Override
from proxy.store.site import at_site, current_site

WITHHELD = "(withheld: illegal list)"


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Where it was raised: its rows are stamped with this site, whoever replays it.
    site: str = field(default_factory=current_site)

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "kind": self.kind, "at": self.at, "data": self.data, "site": self.site},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        raw = json.loads(line)
        return cls(
            kind=raw["kind"],
            data=raw["data"],
            at=raw["at"],
            id=raw["id"],
            site=raw.get("site") or current_site(),  # spooled before sites existed
        )

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- building events -----------------------------------------------------------------------


def policy_observed(text: str, source: str, how: str) -> Event:
    """The policy text the proxy has just put in force (at start or on a hot reload)."""
    return Event(
        "policy.observed", {"sha256": sha256(text), "text": text, "source": source, "how": how}
    )


def policy_refused(
    sha: str, source: str, problems: list[str], how: str, by: str | None = None, reason: str = ""
) -> Event:
    """A policy refused because it would weaken the illegal lists (``proxy.illegal``).

    The text is not kept: a refused local allow entry may be an address on an illegal list.
    """
    return Event(
        "policy.refused",
        {
            "sha256": sha,
            "source": source,
            "problems": problems,
            "how": how,
            "by": by,
            "reason": reason,
        },
    )


def review_request(row: dict[str, Any], illegal: bool) -> Event:
    """A line of ``review-requests.jsonl`` (the block page's form), keyed by its reference."""
    return Event("review.request", {**row, "illegal": illegal}, id=f"review:{row['reference']}")


def list_update(line: str) -> Event:
    """A line of ``list-updates.jsonl``, keyed by its content."""
    return Event("lists.update", json.loads(line), id=f"lists:{sha256(line.strip())[:40]}")


def sweep() -> Event:
    """Record the overrides that have reached their end."""
    return Event("overrides.sweep")


# --- applying them -------------------------------------------------------------------------


def _policy_observed(session: Session, event: Event) -> Change | None:
    data = event.data
    last = session.scalars(
        select(Change)
        .where(Change.kind.in_(["policy.apply", "policy.unattributed", "policy.baseline"]))
        .where(Change.site == current_site())  # each site has its own policy (its overlay)
        .order_by(Change.seq.desc())
        .limit(1)
    ).first()
    if last is None:
        return chain.append(
            session,
            at=event.when,
            kind="policy.baseline",
            subject=f"policy {data['source']}",
            details={"sha256": data["sha256"], "text": data["text"]},
        )
    previous = json.loads(last.details)
    if previous.get("sha256") == data["sha256"]:
        return None  # recorded already, by `policy apply` or an earlier observation
    diff = "".join(
        difflib.unified_diff(
            str(previous.get("text", "")).splitlines(keepends=True),
            str(data["text"]).splitlines(keepends=True),
            fromfile=f"recorded #{last.seq}",
            tofile="in force",
        )
    )
    return chain.append(
        session,
        at=event.when,
        kind="policy.unattributed",
        subject=f"policy {data['source']}",
        reason=f"picked up by {data['how']} without `schoolgate policy apply`",
        details={
            "sha256": data["sha256"],
            "previous_sha256": previous.get("sha256"),
            "diff": diff,
            "text": data["text"],
        },
    )


def _policy_refused(session: Session, event: Event) -> Change | None:
    data = event.data
    return chain.append(
        session,
        at=event.when,
        kind="policy.refuse",
        actor=data.get("by"),
        subject=f"policy {data['source']}: refused by {data['how']}, it would weaken "
        "the illegal lists; the policy in force stays",
        reason=data.get("reason") or None,
        details={"sha256": data["sha256"], "problems": data["problems"], "how": data["how"]},
    )


def _review_request(session: Session, event: Event) -> Change | None:
    data = event.data
    reference = str(data["reference"])
    if session.scalars(select(Override.id).where(Override.reference == reference)).first():
        return None
    requester = data.get("user") or f"ip:{data.get('client_ip') or 'unknown'}"
    when = datetime.fromisoformat(data["time"]) if data.get("time") else event.when
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    refusal: str | None = None
    what = ""
    if data.get("illegal"):
        refusal = "the page is in an illegal category, which can never be unblocked"
    else:
        try:
            what = normalise_entry(str(data.get("url") or ""))
        except BadURL as exc:
            refusal = f"not a URL: {exc}"
    if refusal is not None:
        return chain.append(
            session,
            at=when,
            kind="override.refuse",
            actor=requester,
            subject=WITHHELD if data.get("illegal") else str(data.get("url")),
            target=f"group:{data.get('group')}",
            reason=str(data.get("reason") or ""),
            details={"reference": reference, "refused": refusal},
        )
    group = data.get("group")
    control.request_override(
        session,
        what_kind="url" if "/" in what else "host",
        what=what,
        scope_kind="group" if group else "user",
        scope=str(group) if group else requester,
        starts=when,
        ends=None,
        reason=str(data.get("reason") or "").strip() or "(no reason given on the block page)",
        requested_by=requester,
        now=when,
        reference=reference,
        extra={"via": "block page", "category": data.get("category")},
    )
    return chain.head(session)


def _list_update(session: Session, event: Event) -> Change | None:
    data = event.data
    at = datetime.fromisoformat(data["at"]) if data.get("at") else event.when
    return chain.append(
        session,
        at=at,
        kind="lists.update",
        actor=data.get("by"),
        subject=f"source {data.get('source')}: {data.get('result')}",
        reason=data.get("reason"),
        details={
            k: data.get(k)
            # lists: entries per list [before, after]; problems: the lists that stopped it
            for k in ("source", "url", "result", "before", "after", "forced", "lists", "problems")
        },
    )


def _sweep(session: Session, event: Event) -> Change | None:
    if control.record_expiries(session, datetime.now(UTC)):
        return chain.head(session)
    return None


HANDLERS: dict[str, Callable[[Session, Event], Change | None]] = {
    "policy.observed": _policy_observed,
    "policy.refused": _policy_refused,
    "review.request": _review_request,
    "lists.update": _list_update,
    "overrides.sweep": _sweep,
}


# Kinds whose events only add rows of their own (incidents, searches) may also be
# applied a batch at a time, in a few statements for the whole batch.
BATCH_HANDLERS: dict[str, Callable[[Session, Sequence[Event]], None]] = {}


def apply_event(session: Session, event: Event) -> bool:
    """Apply one event inside the caller's transaction; False when it was applied before."""
    # Workers may hold the same event (they all read the same files): one at a time, so the
    # check below sees what another worker committed a moment ago.
    chain.lock(session)
    if session.get(AppliedEvent, event.id) is not None:
        return False
    _apply_new(session, event)
    return True


def apply_events(session: Session, events: Sequence[Event]) -> list[bool]:
    """Apply a batch inside the caller's transaction, as ``apply_event`` one by one would.

    One read finds the events applied before (False for those, and for a repeat
    within the batch); the kinds in ``BATCH_HANDLERS`` are applied together, in
    their order, each kind by one call; the rest one by one, in order. Kinds with
    a batch handler touch only tables of their own, so applying them after the
    others changes nothing. One row per event in ``applied_events``, in one INSERT.
    """
    for event in events:
        if event.kind not in HANDLERS:
            raise ValueError(f"unknown event kind {event.kind!r}")
    chain.lock(session)
    ids = list({event.id for event in events})
    seen: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        seen.update(
            session.scalars(select(AppliedEvent.event_id).where(AppliedEvent.event_id.in_(chunk)))
        )
    results: list[bool] = []
    batched: dict[str, list[Event]] = {}
    for event in events:
        if event.id in seen:
            results.append(False)
            continue
        seen.add(event.id)
        results.append(True)
        if event.kind in BATCH_HANDLERS:
            batched.setdefault(event.kind, []).append(event)
        else:
            _apply_new(session, event)
    if batched:
        now = datetime.now(UTC)
        for kind, group in batched.items():
            BATCH_HANDLERS[kind](session, group)
        session.execute(
            insert(AppliedEvent),
            [
                {"event_id": e.id, "applied_at": now, "change_seq": None}
                for group in batched.values()
                for e in group
            ],
        )
    return results


def _apply_new(session: Session, event: Event) -> None:
    handler = HANDLERS.get(event.kind)
    if handler is None:
        raise ValueError(f"unknown event kind {event.kind!r}")
    with at_site(event.site):
        change = handler(session, event)
    session.add(
        AppliedEvent(
            event_id=event.id,
            applied_at=datetime.now(UTC),
            change_seq=change.seq if change is not None else None,
        )
    )
    session.flush()
