"""The decision: may this person, at this time, see this URL?

``decide`` is a pure function: the identity, the URL, what the lists
matched and the time are all arguments, so tests need no clock and
``schoolgate explain`` answers with exactly what the proxy does.

Precedence, first that applies wins: illegal categories; the school's local
block entries; its local allow entries; the group's action for the matched
categories (the strictest wins when several match); the group's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from blocklists.index import Hit
from blocklists.normalise import CanonicalURL
from proxy.identity import Identity
from proxy.policy import LOCAL_ALLOW, LOCAL_BLOCK_PREFIX, Action, Group, Policy

WITHHELD = "(withheld: illegal list)"
_STRICTNESS = {"acceptable": 0, "blocked": 1, "unacceptable": 2}


@dataclass(frozen=True, slots=True)
class Matched:
    list: str
    entry: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome and every reason for it."""

    decision: Literal["allow", "block"]
    category: str | None
    action: str
    incident: Literal["illegal", "unacceptable"] | None
    incident_type: str | None
    matched: Matched | None
    rule: str
    group: str
    user: str | None

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    @property
    def illegal(self) -> bool:
        return self.incident == "illegal"

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "category": self.category,
            "action": self.action,
            "incident": self.incident,
            "incident_type": self.incident_type,
            "matched": {"list": self.matched.list, "entry": self.matched.entry}
            if self.matched
            else None,
            "rule": self.rule,
            "group": self.group,
            "user": self.user,
        }


def _outcome(action: Action, identity: Identity, when: datetime) -> tuple[str, str]:
    """(acceptable|blocked|unacceptable, why) for one action now."""
    if action.kind == "acceptable_at":
        for schedule in action.schedules:
            if schedule.contains(when):
                return "acceptable", f"inside {schedule.describe()}"
        names = ", ".join(s.describe() for s in action.schedules)
        return action.otherwise, f"outside {names}"
    if action.kind == "acceptable_for":
        if identity.user is not None and identity.user in action.users:
            return "acceptable", f"{identity.user} is nominated"
        return action.otherwise, f"{identity.user or 'this user'} is not nominated"
    return action.kind, ""


def _categorised(policy: Policy, hits: Sequence[Hit]) -> list[tuple[str, Hit]]:
    found = []
    for hit in hits:
        for category in policy.list_categories.get(hit.list, ()):
            found.append((category, hit))
    return found


def _block(
    policy: Policy,
    identity: Identity,
    category: str,
    hit: Hit,
    action: str,
    rule: str,
    unacceptable: bool,
) -> Decision:
    cat = policy.categories[category]
    return Decision(
        decision="block",
        category=category,
        action=action,
        incident="unacceptable" if unacceptable else None,
        incident_type=cat.incident if unacceptable else None,
        matched=Matched(hit.list, hit.entry),
        rule=rule,
        group=identity.group,
        user=identity.user,
    )


def decide(
    policy: Policy,
    identity: Identity,
    url: CanonicalURL | None,
    hits: Sequence[Hit],
    when: datetime,
) -> Decision:
    """Decide for one request; ``url`` is None when only the host is known (CONNECT, SNI)."""
    del url  # the hits already carry what the URL matched; kept for callers' symmetry
    local_time = when.astimezone(policy.timezone)
    group: Group = policy.groups[identity.group]
    categorised = _categorised(policy, hits)

    for category, hit in categorised:
        cat = policy.categories[category]
        if cat.illegal:
            return Decision(
                decision="block",
                category=category,
                action="unacceptable",
                incident="illegal",
                incident_type=cat.incident or "illegal",
                matched=Matched(hit.list, WITHHELD),
                rule=f"category {category} is illegal: blocked for everyone",
                group=identity.group,
                user=identity.user,
            )

    for category, hit in categorised:
        if hit.list.startswith(LOCAL_BLOCK_PREFIX):
            outcome, _ = _outcome(group.action_for(category), identity, local_time)
            return _block(
                policy,
                identity,
                category,
                hit,
                "unacceptable" if outcome == "unacceptable" else "blocked",
                f"local block entry {hit.entry} ({category})",
                outcome == "unacceptable",
            )

    for hit in hits:
        if hit.list == LOCAL_ALLOW:
            return Decision(
                decision="allow",
                category=None,
                action="acceptable",
                incident=None,
                incident_type=None,
                matched=Matched(hit.list, hit.entry),
                rule=f"local allow entry {hit.entry}",
                group=identity.group,
                user=identity.user,
            )

    if categorised:
        best: tuple[int, int, str, Hit, Action, str, str] | None = None
        for category, hit in categorised:
            action = group.action_for(category)
            outcome, why = _outcome(action, identity, local_time)
            key = (-_STRICTNESS[outcome], policy.category_order(category))
            if best is None or key < best[:2]:
                best = (*key, category, hit, action, outcome, why)
        assert best is not None
        _, _, category, hit, action, outcome, why = best
        rule = f"group {group.name}: {category} is {action.label}" + (f" ({why})" if why else "")
        if outcome == "acceptable":
            return Decision(
                decision="allow",
                category=category,
                action=action.label,
                incident=None,
                incident_type=None,
                matched=Matched(hit.list, hit.entry),
                rule=rule,
                group=identity.group,
                user=identity.user,
            )
        return _block(
            policy, identity, category, hit, action.label, rule, outcome == "unacceptable"
        )

    outcome, why = _outcome(group.default, identity, local_time)
    rule = f"group {group.name}: default is {group.default.label}" + (f" ({why})" if why else "")
    return Decision(
        decision="allow" if outcome == "acceptable" else "block",
        category=None,
        action=group.default.label,
        incident=None,
        incident_type=None,
        matched=None,
        rule=rule,
        group=identity.group,
        user=identity.user,
    )
