"""The filter policy (``policy.yaml``): what technicians edit day to day.

Its vocabulary is the schools' "User Actions" table: acceptable, acceptable
at certain times, acceptable for nominated users, blocked, unacceptable,
and categories that are illegal. This module validates the file with
pydantic (every problem as ``file:line: message``) and compiles it into a
frozen ``Policy`` the decision reads: groups with inheritance resolved,
schedules in the school's timezone, lists mapped to categories.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from blocklists.normalise import BadURL, normalise_entry, normalise_host
from proxy.content.phrases import CATEGORY_WORDS, PHRASES_FILE, PhraseScorer, load_phrases
from proxy.yamlfile import (
    ConfigError,
    Loc,
    Positions,
    Problem,
    load_yaml,
    parse_yaml,
    validate,
)

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$", min_length=1)]
ListName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")]
LOCAL_ALLOW = "local/allow"
LOCAL_BLOCK_PREFIX = "local/block:"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class IllegalProblem(Problem):
    """A problem that would weaken an illegal category: a refused change is recorded for it."""


# --- the file as written -------------------------------------------------------------------


class NetworkRule(Strict):
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    group: Name

    @field_validator("cidr", mode="before")
    @classmethod
    def _cidr(cls, value: Any) -> Any:
        try:
            return ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not a network in CIDR form (10.10.0.0/16)") from None


class UserRule(Strict):
    name: Name
    group: Name
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []


class IdentityRules(Strict):
    default_group: Name
    networks: list[NetworkRule] = []
    users: list[UserRule] = []


def _clock(value: Any) -> time:
    # YAML 1.1 reads an unquoted 12:00 as the base-60 integer 720, which is
    # exactly minutes since midnight, so both spellings are accepted.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return time(23, 59, 59) if value == 24 * 60 else time(value // 60, value % 60)
    if isinstance(value, str):
        hour, sep, minute = value.partition(":")
        if sep and hour.isdigit() and minute.isdigit():
            h, m = int(hour), int(minute)
            if (h, m) == (24, 0):
                return time(23, 59, 59)
            if 0 <= h < 24 and 0 <= m < 60:
                return time(h, m)
    raise ValueError(f"{value!r} is not a time of day (HH:MM)")


class ScheduleRule(Strict):
    days: list[Day] = list(DAYS)
    start: time = Field(alias="from")
    end: time = Field(alias="to")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any) -> time:
        return _clock(value)


class CategoryRule(Strict):
    lists: list[ListName] = []
    illegal: bool = False
    incident: Name | None = None


class AcceptableAt(Strict):
    acceptable_at: Name | list[Name]
    otherwise: Literal["blocked", "unacceptable"] | None = None


class AcceptableFor(Strict):
    acceptable_for: list[Name]
    otherwise: Literal["blocked", "unacceptable"] | None = None


ActionRule = Literal["acceptable", "blocked", "unacceptable"] | AcceptableAt | AcceptableFor


DownloadKind = Literal["executable", "installer", "script", "archive"]


def _yaml_off(value: Any) -> Any:
    # YAML 1.1 reads an unquoted `off` as false; a technician means the word.
    return "off" if value is False else value


SafeSearch = Annotated[Literal["off", "moderate", "strict"], BeforeValidator(_yaml_off)]
NoSNI = Literal["block", "filter"]


class Downloads(Strict):
    block: list[DownloadKind] = []
    max_mb: float | None = Field(None, gt=0)


def _port_range(value: Any) -> tuple[int, int]:
    """443 or "1024-65535" as an inclusive range of TCP ports."""
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str) and value.partition("-")[0].strip().isdigit():
        first, _, last = value.partition("-")
        low = int(first)
        high = int(last) if last.strip().isdigit() else (low if not last else -1)
    else:
        raise ValueError(f"{value!r} is not a port or a range of ports (443, '8000-8999')")
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{value!r} is not a port or a range of ports within 1-65535")
    return low, high


PortRange = Annotated[tuple[int, int], BeforeValidator(_port_range)]


ContentKind = Literal["pages", "search_results", "ai_answers"]


class ContentRule(Strict):
    """Real-time content analysis for a group (proxy/content): what is scored, and when it blocks.

    ``threshold`` applies to every category of the phrase file that ``thresholds`` does not name
    (e2guardian's "naughtiness limit": 60 for young children, 100 older, 160 young adults).
    """

    analyse: list[ContentKind] = ["pages"]
    threshold: int = Field(100, ge=1, le=100_000)
    thresholds: dict[Name, Annotated[int, Field(ge=1, le=100_000)]] = {}
    action: Literal["block", "log"] = "block"
    # Images, scored after delivery (proxy/content/images.py): an image whose detected nudity
    # reaches image_threshold (the detector's confidence, 0..1) is learned, and refused next time.
    images: Literal["nudity"] | None = None
    image_threshold: float = Field(0.6, gt=0, le=1)

    @field_validator("thresholds")
    @classmethod
    def _known_categories(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(CATEGORY_WORDS))
        if unknown:
            known = ", ".join(CATEGORY_WORDS)
            raise ValueError(f"unknown content categories {', '.join(unknown)} (one of {known})")
        return value

    def threshold_for(self) -> dict[str, int]:
        """The threshold of every content category, the named ones and the default."""
        return {name: self.thresholds.get(name, self.threshold) for name in CATEGORY_WORDS}


class GroupRule(Strict):
    inherits: Name | None = None
    default: ActionRule | None = None
    safe_search: SafeSearch | None = None
    downloads: Downloads | None = None
    intercept: bool | None = None
    allowed_ports: list[PortRange] | None = None
    https_without_sni: NoSNI | None = None
    doh: Literal["acceptable", "blocked", "unacceptable"] | None = None
    content: ContentRule | None = None
    categories: dict[Name, ActionRule] = {}


class NoDecrypt(Strict):
    categories: list[Name] = []
    hosts: list[str] = []


class LocalBlock(Strict):
    entry: str
    category: Name


class LocalRules(Strict):
    allow: list[str] = []
    block: list[LocalBlock] = []


class PolicyFile(Strict):
    school: str
    timezone: str = "Europe/London"
    identity: IdentityRules
    schedules: dict[Name, ScheduleRule] = {}
    categories: dict[Name, CategoryRule] = {}
    groups: dict[Name, GroupRule]
    local: LocalRules = LocalRules()
    approvers: list[Name] = []
    no_decrypt: NoDecrypt = NoDecrypt()
    # Raw TCP (neither TLS nor HTTP) is carried to these HOST:PORT only; all else is refused.
    tcp_passthrough: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (e.g. Europe/London)") from None
        return value


# --- the compiled policy -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    days: frozenset[int]
    start: time
    end: time

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` (already in the school's timezone) falls inside this schedule."""
        clock = when.time()
        if self.start <= self.end:
            return when.weekday() in self.days and self.start <= clock < self.end
        # An overnight window (22:00–06:00) belongs to the day it starts on.
        if clock >= self.start:
            return when.weekday() in self.days
        yesterday = (when.weekday() - 1) % 7
        return yesterday in self.days and clock < self.end

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{self.name} ({days} {self.start:%H:%M}–{self.end:%H:%M})"


@dataclass(frozen=True, slots=True)
class Action:
    """A compiled action: what a group does with a category."""

    kind: Literal["acceptable", "blocked", "unacceptable", "acceptable_at", "acceptable_for"]
    schedules: tuple[Schedule, ...] = ()
    users: frozenset[str] = frozenset()
    otherwise: Literal["blocked", "unacceptable"] = "blocked"

    @property
    def label(self) -> str:
        if self.kind == "acceptable_at":
            return "acceptable_at:" + ",".join(s.name for s in self.schedules)
        if self.kind == "acceptable_for":
            return "acceptable_for:" + ",".join(sorted(self.users))
        return self.kind


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    lists: tuple[str, ...]
    illegal: bool
    incident: str | None


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    default: Action
    categories: dict[str, Action]
    safe_search: str
    downloads: Downloads
    chain: tuple[str, ...]
    # The gateway's protections (addons/safesearch, downloads, tlspolicy, circumvention).
    intercept: bool = True
    allowed_ports: tuple[tuple[int, int], ...] = ((443, 443),)
    https_without_sni: str = "block"
    doh: str = "acceptable"
    # Content analysis of the pages this group reads (addons/content); None: not analysed.
    content: ContentRule | None = None

    def action_for(self, category: str) -> Action:
        return self.categories.get(category, self.default)

    def port_allowed(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.allowed_ports)


@dataclass(frozen=True)
class Policy:
    """Everything the decision needs from ``policy.yaml``, resolved and frozen."""

    source: Path
    school: str
    timezone: ZoneInfo
    identity: IdentityRules
    categories: dict[str, Category]
    groups: dict[str, Group]
    list_categories: dict[str, tuple[str, ...]]
    local_allow: tuple[str, ...]
    local_block: dict[str, str]
    approvers: tuple[str, ...]
    users: frozenset[str]
    lines: dict[Loc, int]
    # Categories and canonical hosts whose TLS is passed through untouched (addons/tlspolicy).
    no_decrypt_categories: frozenset[str] = frozenset()
    no_decrypt_hosts: tuple[str, ...] = ()
    # (canonical host or IP, port) pairs raw TCP may reach (addons/tlspolicy).
    tcp_passthrough: frozenset[tuple[str, int]] = frozenset()
    # Lists of illegal sources the file does not name, added by the settings (proxy/illegal.py).
    appliance_lists: frozenset[str] = frozenset()
    # The phrase lists of content-phrases.yaml beside the policy, when a group analyses content.
    content: PhraseScorer | None = None
    # A site's overlay on a trust policy (proxy/trust.py): the trust's file, and the
    # positions whose values came from it (the rest are the site's, in ``source``).
    trust: Path | None = None
    trust_locs: frozenset[Loc] = frozenset()

    def category_order(self, name: str) -> int:
        return (
            list(self.categories).index(name) if name in self.categories else len(self.categories)
        )

    def line_of(self, loc: Loc) -> int:
        return Positions(str(self.source), self.lines).line_of(loc)

    def file_of(self, loc: Loc) -> str:
        """The file ``loc`` was written in: the trust's or this site's (``source``)."""
        path = tuple(loc)
        while path and path not in self.lines:
            path = path[:-1]
        return str(self.trust) if self.trust and path in self.trust_locs else str(self.source)

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.file_of(loc), self.line_of(loc), message)

    def layer_of(self, loc: Loc) -> str:
        """``trust FILE:LINE`` or ``site FILE:LINE`` (plain ``FILE:LINE`` without a trust)."""
        where = f"{self.file_of(loc)}:{self.line_of(loc)}"
        if self.trust is None:
            return where
        return ("trust " if self.file_of(loc) == str(self.trust) else "site ") + where


