"""The decision: may this person, at this time, see this URL?

``decide`` is a pure function: the identity, the URL, what the lists
matched and the time are all arguments, so tests need no clock and
``schoolgate explain`` answers with exactly what the proxy does.

Precedence, first that applies wins: illegal categories; the school's local
block entries; its local allow entries; the group's action for the matched
categories (the strictest wins when several match); the group's default.

Change control adds two keyword arguments, both from the ``Controls``
snapshot: a user whose access is ``suspended`` is blocked everywhere except
the local allow list (checked right after illegal categories), and approved
``overrides`` come next: one for this host, URL or all categories opens the
request, one for a category takes that category's hits out of the decision.
Nothing opens an illegal category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from blocklists.index import Hit
from blocklists.normalise import CanonicalURL
from proxy.controls import ActiveOverride, ActiveSuspension
from proxy.identity import Identity
from proxy.policy import LOCAL_ALLOW, LOCAL_BLOCK_PREFIX, Action, Group, Policy

WITHHELD = "(withheld: illegal list)"
WITHHELD_HOST = "(withheld)"
_SEVERITY = {None: 0, "unacceptable": 1, "illegal": 2}
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
    override: int | None = None
    # Who decided: "policy" (``decide``), or the protection that blocked (``tls``,
    # ``tunnel``, ``circumvention``, ``safesearch``, ``downloads``, ``failsafe``...).
    by: str = "policy"

    @classmethod
    def block(
        cls,
        identity: Identity | None,
        rule: str,
        *,
        by: str,
        category: str | None = None,
        action: str = "blocked",
        incident: Literal["illegal", "unacceptable"] | None = None,
        incident_type: str | None = None,
        matched: Matched | None = None,
    ) -> Decision:
        """A block, saying who decided it and why."""
        return cls(
            decision="block",
            category=category,
            action=action,
            incident=incident,
            incident_type=incident_type,
            matched=matched,
            rule=rule,
            group=identity.group if identity else "unknown",
            user=identity.user if identity else None,
            by=by,
        )

    @classmethod
    def allow(
        cls,
        identity: Identity | None,
        rule: str,
        *,
        by: str,
        category: str | None = None,
        action: str = "acceptable",
        matched: Matched | None = None,
        override: int | None = None,
    ) -> Decision:
        """An allow, saying who decided it and why."""
        return cls(
            decision="allow",
            category=category,
            action=action,
            incident=None,
            incident_type=None,
            matched=matched,
            rule=rule,
            group=identity.group if identity else "unknown",
            user=identity.user if identity else None,
            override=override,
            by=by,
        )

    @classmethod
    def failed(cls, identity: Identity | None, why: str) -> Decision:
        """The decision when Schoolgate itself cannot decide: block (fail closed)."""
        return cls.block(identity, f"filter error, blocked to be safe: {why}", by="failsafe")

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    @property
    def illegal(self) -> bool:
        return self.incident == "illegal"

    def shown(
        self, host: str | None, path: str | None
    ) -> tuple[str | None, str | None, str | None]:
        """(host, path, rule) as a log, page or export may show them.

        The one redaction rule for illegal hits: never where, only that the
        illegal list matched (DESIGN.md "Confidential by design").
        """
        if self.illegal:
            return WITHHELD_HOST, WITHHELD_HOST if path is not None else None, None
        return host, path, self.rule

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
            "override": self.override,
            "by": self.by,
        }


def stricter(a: Decision, b: Decision) -> Decision:
    """The stricter of two decisions: a block beats an allow, then the graver incident."""
    if a.blocked != b.blocked:
        return a if a.blocked else b
    return b if _SEVERITY[b.incident] > _SEVERITY[a.incident] else a


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
    *,
    overrides: Sequence[ActiveOverride] = (),
    suspended: ActiveSuspension | None = None,
    host: str | None = None,
) -> Decision:
    """Decide for one request; ``url`` is None when only the ``host`` is known (CONNECT, SNI).

    ``overrides`` are those covering this identity (``Controls.overrides_for``);
    ``suspended`` is this user's suspension in force, if any.
    """
    local_time = when.astimezone(policy.timezone)
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

    if suspended is not None:
        opened = _by_policy(policy, identity, hits, local_time)
        if opened.matched is not None and opened.matched.list == LOCAL_ALLOW:
            return opened
        return Decision(
            decision="block",
            category=None,
            action="suspended",
            incident=None,
            incident_type=None,
            matched=None,
            rule=suspended.describe(),
            group=identity.group,
            user=identity.user,
        )

    if overrides:
        site = (url.host, url.path) if url is not None else (host, None)
        overridden = _overridden(policy, identity, site, hits, local_time, overrides)
        if overridden is not None:
            return overridden
    return _by_policy(policy, identity, hits, local_time)


def _overridden(
    policy: Policy,
    identity: Identity,
    site: tuple[str | None, str | None],
    hits: Sequence[Hit],
    local_time: datetime,
    overrides: Sequence[ActiveOverride],
) -> Decision | None:
    """The decision an override makes (illegal hits are already ruled out), or None.

    None also when the policy allows anyway, so that ``explain`` names an
    override only when it is what opened the request.
    """
    if not _by_policy(policy, identity, hits, local_time).blocked:
        return None
    host, path = site
    categorised = _categorised(policy, hits)
    for override in overrides:
        if host is not None and override.opens_site(host, path):
            category, hit = categorised[0] if categorised else (None, None)
            return Decision(
                decision="allow",
                category=category,
                action="override",
                incident=None,
                incident_type=None,
                matched=Matched(hit.list, hit.entry) if hit else None,
                rule=override.describe(),
                group=identity.group,
                user=identity.user,
                override=override.id,
            )
    by_category = {o.what: o for o in overrides if o.what_kind == "category"}
    if not by_category:
        return None
    kept = [
        hit
        for hit in hits
        if not (cats := policy.list_categories.get(hit.list, ()))
        or not all(c in by_category for c in cats)
    ]
    if len(kept) == len(hits):
        return None
    remaining = _by_policy(policy, identity, kept, local_time)
    if remaining.blocked:
        return remaining
    category, hit = next((c, h) for c, h in categorised if c in by_category)
    override = by_category[category]
    return Decision(
        decision="allow",
        category=category,
        action="override",
        incident=None,
        incident_type=None,
        matched=Matched(hit.list, hit.entry),
        rule=override.describe(),
        group=identity.group,
        user=identity.user,
        override=override.id,
    )


def _by_policy(
    policy: Policy, identity: Identity, hits: Sequence[Hit], local_time: datetime
) -> Decision:
    """The policy's decision once illegal categories are ruled out: local entries, then group."""
    group: Group = policy.groups[identity.group]
    categorised = _categorised(policy, hits)
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
