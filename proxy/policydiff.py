"""The impact of a policy change, in the words a headteacher or governor reads.

``impact(old, new)`` compares two compiled policies and lists what changes:
groups and categories added or removed, every group/category decision that
changes (inheritance already resolved, so a change to ``staff`` shows up
under ``head`` too), local entries added or removed, approvers, identity.
Pure: ``policy apply`` prints it and records it with the text diff.
"""

from __future__ import annotations

import difflib

from proxy.policy import Policy


def _added_removed(what: str, old: set[str], new: set[str]) -> list[str]:
    lines = [f"{what} added: {item}" for item in sorted(new - old)]
    lines += [f"{what} removed: {item}" for item in sorted(old - new)]
    return lines


def impact(old: Policy, new: Policy) -> list[str]:
    """One line per change in what the policy decides or who it names; empty if none."""
    lines = _added_removed("group", set(old.groups), set(new.groups))
    lines += _added_removed("category", set(old.categories), set(new.categories))
    for name in sorted(set(old.categories) & set(new.categories)):
        was, now = old.categories[name], new.categories[name]
        if was.illegal != now.illegal:
            lines.append(f"category {name}: illegal {was.illegal} → {now.illegal}")
        if was.lists != now.lists:
            lines.append(f"category {name}: lists {', '.join(was.lists)} → {', '.join(now.lists)}")
        if was.incident != now.incident:
            lines.append(f"category {name}: incident {was.incident} → {now.incident}")
    categories = sorted(set(old.categories) | set(new.categories))
    for group in sorted(set(old.groups) & set(new.groups)):
        a, b = old.groups[group], new.groups[group]
        if a.default.label != b.default.label:
            lines.append(f"group {group}: default {a.default.label} → {b.default.label}")
        for category in categories:
            before = a.action_for(category).label if category in old.categories else None
            after = b.action_for(category).label if category in new.categories else None
            if before is not None and after is not None and before != after:
                lines.append(f"group {group}: {category} {before} → {after}")
        if a.safe_search != b.safe_search:
            lines.append(f"group {group}: safe search {a.safe_search} → {b.safe_search}")
    lines += _added_removed("local allow entry", set(old.local_allow), set(new.local_allow))
    lines += _added_removed(
        "local block entry",
        {f"{e} ({c})" for e, c in old.local_block.items()},
        {f"{e} ({c})" for e, c in new.local_block.items()},
    )
    lines += _added_removed("approver", set(old.approvers), set(new.approvers))
    lines += _added_removed(
        "network",
        {f"{n.cidr} → {n.group}" for n in old.identity.networks},
        {f"{n.cidr} → {n.group}" for n in new.identity.networks},
    )
    lines += _added_removed(
        "user",
        {f"{u.name} ({u.group})" for u in old.identity.users},
        {f"{u.name} ({u.group})" for u in new.identity.users},
    )
    if old.identity.default_group != new.identity.default_group:
        lines.append(f"default group {old.identity.default_group} → {new.identity.default_group}")
    return lines


def text_diff(old: str, new: str, name: str) -> str:
    """A unified diff of two policy texts."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{name} (in force)",
            tofile=f"{name} (applied)",
        )
    )