# --- compiling -----------------------------------------------------------------------------


class _Compiler:
    def __init__(self, raw: PolicyFile, positions: Positions) -> None:
        self.raw = raw
        self.positions = positions
        self.problems: list[Problem] = []
        self.schedules = {
            name: Schedule(name, frozenset(DAYS.index(d) for d in rule.days), rule.start, rule.end)
            for name, rule in raw.schedules.items()
        }
        self.users = {u.name for u in raw.identity.users}

    def error(self, loc: Loc, message: str, *, illegal: bool = False) -> None:
        problem = self.positions.problem(loc, message)
        if illegal:
            problem = IllegalProblem(problem.file, problem.line, problem.message)
        self.problems.append(problem)

    def action(self, rule: ActionRule, loc: Loc, category: Category | None) -> Action:
        default_otherwise: Literal["blocked", "unacceptable"] = (
            "unacceptable" if category is not None and category.incident else "blocked"
        )
        if isinstance(rule, str):
            action = Action(rule)
        elif isinstance(rule, AcceptableAt):
            names = (
                [rule.acceptable_at] if isinstance(rule.acceptable_at, str) else rule.acceptable_at
            )
            found = []
            for name in names:
                if name in self.schedules:
                    found.append(self.schedules[name])
                else:
                    known = ", ".join(self.schedules) or "none defined"
                    self.error(
                        (*loc, "acceptable_at"), f"unknown schedule {name!r} (known: {known})"
                    )
            action = Action(
                "acceptable_at",
                schedules=tuple(found),
                otherwise=rule.otherwise or default_otherwise,
            )
        else:
            for user in rule.acceptable_for:
                if user not in self.users:
                    self.error(
                        (*loc, "acceptable_for"),
                        f"unknown user {user!r}: name them under identity.users first",
                    )
            action = Action(
                "acceptable_for",
                users=frozenset(rule.acceptable_for),
                otherwise=rule.otherwise or default_otherwise,
            )
        if (
            category is not None
            and category.illegal
            and action.kind not in ("blocked", "unacceptable")
        ):
            self.error(
                loc,
                f"category {category.name!r} is illegal: no group can open it "
                "(it is blocked for everyone)",
                illegal=True,
            )
            return Action("unacceptable")
        return action

    def categories(self) -> dict[str, Category]:
        result = {}
        for name, rule in self.raw.categories.items():
            if rule.illegal and not rule.lists:
                self.error(
                    ("categories", name), f"illegal category {name!r} names no lists", illegal=True
                )
            for i, list_name in enumerate(rule.lists):
                if list_name == LOCAL_ALLOW or list_name.startswith("local/"):
                    self.error(
                        ("categories", name, "lists", i), "'local' is reserved for local entries"
                    )
            result[name] = Category(name, tuple(rule.lists), rule.illegal, rule.incident)
        return result

    def groups(self, categories: dict[str, Category]) -> dict[str, Group]:
        rules = self.raw.groups
        resolved: dict[str, Group] = {}

        def chain_of(name: str) -> tuple[str, ...] | None:
            chain = [name]
            while (parent := rules[chain[-1]].inherits) is not None:
                if parent not in rules:
                    self.error(("groups", chain[-1], "inherits"), f"unknown group {parent!r}")
                    return None
                if parent in chain:
                    self.error(
                        ("groups", name, "inherits"),
                        "groups inherit in a loop: " + " → ".join([*chain, parent]),
                    )
                    return None
                chain.append(parent)
            return tuple(chain)

        for name in rules:
            chain = chain_of(name)
            if chain is None:
                continue
            default: Action | None = None
            safe_search, downloads = "off", Downloads()
            protections: dict[str, Any] = {}
            actions: dict[str, Action] = {}
            # Walk from the root ancestor down so that each child overrides its parent.
            for member in reversed(chain):
                rule = rules[member]
                if rule.default is not None:
                    default = self.action(rule.default, ("groups", member, "default"), None)
                if rule.safe_search is not None:
                    safe_search = rule.safe_search
                if rule.downloads is not None:
                    downloads = rule.downloads
                for field in ("intercept", "allowed_ports", "https_without_sni", "doh", "content"):
                    if getattr(rule, field) is not None:
                        protections[field] = getattr(rule, field)
                for cat_name, cat_rule in rule.categories.items():
                    loc: Loc = ("groups", member, "categories", cat_name)
                    if cat_name not in categories:
                        if member == name:
                            known = ", ".join(categories) or "none defined"
                            self.error(loc, f"unknown category {cat_name!r} (known: {known})")
                        continue
                    actions[cat_name] = self.action(cat_rule, loc, categories[cat_name])
            for cat in categories.values():
                if cat.illegal:
                    actions[cat.name] = Action("unacceptable")
            if "allowed_ports" in protections:
                protections["allowed_ports"] = tuple(protections["allowed_ports"])
            resolved[name] = Group(
                name,
                default or Action("acceptable"),
                actions,
                safe_search,
                downloads,
                chain,
                **protections,
            )
        return resolved

    def content(self, path: Path) -> PhraseScorer | None:
        """The phrase lists beside the policy, loaded when some group analyses content."""
        asking = [name for name, rule in self.raw.groups.items() if rule.content is not None]
        if not asking:
            return None
        if not path.exists():
            self.error(
                ("groups", asking[0], "content"),
                f"content analysis needs the phrase lists in {path} (see config/{PHRASES_FILE})",
            )
            return None
        try:
            return load_phrases(path)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return None

    def identity(self, groups: dict[str, Group]) -> None:
        ident = self.raw.identity
        if ident.default_group not in self.raw.groups:
            self.error(("identity", "default_group"), f"unknown group {ident.default_group!r}")
        for i, net in enumerate(ident.networks):
            if net.group not in self.raw.groups:
                self.error(("identity", "networks", i, "group"), f"unknown group {net.group!r}")
        seen_ips: dict[str, str] = {}
        seen_names: set[str] = set()
        for i, user in enumerate(ident.users):
            if user.group not in self.raw.groups:
                self.error(("identity", "users", i, "group"), f"unknown group {user.group!r}")
            if user.name in seen_names:
                self.error(("identity", "users", i, "name"), f"user {user.name!r} is listed twice")
            seen_names.add(user.name)
            for j, ip in enumerate(user.ips):
                other = seen_ips.setdefault(str(ip), user.name)
                if other != user.name:
                    self.error(
                        ("identity", "users", i, "ips", j),
                        f"address {ip} already belongs to {other!r}",
                    )
        for j, approver in enumerate(self.raw.approvers):
            if approver not in self.users:
                self.error(
                    ("approvers", j), f"unknown user {approver!r}: name them under identity.users"
                )

    def local(self, categories: dict[str, Category]) -> tuple[tuple[str, ...], dict[str, str]]:
        allow = []
        for i, entry in enumerate(self.raw.local.allow):
            if "?" in entry:
                # Lists match host and path only: an allow entry with a query would open
                # every query on that path, which is more than the technician wrote.
                self.error(("local", "allow", i), f"allow entry {entry!r} has a query: remove it")
                continue
            try:
                allow.append(normalise_entry(entry))
            except BadURL as exc:
                self.error(("local", "allow", i), f"bad entry {entry!r}: {exc}")
        block: dict[str, str] = {}
        for i, item in enumerate(self.raw.local.block):
            if item.category not in categories:
                self.error(("local", "block", i, "category"), f"unknown category {item.category!r}")
            try:
                block[normalise_entry(item.entry)] = item.category
            except BadURL as exc:
                self.error(("local", "block", i, "entry"), f"bad entry {item.entry!r}: {exc}")
        return tuple(allow), block

    def no_decrypt(self, categories: dict[str, Category]) -> tuple[frozenset[str], tuple[str, ...]]:
        rule = self.raw.no_decrypt
        for i, name in enumerate(rule.categories):
            if name not in categories:
                known = ", ".join(categories) or "none defined"
                self.error(
                    ("no_decrypt", "categories", i), f"unknown category {name!r} (known: {known})"
                )
        hosts = []
        for i, entry in enumerate(rule.hosts):
            try:
                host = normalise_entry(entry)
            except BadURL as exc:
                self.error(("no_decrypt", "hosts", i), f"bad host {entry!r}: {exc}")
                continue
            if "/" in host:
                self.error(
                    ("no_decrypt", "hosts", i),
                    f"{entry!r} has a path: TLS that is not decrypted shows only the host",
                )
                continue
            hosts.append(host)
        return frozenset(rule.categories), tuple(hosts)

    def tcp_passthrough(self) -> frozenset[tuple[str, int]]:
        """``HOST:PORT`` entries (``[v6]:PORT`` for IPv6), canonical, each with its port."""
        found = set()
        for i, entry in enumerate(self.raw.tcp_passthrough):
            host, sep, port = entry.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                self.error(
                    ("tcp_passthrough", i),
                    f"{entry!r} is not HOST:PORT (a port is required: ssh.example.org:22)",
                )
                continue
            try:
                canonical = normalise_host(host.strip("[]"))
                # A host no DNS name can be (bad..host) is a typo here, as in a list.
                normalise_entry(host.strip("[]"))
            except BadURL as exc:
                self.error(("tcp_passthrough", i), f"bad host {entry!r}: {exc}")
                continue
            found.add((canonical, int(port)))
        return frozenset(found)


