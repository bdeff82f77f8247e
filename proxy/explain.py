"""What ``schoolgate explain`` adds to the decision: the protections that apply to a request.

The decision and every rule that matched come from ``decide`` itself (the
proxy's function, asked for its ``rules``); this module only reads the
group's protections in the policy, with the same core functions the addons
call (``proxy.safesearch.lock_for``, ``Group.port_allowed``,
``proxy.tlspolicy``), so what it says is what the gateway does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from blocklists.normalise import CanonicalURL
from proxy.content.learned import LEARNED_FILE, LearnedList, blocks
from proxy.content.phrases import CATEGORY_WORDS
from proxy.controls import Controls
from proxy.decision import Rule
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.policy import Group
from proxy.safesearch import Level, lock_for
from proxy.tlspolicy import choose, decide_hosts, is_ip


@dataclass(frozen=True, slots=True)
class Protection:
    """One protection: whether it acts on this request (``applies``) and what it does."""

    name: str
    applies: bool
    says: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"applies": self.applies, "says": self.says, **self.detail}


def _ports(ranges: tuple[tuple[int, int], ...]) -> list[str]:
    return [str(low) if low == high else f"{low}-{high}" for low, high in ranges]


def safe_search(group: Group, url: CanonicalURL) -> Protection:
    """Whether the search engine of ``url`` gets its safe mode forced, or is blocked."""
    level = group.safe_search
    lock = lock_for(url.host, cast(Level, level)) if level != "off" else None
    detail: dict[str, Any] = {"level": level, "engine": lock.engine if lock else None}
    if level == "off":
        return Protection("safe_search", False, f"off for group {group.name}", detail)
    if lock is None:
        return Protection("safe_search", False, f"{level}; not a search engine", detail)
    if lock.blocked:
        return Protection(
            "safe_search",
            True,
            f"{level}: {lock.engine} cannot be locked, so it is blocked",
            detail,
        )
    forced = [f"{k}={v}" for k, v in lock.params] + [f"{k}: {v}" for k, v in lock.headers]
    forced += [f"cookie {c.name}" + (f" {c.key}={c.value}" if c.key else "") for c in lock.cookies]
    return Protection(
        "safe_search", True, f"{level}: forced on {lock.engine} ({', '.join(forced)})", detail
    )


def downloads(group: Group) -> Protection:
    """The file kinds and size the group may not download (checked on the response)."""
    kinds, max_mb = list(group.downloads.block), group.downloads.max_mb
    detail: dict[str, Any] = {"block": kinds, "max_mb": max_mb}
    parts = [f"blocks {', '.join(kinds)}"] if kinds else []
    if max_mb is not None:
        parts.append(f"larger than {max_mb:g} MB")
    if not parts:
        return Protection("downloads", False, f"none for group {group.name}", detail)
    return Protection("downloads", True, "; ".join(parts) + " (on the response)", detail)


def ports(group: Group, url: CanonicalURL) -> Protection:
    """Whether a tunnel (CONNECT) to this URL's port is allowed for the group."""
    allowed = _ports(group.allowed_ports)
    detail: dict[str, Any] = {"port": url.port, "allowed": allowed}
    if url.scheme != "https":
        return Protection(
            "ports", False, f"plain HTTP, no tunnel (tunnels: {', '.join(allowed)})", detail
        )
    if group.port_allowed(url.port):
        return Protection("ports", True, f"{url.port} allowed ({', '.join(allowed)})", detail)
    return Protection(
        "ports", True, f"{url.port} refused: group {group.name} tunnels only to "
        f"{', '.join(allowed)}", detail,
    )  # fmt: skip


def doh(group: Group) -> Protection:
    """DNS-over-HTTPS requests recognised by their shape, on any host."""
    detail: dict[str, Any] = {"action": group.doh}
    if group.doh == "acceptable":
        return Protection("doh", False, f"acceptable for group {group.name}", detail)
    return Protection("doh", True, f"DNS-over-HTTPS requests are {group.doh}", detail)


def content(group: Group) -> Protection:
    """Content analysis of the page's text, when the group asks for it."""
    rule = group.content
    if rule is None:
        return Protection("content", False, f"not analysed for group {group.name}", {})
    thresholds = rule.threshold_for()
    detail: dict[str, Any] = {
        "analyse": list(rule.analyse),
        "action": rule.action,
        "thresholds": thresholds,
    }
    named = ", ".join(
        f"{CATEGORY_WORDS.get(k, k)} {v}" for k, v in rule.thresholds.items()
    )  # fmt: skip
    says = (
        f"{', '.join(rule.analyse)} scored, threshold {rule.threshold}"
        + (f" ({named})" if named else "")
        + f": {rule.action}"
    )
    return Protection("content", True, says, detail)


