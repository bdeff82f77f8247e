"""A trust policy with school overlays: one policy for a multi-academy trust, each school's on top.

``trust_policy:`` in ``schoolgate.yaml`` names the trust's file, a whole
policy (groups, categories, schedules) with one more key::

    overlay:
      may_loosen: [games, social]   # categories a school may open further

and ``policy:`` is then the site's *overlay*: a partial policy merged onto
the trust's before it is compiled (``proxy.policy.compile_policy``), so
``check``, ``explain`` and the impact preview all work on the merged result.
An overlay may:

- say who is who at the school: ``school``, ``timezone``, ``identity`` and
  ``approvers`` replace the trust's (they are facts of the site);
- add schedules, categories and groups of its own, and local entries
  (``local.allow`` and ``local.block`` are added to the trust's);
- tighten a trust group: a stricter category action or default, stricter
  safe search, more download kinds blocked, a lower size limit;
- loosen a trust group's action for a category only if ``may_loosen`` names it.

Anything else (redefining a trust schedule or category, loosening a default
or a protection, ``no_decrypt``) is a ``FILE:LINE`` error in the overlay. Each
value remembers its layer: errors name the file it came from, and
``Policy.where`` tells ``explain`` whether a rule is the trust's or the site's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from proxy.decision import Decision
from proxy.policy import (
    LOCAL_ALLOW,
    LOCAL_BLOCK_PREFIX,
    Action,
    Name,
    Policy,
    PolicyFile,
    compile_policy,
    load_policy,
)
from proxy.yamlfile import ConfigError, Loc, Positions, Problem, load_yaml, parse_yaml, validate

# Keys of a site's overlay that are facts of the site: they replace the trust's.
SITE_FACTS = ("school", "timezone", "identity", "approvers")
_RANK = {"acceptable": 0, "acceptable_at": 1, "acceptable_for": 1, "blocked": 2, "unacceptable": 3}
_SAFE = {"off": 0, "moderate": 1, "strict": 2}


class Overlay(BaseModel):
    """What the trust lets a school's overlay do beyond tightening."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    may_loosen: list[Name] = []


class LayeredPositions(Positions):
    """Line numbers from two files: each position knows which file it is in."""

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.files: dict[Loc, str] = {}

    def add(self, positions: Positions, prefix_from: Loc = (), prefix_to: Loc = ()) -> None:
        """Take ``positions``' lines under ``prefix_from``, placed under ``prefix_to``."""
        n = len(prefix_from)
        for loc, line in positions.lines.items():
            if loc[:n] == prefix_from:
                where = (*prefix_to, *loc[n:])
                self.lines[where] = line
                self.files[where] = positions.file

    def drop(self, prefix: Loc) -> None:
        for loc in [loc for loc in self.lines if loc[: len(prefix)] == prefix]:
            del self.lines[loc]
            self.files.pop(loc, None)

    def file_of(self, loc: Sequence[str | int]) -> str:
        path = tuple(loc)
        while path:
            if path in self.files:
                return self.files[path]
            path = path[:-1]
        return self.file

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        return Problem(self.file_of(loc), self.line_of(loc), message)


def _action_key(rule: Any) -> tuple[int, str]:
    """(strictness rank, label) of an action as written (a string or a mapping)."""
    if isinstance(rule, str):
        return _RANK.get(rule, 3), rule
    if isinstance(rule, dict) and "acceptable_at" in rule:
        names = rule["acceptable_at"]
        names = [names] if isinstance(names, str) else list(names)
        return 1, "acceptable_at:" + ",".join(map(str, names))
    if isinstance(rule, dict) and "acceptable_for" in rule:
        return 1, "acceptable_for:" + ",".join(sorted(map(str, rule["acceptable_for"])))
    return 3, repr(rule)  # not an action at all: validation says why


def _looser(rule: Any, trust: Action) -> bool:
    rank, label = _action_key(rule)
    # Between two "acceptable at/for" rules, any change may open more (other times, users).
    return rank < _RANK[trust.kind] or (rank == 1 == _RANK[trust.kind] and label != trust.label)


