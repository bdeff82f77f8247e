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
- loosen a trust group's action for a category only if ``may_loosen`` names it;
- map people and addresses (its ``identity``) only into groups no looser than
  the ones the trust's own ``identity`` would put them in, or into a group the
  trust's ``overlay.may_map_to`` names (a school naming its staff network):
  otherwise an overlay could move its pupils into a trust's staff group, or a
  wide-open group of its own, and ``may_loosen`` would never see it.

Anything else (redefining a trust schedule or category, loosening a default
or a protection, ``no_decrypt``) is a ``FILE:LINE`` error in the overlay. Each
value remembers its layer: errors name the file it came from, and
``Policy.where`` tells ``explain`` whether a rule is the trust's or the site's.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from proxy.decision import Decision
from proxy.policy import (
    LOCAL_ALLOW,
    LOCAL_BLOCK_PREFIX,
    Action,
    Group,
    IdentityRules,
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
    # trust groups a site's identity may put anyone in, however loose (its staff network)
    may_map_to: list[Name] = []


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
    strangers = [g for g in overlay.may_map_to if g not in trust.groups]
    if strangers:
        raise ConfigError.single(
            path,
            positions.line_of(("overlay", "may_map_to")),
            f"overlay.may_map_to: unknown groups {', '.join(strangers)}",
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
    if "identity" in site_data:
        found = identity_problems(policy, trust, overlay, positions)
        if found:
            raise ConfigError(found)
    layers = {loc: file for loc, file in positions.files.items() if file == str(trust_path)}
    return dataclasses.replace(policy, trust=trust_path, trust_locs=frozenset(layers))


# --- an overlay's identity: nobody mapped into a looser group than the trust's would give ---

_DOH = {"acceptable": 0, "blocked": 1, "unacceptable": 2}
_NO_SNI = {"filter": 0, "block": 1}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _action_looser(a: Action, b: Action) -> bool:
    """Does ``a`` open anything ``b`` keeps closed?"""
    ra, rb = _RANK[a.kind], _RANK[b.kind]
    return ra < rb or (ra == rb == 1 and a.label != b.label)


def looser_than(a: Group, b: Group, categories: Iterable[str], may_loosen: Sequence[str]) -> str:
    """The first way group ``a`` is looser than ``b`` (""; none): a category, the default or a
    protection. Categories the trust lets sites loosen anyway are not counted."""
    for cat in sorted(categories):
        if cat not in may_loosen and _action_looser(a.action_for(cat), b.action_for(cat)):
            return (
                f"{cat} is {a.action_for(cat).label} there, {b.action_for(cat).label} in {b.name}"
            )
    if _action_looser(a.default, b.default):
        return f"its default is {a.default.label}, {b.default.label} in {b.name}"
    if _SAFE[a.safe_search] < _SAFE[b.safe_search]:
        return f"safe_search is {a.safe_search}, {b.safe_search} in {b.name}"
    if not set(b.downloads.block) <= set(a.downloads.block) or (
        b.downloads.max_mb is not None
        and (a.downloads.max_mb is None or a.downloads.max_mb > b.downloads.max_mb)
    ):
        return f"its downloads are looser than {b.name}'s"
    if b.intercept and not a.intercept:
        return f"it does not intercept, {b.name} does"
    if not _ports_within(a.allowed_ports, b.allowed_ports):
        return f"it allows ports {b.name} does not"
    if _NO_SNI[a.https_without_sni] < _NO_SNI[b.https_without_sni]:
        return f"https_without_sni is {a.https_without_sni}, {b.https_without_sni} in {b.name}"
    if _DOH[a.doh] < _DOH[b.doh]:
        return f"doh is {a.doh}, {b.doh} in {b.name}"
    if b.content is not None and a.content != b.content:
        return f"its content analysis differs from {b.name}'s"
    return ""


def _ports_within(ports: Sequence[tuple[int, int]], allowed: Sequence[tuple[int, int]]) -> bool:
    """Is every port of the ranges ``ports`` in one of the ranges ``allowed``?"""
    for low, high in ports:
        at = low
        for a_low, a_high in sorted(allowed):
            if a_low <= at <= a_high:
                at = a_high + 1
            if at > high:
                break
        if at <= high:
            return False
    return True


def _nets(rules: IdentityRules, version: int) -> list[tuple[Network, str]]:
    return [(n.cidr, n.group) for n in rules.networks if n.cidr.version == version]


def _trust_groups_of_network(trust: IdentityRules, net: Network) -> set[str]:
    """Every group the trust's identity gives some address in ``net``."""
    found = {g for cidr, g in _nets(trust, net.version) if cidr.overlaps(net)}
    found |= {u.group for u in trust.users for ip in u.ips if ip in net}
    if not any(net.subnet_of(cidr) for cidr, _ in _nets(trust, net.version)):  # type: ignore[arg-type]
        found.add(trust.default_group)
    return found


def _trust_groups_of_address(
    trust: IdentityRules, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> set[str]:
    for u in trust.users:
        if ip in u.ips:
            return {u.group}
    best = [(cidr, g) for cidr, g in _nets(trust, ip.version) if ip in cidr]
    if best:
        return {max(best, key=lambda item: item[0].prefixlen)[1]}
    return {trust.default_group}


def _trust_groups_of_login(trust: IdentityRules, name: str) -> set[str]:
    """The trust's group for a login: its own, else any it could get by address."""
    for u in trust.users:
        if u.name == name:
            return {u.group}
    return {trust.default_group} | {n.group for n in trust.networks}


def identity_problems(
    policy: Policy, trust: Policy, overlay: Overlay, positions: Positions
) -> list[Problem]:
    """Each mapping of the site's ``identity`` into a group looser than the trust's mapping
    of the same people or addresses would give, at its FILE:LINE (``may_map_to`` excepted)."""
    mine, theirs = policy.identity, trust.identity
    covered = [n.cidr for n in mine.networks]
    default_from = {theirs.default_group} | {
        n.group
        for n in theirs.networks
        if not any(
            n.cidr.version == c.version and n.cidr.subnet_of(c)  # type: ignore[arg-type]
            for c in covered
        )
    }
    checks: list[tuple[Loc, str, set[str], str]] = [
        (("identity", "default_group"), mine.default_group, default_from, "everyone else")
    ]
    for i, n in enumerate(mine.networks):
        checks.append(
            (
                ("identity", "networks", i, "group"),
                n.group,
                _trust_groups_of_network(theirs, n.cidr),
                str(n.cidr),
            )
        )
    for i, u in enumerate(mine.users):
        groups = _trust_groups_of_login(theirs, u.name)
        for ip in u.ips:
            groups |= _trust_groups_of_address(theirs, ip)
        checks.append((("identity", "users", i, "group"), u.group, groups, u.name))
    problems: list[Problem] = []
    categories = set(policy.categories)
    for loc, group, trust_groups, who in checks:
        if group in overlay.may_map_to or group not in policy.groups:
            continue  # leave given; or an unknown group, which compiling has reported
        for other in sorted(trust_groups):
            if other == group or other not in policy.groups:
                continue
            why = looser_than(
                policy.groups[group], policy.groups[other], categories, overlay.may_loosen
            )
            if why:
                allowed = ", ".join(overlay.may_map_to) or "none"
                problems.append(
                    positions.problem(
                        loc,
                        f"identity: {who} would be in {group}, looser than the trust's {other} "
                        f"({why}; the trust lets sites map anyone to: {allowed})",
                    )
                )
                break
    return problems


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