def compile_policy(raw: PolicyFile, positions: Positions, source: Path) -> Policy:
    """Resolve references and inheritance; raises ``ConfigError`` listing every problem."""
    compiler = _Compiler(raw, positions)
    categories = compiler.categories()
    groups = compiler.groups(categories)
    compiler.identity(groups)
    allow, block = compiler.local(categories)
    no_decrypt_categories, no_decrypt_hosts = compiler.no_decrypt(categories)
    tcp_passthrough = compiler.tcp_passthrough()
    content = compiler.content(source.parent / PHRASES_FILE)
    if compiler.problems:
        # An inherited rule is compiled once per heir; report each mistake once.
        raise ConfigError(list(dict.fromkeys(compiler.problems)))
    list_categories: dict[str, list[str]] = {}
    for cat in categories.values():
        for list_name in cat.lists:
            list_categories.setdefault(list_name, []).append(cat.name)
    for category in set(block.values()):
        list_categories[LOCAL_BLOCK_PREFIX + category] = [category]
    return Policy(
        source=source,
        school=raw.school,
        timezone=ZoneInfo(raw.timezone),
        identity=raw.identity,
        categories=categories,
        groups=groups,
        list_categories={k: tuple(v) for k, v in list_categories.items()},
        local_allow=allow,
        local_block=block,
        approvers=tuple(raw.approvers),
        users=frozenset(compiler.users),
        lines=dict(positions.lines),
        no_decrypt_categories=no_decrypt_categories,
        no_decrypt_hosts=no_decrypt_hosts,
        tcp_passthrough=tcp_passthrough,
        content=content,
    )


def parse_policy(text: str, source: Path) -> Policy:
    """Validate and compile policy text (for ``policy apply`` and tests)."""
    data, positions = parse_yaml(text, str(source))
    return compile_policy(validate(PolicyFile, data, positions), positions, source)


def load_policy(path: Path) -> Policy:
    """Load, validate and compile ``policy.yaml``; raises ``ConfigError``."""
    data, positions = load_yaml(path)
    return compile_policy(validate(PolicyFile, data, positions), positions, path)