class _Merger:
    def __init__(
        self, trust: dict[str, Any], trust_pos: Positions, trust_policy: Policy, overlay: Overlay
    ) -> None:
        self.merged = copy.deepcopy(trust)
        self.trust_policy = trust_policy
        self.overlay = overlay
        self.positions = LayeredPositions(trust_pos.file)
        self.positions.add(trust_pos)
        self.problems: list[Problem] = []

    def error(self, site_pos: Positions, loc: Loc, message: str) -> None:
        self.problems.append(site_pos.problem(loc, message))

    def place(self, site_pos: Positions, loc: Loc, value: Any) -> None:
        """Put the site's ``value`` at ``loc`` of the merged document, with its lines."""
        target: Any = self.merged
        for key in loc[:-1]:
            target = target.setdefault(key, {})
        target[loc[-1]] = copy.deepcopy(value)
        self.positions.drop(loc)
        self.positions.add(site_pos, loc, loc)

    def merge(self, site: dict[str, Any], site_pos: Positions) -> None:
        for key, value in site.items():
            if key in SITE_FACTS:
                self.place(site_pos, (key,), value)
            elif key in ("schedules", "categories"):
                self._add_named(site_pos, key, value)
            elif key == "groups" and isinstance(value, dict):
                for name, rule in value.items():
                    if name in self.trust_policy.groups and isinstance(rule, dict):
                        self._tighten_group(site_pos, name, rule)
                    else:
                        self.place(site_pos, ("groups", name), rule)
            elif key == "local" and isinstance(value, dict):
                self._add_local(site_pos, value)
            elif key == "overlay":
                self.error(site_pos, (key,), "overlay: belongs in the trust's policy, not a site's")
            elif key == "no_decrypt":
                self.error(
                    site_pos,
                    (key,),
                    "no_decrypt is the trust's to decide: a site may not stop inspecting traffic",
                )
            else:  # unknown or malformed: validation of the merged document names it
                self.place(site_pos, (key,), value)

    def _add_named(self, site_pos: Positions, key: str, value: Any) -> None:
        if not isinstance(value, dict):
            self.place(site_pos, (key,), value)
            return
        what = key.removesuffix("s").replace("categorie", "category")
        for name, rule in value.items():
            if name in self.merged.get(key, {}):
                self.error(
                    site_pos,
                    (key, name),
                    f"{what} {name!r} is the trust's: a site may add its own, not redefine it",
                )
            else:
                self.place(site_pos, (key, name), rule)

    def _add_local(self, site_pos: Positions, value: dict[str, Any]) -> None:
        local = self.merged.setdefault("local", {})
        for part, items in value.items():
            if part not in ("allow", "block") or not isinstance(items, list):
                self.place(site_pos, ("local", part), items)
                continue
            existing = local.setdefault(part, [])
            offset = len(existing)
            existing.extend(copy.deepcopy(items))
            for i in range(len(items)):
                self.positions.add(site_pos, ("local", part, i), ("local", part, offset + i))

    def _tighten_group(self, site_pos: Positions, name: str, rule: dict[str, Any]) -> None:
        group = self.trust_policy.groups[name]
        base: Loc = ("groups", name)
        for key, value in rule.items():
            loc: Loc = (*base, key)
            if key == "categories" and isinstance(value, dict):
                for cat, action in value.items():
                    cat_loc: Loc = (*loc, cat)
                    if (
                        cat in self.trust_policy.categories
                        and _looser(action, group.action_for(cat))
                        and cat not in self.overlay.may_loosen
                    ):
                        allowed = ", ".join(self.overlay.may_loosen) or "none"
                        self.error(
                            site_pos,
                            cat_loc,
                            f"group {name}: {cat} would be looser than the trust's "
                            f"{group.action_for(cat).label} (the trust lets sites loosen: "
                            f"{allowed})",
                        )
                    else:
                        self.place(site_pos, cat_loc, action)
            elif key == "default":
                if _looser(value, group.default):
                    self.error(
                        site_pos,
                        loc,
                        f"group {name}: default would be looser than the trust's "
                        f"{group.default.label}",
                    )
                else:
                    self.place(site_pos, loc, value)
            elif key == "safe_search":
                if _SAFE.get(str(value).replace("False", "off"), -1) < _SAFE[group.safe_search]:
                    self.error(
                        site_pos,
                        loc,
                        f"group {name}: safe_search {value!r} is looser than the trust's "
                        f"{group.safe_search}",
                    )
                else:
                    self.place(site_pos, loc, value)
            elif key == "downloads" and isinstance(value, dict):
                blocked = set(value.get("block", []))
                limit = value.get("max_mb")
                trust_limit = group.downloads.max_mb
                if not set(group.downloads.block) <= blocked or (
                    trust_limit is not None and (limit is None or limit > trust_limit)
                ):
                    self.error(
                        site_pos,
                        loc,
                        f"group {name}: downloads must block at least what the trust's do "
                        f"({', '.join(group.downloads.block) or 'nothing'}, "
                        f"max_mb {trust_limit})",
                    )
                else:
                    self.place(site_pos, loc, value)
            elif key == "intercept" and value is True:
                self.place(site_pos, loc, value)
            else:
                self.error(
                    site_pos,
                    loc,
                    f"group {name}: {key} of a trust group is the trust's to set "
                    "(a site may change its categories, default, safe_search and downloads, "
                    "only to tighten them)",
                )


