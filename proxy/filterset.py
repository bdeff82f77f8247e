"""A filterset: the settings, policy, lists and identity rules in force, as one value.

The proxy holds exactly one filterset and swaps it whole when the policy or
the lists change, so a request always sees a consistent set. ``load`` checks
the policy against the lists it names (missing lists are warnings, except
for illegal categories; a local allow entry that would open an illegal
entry is an error), after ``proxy.illegal`` has put every list of an illegal
source in an illegal category, whatever the policy says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from blocklists.index import (
    CombinedMatcher,
    Hit,
    IndexBuilder,
    Matcher,
    MemoryIndex,
    split_entry,
)
from blocklists.normalise import CanonicalURL, normalise_host
from proxy.controls import NO_CONTROLS, Controls
from proxy.decision import Decision, decide
from proxy.identity import Identity, IdentityResolver
from proxy.illegal import dropped, enforce
from proxy.lists import ListError, build_matcher
from proxy.policy import LOCAL_ALLOW, LOCAL_BLOCK_PREFIX, IllegalProblem, Policy
from proxy.settings import Settings, load_settings
from proxy.trust import load_site_policy
from proxy.yamlfile import ConfigError, Problem


def local_index(policy: Policy) -> MemoryIndex:
    """The school's own entries, as lists ``local/allow`` and ``local/block:CATEGORY``."""
    builder = IndexBuilder()
    builder.add_all(LOCAL_ALLOW, policy.local_allow)
    for entry, category in policy.local_block.items():
        builder.add(LOCAL_BLOCK_PREFIX + category, entry)
    return builder.freeze()


def check_against_lists(
    policy: Policy, settings: Settings, lists: Matcher
) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) from matching the policy's list names against the sources.

    A list its source lacks is a warning and counts as empty, except for an
    illegal category, where it is a problem: nothing may weaken those.
    """
    counts = lists.counts()
    problems: list[Problem] = []
    warnings: list[Problem] = []
    for cat in policy.categories.values():
        for i, list_name in enumerate(cat.lists):
            loc = ("categories", cat.name, "lists", i)
            # The file and line: the trust's or the site's, when the policy is layered.
            file, line = policy.file_of(loc), policy.line_of(loc)
            source = list_name.split("/", 1)[0]
            if source not in settings.sources:
                known = ", ".join(settings.sources) or "none"
                problems.append(
                    Problem(
                        file, line, f"list {list_name!r}: no source {source!r} (sources: {known})"
                    )
                )
            elif list_name not in counts and cat.illegal:
                problems.append(
                    IllegalProblem(
                        file,
                        line,
                        f"list {list_name!r} of illegal category {cat.name!r} "
                        "is missing from its source",
                    )
                )
            elif list_name not in counts:
                warnings.append(
                    Problem(
                        file,
                        line,
                        f"warning: list {list_name!r} is not in source {source!r}; "
                        "it counts as empty",
                    )
                )
    illegal_lists = {n for c in policy.categories.values() if c.illegal for n in c.lists}
    for i, entry in enumerate(policy.local_allow):
        host, path = split_entry(entry)
        hits = lists.match(host, path or "/")
        matched = sorted({hit.list for hit in hits if hit.list in illegal_lists})
        if matched:
            # The entry is not repeated: it is an address on an illegal list (IWF, CTIRU),
            # which must appear in no output; the line number points the technician to it.
            problems.append(
                IllegalProblem(
                    policy.file_of(("local", "allow", i)),
                    policy.line_of(("local", "allow", i)),
                    f"local allow entry matches illegal list {', '.join(map(repr, matched))}: "
                    "it would open an illegal category; rejected",
                )
            )
    return problems, warnings


@dataclass(frozen=True)
class Filterset:
    settings: Settings
    policy: Policy
    lists: Matcher
    identities: IdentityResolver
    local: MemoryIndex
    matcher: Matcher
    warnings: list[Problem] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, policy: Policy, lists: Matcher) -> Filterset:
        policy, problems, warnings = enforce(policy, settings, lists)
        if problems:
            raise ConfigError(problems)
        problems, more = check_against_lists(policy, settings, lists)
        warnings += more
        if problems:
            raise ConfigError(problems)
        local = local_index(policy)
        return cls(
            settings=settings,
            policy=policy,
            lists=lists,
            identities=IdentityResolver(policy),
            local=local,
            matcher=CombinedMatcher(lists, local),
            warnings=warnings,
        )

    def with_policy(self, policy: Policy) -> Filterset:
        """This filterset with ``policy`` in force instead; one that drops an illegal list the
        policy in force names is refused (``proxy.illegal.dropped``)."""
        built = Filterset.build(self.settings, policy, self.lists)
        problems = dropped(self.policy, built.policy, self.settings)
        if problems:
            raise ConfigError(problems)
        return built

    def with_lists(self, lists: Matcher) -> Filterset:
        return Filterset.build(self.settings, self.policy, lists)

    def lookup(self, url: CanonicalURL) -> tuple[Hit, ...]:
        return self.matcher.match(url.host, url.path)

    def decide_url(
        self,
        identity: Identity,
        url: CanonicalURL,
        when: datetime,
        controls: Controls = NO_CONTROLS,
    ) -> Decision:
        return decide(
            self.policy,
            identity,
            url,
            self.lookup(url),
            when,
            overrides=controls.overrides_for(identity, when),
            suspended=controls.suspension_of(identity, when),
        )

    def decide_host(
        self,
        identity: Identity,
        host: str,
        when: datetime,
        controls: Controls = NO_CONTROLS,
    ) -> Decision | None:
        """A decision from the host alone, or None when the path could change it.

        Only a block can be final here: a local allow entry (or an override)
        with a path under this host could still open part of it, and any
        path entry under an allowed host could still block part of it.
        """
        host = normalise_host(host)
        overrides = controls.overrides_for(identity, when)
        decision = decide(
            self.policy,
            identity,
            None,
            self.matcher.match(host, None),
            when,
            overrides=overrides,
            suspended=controls.suspension_of(identity, when),
            host=host,
        )
        if not decision.blocked:
            return None
        if decision.illegal:
            return decision
        if self.local.has_paths(host) or any(o.path_under(host) for o in overrides):
            return None
        return decision


def load_filterset(config_dir: Path) -> Filterset:
    """Load settings, policy and lists from a configuration folder; raises ``ConfigError``."""
    settings = load_settings(config_dir)
    policy = load_site_policy(settings.policy, settings.trust_policy)
    try:
        lists = build_matcher(settings)
    except ListError as exc:
        raise ConfigError([Problem("", 0, str(exc))]) from None
    return Filterset.build(settings, policy, lists)
