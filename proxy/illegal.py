"""Illegal lists are the appliance's to say, not the policy's.

A source the settings mark ``illegal: true`` (the IWF list, the CTIRU list of
police-assessed terrorist content) is illegal in every policy, whatever the
policy says: UKSIC and the DfE filtering standards say these lists "cannot be
disabled, overridden or altered by any user, including system administrators".
A source of format ``iwf`` is illegal even without the flag: that format is the
IWF's list, and a settings file written before the flag existed must not leave
it open.

``enforce`` puts every list of an illegal source in an illegal category: a list
the policy does not name at all (a policy written before the CTIRU slot existed)
is added to one (``child_abuse`` for ``iwf``, ``terrorism`` for ``ctiru``), with
a warning. A policy that names such a list in a category that is not illegal
(``illegal: false``, or the list moved to another category), opens that category
for a group, or passes it through undecrypted is refused, one ``FILE:LINE`` per
problem. ``dropped`` compares a new policy with the one in force: one that no
longer names an illegal list it named before is refused too (the list would stay
blocked, but the attempt is a change the log must show). Every such problem is
an ``IllegalProblem``, which change control records as a refused change.
"""

from __future__ import annotations

from dataclasses import replace

from blocklists.index import Matcher
from proxy.policy import Action, Category, IllegalProblem, Policy
from proxy.settings import Settings
from proxy.yamlfile import Problem

# The category a list of these sources is put in when the policy does not name it.
CATEGORY_FOR = {"iwf": "child_abuse", "ctiru": "terrorism"}
_CLOSED = ("blocked", "unacceptable")


def illegal_sources(settings: Settings) -> frozenset[str]:
    """Names of the sources whose lists are illegal in every policy."""
    return frozenset(
        name for name, src in settings.sources.items() if src.illegal or src.format == "iwf"
    )


def source_of(list_name: str) -> str:
    return list_name.split("/", 1)[0]


def _named_lists(policy: Policy, illegal: frozenset[str]) -> set[str]:
    """Lists of illegal sources that the policy file itself names in its categories."""
    return {
        name
        for cat in policy.categories.values()
        for name in cat.lists
        if source_of(name) in illegal and name not in policy.appliance_lists
    }


def enforce(
    policy: Policy, settings: Settings, lists: Matcher
) -> tuple[Policy, list[Problem], list[Problem]]:
    """(policy with every illegal list in an illegal category, problems, warnings)."""
    illegal = illegal_sources(settings)
    if not illegal:
        return policy, [], []
    file = str(policy.source)
    problems: list[Problem] = []
    warnings: list[Problem] = []

    def refuse(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(IllegalProblem(policy.file_of(loc), policy.line_of(loc), message))

    relabelled: set[str] = set()
    for cat in policy.categories.values():
        for i, name in enumerate(cat.lists):
            if source_of(name) not in illegal or cat.illegal:
                continue
            relabelled.add(cat.name)
            written = ("categories", cat.name, "illegal")
            refuse(
                written if written in policy.lines else ("categories", cat.name, "lists", i),
                f"category {cat.name!r} holds list {name!r} of illegal source "
                f"{source_of(name)!r}: it must be `illegal: true`, as the settings say; "
                "nothing in the policy can weaken an illegal list",
            )
    for group in policy.groups.values():
        for cat_name in sorted(relabelled):
            loc = ("groups", group.name, "categories", cat_name)
            if loc in policy.lines and group.action_for(cat_name).kind not in _CLOSED:
                refuse(
                    loc,
                    f"group {group.name!r} opens category {cat_name!r}, which holds an "
                    "illegal list: no group can open it",
                )
    for cat_name in sorted(policy.no_decrypt_categories):
        closed = policy.categories.get(cat_name)
        if closed is not None and (closed.illegal or cat_name in relabelled):
            refuse(
                ("no_decrypt", "categories"),
                f"category {cat_name!r} is illegal: it cannot be passed through undecrypted, "
                "where only its hosts could be checked",
            )

    named = _named_lists(policy, illegal)
    missing = sorted(
        name for name in lists.counts() if source_of(name) in illegal and name not in named
    )
    categories = dict(policy.categories)
    added: dict[str, str] = {}
    for name in missing:
        source = source_of(name)
        cat_name = CATEGORY_FOR.get(source, source)
        existing: Category | None = categories.get(cat_name)
        if existing is not None and not existing.illegal:
            cat_name = f"illegal_{source}"
            existing = categories.get(cat_name)
        if existing is None:
            categories[cat_name] = Category(cat_name, (name,), True, None)
        elif name not in existing.lists:
            categories[cat_name] = replace(existing, lists=(*existing.lists, name))
        added[name] = cat_name
        warnings.append(
            Problem(
                file,
                policy.line_of(("categories",)),
                f"warning: list {name!r} of illegal source {source!r} is in no category of "
                f"the policy: it is blocked for everyone as illegal category {cat_name!r}",
            )
        )
    if problems or not added:
        return policy, problems, warnings

    list_categories = dict(policy.list_categories)
    for name, cat_name in added.items():
        known = list_categories.get(name, ())
        list_categories[name] = known if cat_name in known else (*known, cat_name)
    forced = {cat_name: Action("unacceptable") for cat_name in added.values()}
    groups = {
        name: replace(group, categories={**group.categories, **forced})
        for name, group in policy.groups.items()
    }
    enforced = replace(
        policy,
        categories=categories,
        groups=groups,
        list_categories=list_categories,
        appliance_lists=policy.appliance_lists | frozenset(added),
    )
    return enforced, [], warnings


def dropped(old: Policy, new: Policy, settings: Settings) -> list[Problem]:
    """Problems for each illegal list the policy in force names and the new one does not."""
    illegal = illegal_sources(settings)
    gone = sorted(_named_lists(old, illegal) - _named_lists(new, illegal))
    problems: list[Problem] = []
    for name in gone:
        was = next(c.name for c in old.categories.values() if name in c.lists)
        loc = ("categories", was) if ("categories", was) in new.lines else ("categories",)
        problems.append(
            IllegalProblem(
                str(new.source),
                new.line_of(loc),
                f"list {name!r} of illegal source {source_of(name)!r} is no longer in category "
                f"{was!r}: an illegal list cannot be dropped from the policy",
            )
        )
    return problems