def learned(fs: Filterset, group: Group, url: CanonicalURL) -> Protection:
    """Whether content analysis learned this URL (page or image), its scores and when, and
    whether the entry refuses the request for the group (``proxy.content.learned.blocks``,
    the proxy's own rule: it answers at the request, before any upstream connection)."""
    path = fs.settings.data_dir / LEARNED_FILE
    entries = LearnedList(path)
    try:
        entries.refresh()
    except OSError as exc:
        why = exc.strerror or str(exc)
        return Protection("learned", False, f"the learned list cannot be read: {why}", {})
    found = entries.get(url.entry)
    if found is None:
        return Protection("learned", False, "not on the learned list", {"entry": None})
    refuses = blocks(found, group, fs.policy)
    detail: dict[str, Any] = {
        "entry": found.entry,
        "kind": found.kind,
        "state": found.state,
        "category": found.category,
        "score": found.score,
        "phrases": list(found.phrases),
        "at": found.at,
        "by": found.by,
        "page": found.page,
        "blocks": refuses,
    }
    score = f"{found.score}%" if found.kind == "image" else str(found.score)
    counted = "detected" if found.kind == "image" else "phrases"
    decided = f", {found.state} by {found.by}" if found.by else f", {found.state}"
    says = (
        f"{'an image' if found.kind == 'image' else 'a page'} learned {found.at}{decided}: "
        f"{CATEGORY_WORDS.get(found.category, found.category)} scored {score} "
        f"({counted}: {', '.join(found.phrases) or '-'}); "
        + (
            "refused before any upstream connection"
            if refuses
            else f"not refused for group {group.name}"
        )
    )
    return Protection("learned", True, says, detail)


def tls(
    fs: Filterset, identity: Identity, url: CanonicalURL, when: datetime, controls: Controls
) -> Protection:
    """Intercepted, passed through undecrypted, or refused: ``proxy.tlspolicy.choose`` on the
    filter's one decision on the host, as the proxy makes it at the ClientHello."""
    if url.scheme != "https":
        return Protection("tls", False, "plain HTTP: filtered per request", {"action": None})
    decided = decide_hosts(fs, identity, (url.host,), when, controls)
    choice = choose(fs, identity, decided, no_name=is_ip(url.host))
    words = {"intercept": "intercepted", "pass": "passed through undecrypted", "refuse": "refused"}
    return Protection(
        "tls", True, f"{words[choice.action]}: {choice.reason}", {"action": choice.action}
    )


def group_protections(group: Group, url: CanonicalURL) -> list[Protection]:
    """The protections the group's settings alone decide, in the order they act."""
    return [
        ports(group, url),
        safe_search(group, url),
        doh(group),
        downloads(group),
        content(group),
    ]


def protections(
    fs: Filterset, identity: Identity, url: CanonicalURL, when: datetime, controls: Controls
) -> list[Protection]:
    """Every protection the gateway applies to this request, in the order they act."""
    group = fs.policy.groups[identity.group]
    return [
        tls(fs, identity, url, when, controls),
        learned(fs, group, url),
        *group_protections(group, url),
    ]


def for_json(rules: Sequence[Rule], found: Sequence[Protection]) -> dict[str, Any]:
    """The ``rules`` and ``protections`` keys of ``explain --json`` (README "explain")."""
    return {
        "rules": [rule.as_dict() for rule in rules],
        "protections": {p.name: p.as_dict() for p in found},
    }


def as_lines(rules: Sequence[Rule], found: Sequence[Protection]) -> list[str]:
    """Every rule (``*`` the one that decided) with why, then the protections, for a terminal."""
    lines = ["rules:"]
    for rule in rules:
        where = f"  [{rule.matched.list}: {rule.matched.entry}]" if rule.matched else ""
        lines.append(f"  {'*' if rule.won else '-'} {rule.rule}{where}")
        lines.append(f"      {rule.why}")
    if found:
        lines.append("protections (on what the filter lets through):")
        lines += [f"  {p.name + ':':<13}{p.says}" for p in found]
    return lines
