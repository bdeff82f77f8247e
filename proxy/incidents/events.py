"""Incident events: what the proxy hands the store when someone reaches for bad content.

An event is built on the request path from the decision, so it must cost
no I/O. For an illegal hit the URL is replaced by its keyed hash here,
before the event is queued or spooled to disk: the address never leaves
the request. ``rolls_into`` is the roll-up rule the store applies: hits by
the same person on the same category and severity within a window add to
one open incident (count, first and last time) instead of flooding the log.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from proxy.decision import Decision
from proxy.identity import Identity
from proxy.incidents.escalation import Escalation
from proxy.incidents.keyedhash import url_hash

Severity = Literal["illegal", "unacceptable", "concerning"]
SEVERITIES: tuple[Severity, ...] = ("illegal", "unacceptable", "concerning")
IWF_NOTICE = "matched the IWF list — do not visit, refer to the police"
CTIRU_NOTICE = (
    "matched the police's CTIRU list of terrorist content — do not visit, refer to the police"
)
# Which list an illegal hit matched, by its source, or else by the category proxy/illegal.py
# puts that source's lists in (a source may have another name).
_NOTICES = {"iwf": IWF_NOTICE, "ctiru": CTIRU_NOTICE}
_NOTICE_BY_CATEGORY = {"child_abuse": IWF_NOTICE, "terrorism": CTIRU_NOTICE}


def illegal_notice(list_name: str | None, category: str | None = None) -> str:
    """What an illegal hit matched, in words: the right list, never the address."""
    source = (list_name or "").split("/", 1)[0]
    found = _NOTICES.get(source) or _NOTICE_BY_CATEGORY.get(category or "")
    if found:
        return found
    named = f" ({source})" if source else ""
    return f"matched an illegal-content list{named} — do not visit, refer to the police"


ROLLUP_WINDOW = timedelta(minutes=30)
CONCERNING_SEARCH = "concerning_search"


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """One hit, as recorded; ``url`` is None (and ``url_hash`` set) for an illegal hit."""

    event_id: str
    at: datetime
    user: str | None
    group: str
    client_ip: str | None
    device: str | None
    category: str
    incident_type: str
    severity: Severity
    url: str | None
    url_hash: str | None
    list_name: str | None
    reference: str | None
    search_engine: str | None = None
    search_query: str | None = None
    matched_term: str | None = None
    # The escalation table's recommended actions, as (key, label), fixed when raised.
    actions: tuple[tuple[str, str], ...] = ()
    # The site it was raised at, filled from its store event when applied (proxy/store/site.py).
    site: str | None = None

    @property
    def subject(self) -> str:
        """Whose incident it is: the user, or the address when nobody logged in."""
        return self.user if self.user else f"ip:{self.client_ip or 'unknown'}"

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentEvent:
        values = _known_values(cls, data)
        values["actions"] = tuple((str(k), str(v)) for k, v in values.get("actions", ()))
        event = cls(**values)
        if event.severity == "illegal" and event.url is not None:
            raise ValueError("an illegal incident event must not carry its URL")
        return event


def from_decision(
    decision: Decision,
    identity: Identity,
    canonical_url: str,
    when: datetime,
    key: bytes,
    reference: str | None = None,
    escalation: Escalation | None = None,
) -> IncidentEvent | None:
    """The event a decision raises, or None when it raises no incident."""
    if decision.incident is None or decision.category is None:
        return None
    illegal = decision.incident == "illegal"
    incident_type = decision.incident_type or ("illegal" if illegal else "unacceptable")
    return IncidentEvent(
        event_id=uuid.uuid4().hex,
        at=when,
        user=identity.user,
        group=identity.group,
        client_ip=identity.ip,
        device=identity.device,
        category=decision.category,
        incident_type=incident_type,
        severity="illegal" if illegal else "unacceptable",
        url=None if illegal else canonical_url,
        url_hash=url_hash(key, canonical_url) if illegal else None,
        list_name=decision.matched.list if decision.matched else None,
        reference=reference,
        actions=_actions(escalation, incident_type, identity.group),
    )


def _actions(
    escalation: Escalation | None, incident_type: str, group: str
) -> tuple[tuple[str, str], ...]:
    if escalation is None:
        return ()
    return tuple((a.key, a.label) for a in escalation.actions_for(incident_type, group))


def concerning_search(
    identity: Identity,
    engine: str,
    query: str,
    term_category: str,
    term: str,
    when: datetime,
    reference: str | None = None,
    escalation: Escalation | None = None,
) -> IncidentEvent:
    """The event for a search that contains a concerning term."""
    return IncidentEvent(
        event_id=uuid.uuid4().hex,
        at=when,
        user=identity.user,
        group=identity.group,
        client_ip=identity.ip,
        device=identity.device,
        category=term_category,
        incident_type=CONCERNING_SEARCH,
        severity="concerning",
        url=None,
        url_hash=None,
        list_name=None,
        reference=reference,
        search_engine=engine,
        search_query=query,
        matched_term=term,
        actions=_actions(escalation, CONCERNING_SEARCH, identity.group),
    )


def rolls_into(last_seen: datetime, closed: bool, at: datetime, window: timedelta) -> bool:
    """Whether a hit at ``at`` adds to an incident last seen at ``last_seen``.

    Only an incident still open takes more hits, and only within ``window``
    of its last hit (a hit slightly out of order, before ``last_seen``, also
    counts).
    """
    if closed:
        return False
    return at - last_seen <= window


@dataclass(frozen=True, slots=True)
class SearchEvent:
    """A search query seen at a search engine, with who searched and whether it concerns."""

    event_id: str
    at: datetime
    user: str | None
    group: str
    client_ip: str | None
    engine: str
    query: str
    concerning: str | None

    def as_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchEvent:
        return cls(**_known_values(cls, data))


def search_event(
    identity: Identity, engine: str, query: str, concerning: str | None, when: datetime
) -> SearchEvent:
    return SearchEvent(
        event_id=uuid.uuid4().hex,
        at=when,
        user=identity.user,
        group=identity.group,
        client_ip=identity.ip,
        engine=engine,
        query=query,
        concerning=concerning,
    )


def _as_dict(event: IncidentEvent | SearchEvent) -> dict[str, Any]:
    """An event as the spool stores it: its fields, with the time in ISO 8601."""
    out = asdict(event)
    out["at"] = event.at.isoformat()
    return out


def _known_values(cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` found in a spooled event (others ignored), its time parsed."""
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    values["at"] = datetime.fromisoformat(values["at"])
    return values