def _split_trust(path: Path) -> tuple[dict[str, Any], Positions, Overlay, Policy]:
    data, positions = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError.single(path, 1, "a trust policy must be a mapping")
    overlay = validate(Overlay, data.pop("overlay", None) or {}, _under(positions, "overlay"))
    trust = compile_policy(validate(PolicyFile, data, positions), positions, path)
    unknown = [c for c in overlay.may_loosen if c not in trust.categories]
    if unknown:
        raise ConfigError.single(
            path,
            positions.line_of(("overlay", "may_loosen")),
            f"overlay.may_loosen: unknown categories {', '.join(unknown)}",
        )
    return data, positions, overlay, trust


def _under(positions: Positions, key: str) -> Positions:
    """``positions`` as seen from inside ``key`` (to validate a part on its own)."""
    inner = Positions(positions.file)
    inner.lines = {loc[1:]: line for loc, line in positions.lines.items() if loc[:1] == (key,)}
    return inner


def layered_policy(site_text: str, site_path: Path, trust_path: Path) -> Policy:
    """The site's overlay (as text, for ``policy apply``) merged onto the trust's policy."""
    trust_data, trust_pos, overlay, trust = _split_trust(trust_path)
    site_data, site_pos = parse_yaml(site_text, str(site_path))
    if site_data is None:
        site_data = {}
    if not isinstance(site_data, dict):
        raise ConfigError.single(site_path, 1, "a site's overlay must be a mapping")
    merger = _Merger(trust_data, trust_pos, trust, overlay)
    merger.merge(site_data, site_pos)
    if merger.problems:
        raise ConfigError(merger.problems)
    positions = merger.positions
    raw = validate(PolicyFile, merger.merged, positions)
    policy = compile_policy(raw, positions, site_path)
    layers = {loc: file for loc, file in positions.files.items() if file == str(trust_path)}
    return dataclasses.replace(policy, trust=trust_path, trust_locs=frozenset(layers))


def load_site_policy(path: Path, trust_path: Path | None) -> Policy:
    """``policy.yaml`` alone, or as the site's overlay on ``trust_path``; ``ConfigError``."""
    if trust_path is None:
        return load_policy(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(path, 0, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.single(path, 0, f"cannot read: {exc}") from None
    return layered_policy(text, path, trust_path)


def rule_origin(policy: Policy, decision: Decision) -> str | None:
    """Where the rule that made ``decision`` is written: ``trust FILE:LINE`` or ``site …``."""
    matched = decision.matched
    if matched is not None and matched.list == LOCAL_ALLOW and matched.entry in policy.local_allow:
        return policy.layer_of(("local", "allow", policy.local_allow.index(matched.entry)))
    if matched is not None and matched.list.startswith(LOCAL_BLOCK_PREFIX):
        entries = list(policy.local_block)
        if matched.entry in entries:
            return policy.layer_of(("local", "block", entries.index(matched.entry)))
    group = policy.groups.get(decision.group)
    if decision.category is not None:
        category = policy.categories.get(decision.category)
        if category is not None and category.illegal:
            return policy.layer_of(("categories", category.name))
        if group is not None:
            for member in group.chain:
                loc: Loc = ("groups", member, "categories", decision.category)
                if loc in policy.lines:
                    return policy.layer_of(loc)
    if group is not None and decision.override is None:
        for member in group.chain:
            if ("groups", member, "default") in policy.lines:
                return policy.layer_of(("groups", member, "default"))
    return None


def recorded_text(site_text: str, trust_path: Path | None, trust_text: str | None = None) -> str:
    """The policy text the change log keeps for a site: its overlay, and the trust's under it.

    Both the proxy (on start and hot reload) and ``policy apply`` record this, so a trust
    change reaching a site appears in that site's change log, and an applied overlay edit
    is not taken for an unattributed one.
    """
    if trust_path is None:
        return site_text
    if trust_text is None:  # else: the text about to be installed there (`trust apply`)
        try:
            trust_text = trust_path.read_text(encoding="utf-8")
        except OSError as exc:
            trust_text = f"# (unreadable: {exc.strerror or exc})\n"
    return f"{site_text.rstrip()}\n# --- the trust's policy, {trust_path} ---\n{trust_text}"
