"""decide(rules=...): every rule that matched, the one that won, and why the others did not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklists.index import IndexBuilder
from blocklists.normalise import normalise_url
from proxy.controls import ActiveOverride, ActiveSuspension
from proxy.decision import WITHHELD, Decision, Rule, decide
from proxy.filterset import local_index
from proxy.identity import Identity
from proxy.policy import Policy, parse_policy

POLICY = """\
school: S
timezone: Europe/London
identity:
  default_group: guest
  users:
    - {name: j.meer, group: pupil}
schedules:
  lunchtime: {days: [mon, tue, wed, thu, fri], from: "12:00", to: "13:15"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  gambling: {lists: [ut1/gambling]}
  games: {lists: [ut1/games]}
  social: {lists: [ut1/social], incident: social_media}
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
      gambling: blocked
      games: {acceptable_at: lunchtime}
      social: unacceptable
  guest: {inherits: pupil}
local:
  allow: [open.example]
  block:
    - {entry: bad.example, category: gambling}
"""

LISTS = {
    "iwf": ["abuse.example/page"],
    "ut1/adult": ["adult.example", "abuse.example", "open.example", "bad.example"],
    "ut1/gambling": ["casino.example", "games.example"],
    "ut1/games": ["games.example"],
    "ut1/social": ["social.example", "games.example"],
    "ut1/bank": ["games.example"],
}

MONDAY_NINE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MONDAY_NOON = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
PUPIL = Identity("p.smith", "pupil", None, "given")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, Path("p.yaml"))


def explain(
    policy: Policy,
    url: str,
    when: datetime = MONDAY_NINE,
    *,
    overrides: tuple[ActiveOverride, ...] = (),
    suspended: ActiveSuspension | None = None,
) -> tuple[Decision, list[Rule]]:
    builder = IndexBuilder()
    for name, entries in LISTS.items():
        builder.add_all(name, entries)
    canonical = normalise_url(url)
    hits = builder.freeze().match(canonical.host, canonical.path) + local_index(policy).match(
        canonical.host, canonical.path
    )
    rules: list[Rule] = []
    decision = decide(
        policy, PUPIL, canonical, hits, when, overrides=overrides, suspended=suspended, rules=rules
    )
    assert decision == decide(
        policy, PUPIL, canonical, hits, when, overrides=overrides, suspended=suspended
    ), "asking for the rules must not change the decision"
    return decision, rules


def won(rules: list[Rule]) -> Rule:
    (winner,) = [rule for rule in rules if rule.won]
    return winner


def by_kind(rules: list[Rule], kind: str, category: str | None = None) -> Rule:
    (found,) = [r for r in rules if r.kind == kind and (category is None or r.category == category)]
    return found


def test_every_matching_category_is_listed_and_the_strictest_wins(policy: Policy) -> None:
    """games.example is in four lists: each category says its piece, social (unacceptable) wins."""
    decision, rules = explain(policy, "http://games.example/")
    assert decision.category == "social"
    assert won(rules) == by_kind(rules, "category", "social")
    assert won(rules).why == f"decides: {decision.rule}"
    games = by_kind(rules, "category", "games")
    assert (games.says, games.outcome) == ("block", "blocked")
    assert "outside lunchtime" in games.rule
    assert games.why == "less strict than category social (unacceptable)"
    assert by_kind(rules, "category", "gambling").why.startswith("less strict than category social")
    bank = by_kind(rules, "list")
    assert bank.says == "none"
    assert bank.matched is not None
    assert bank.matched.list == "ut1/bank"
    assert bank.why == "no category of the policy uses this list"
    assert by_kind(rules, "default").why.startswith("a list matched")


def test_the_schedule_shows_in_the_category_rule(policy: Policy) -> None:
    """At lunchtime the games rule says allow, inside the schedule, and is ignored for social."""
    _, rules = explain(policy, "http://games.example/", MONDAY_NOON)
    games = by_kind(rules, "category", "games")
    assert games.says == "allow"
    assert "inside lunchtime" in games.rule
    assert not games.won


def test_a_local_block_beats_the_lists(policy: Policy) -> None:
    """bad.example is locally blocked and in ut1/adult: the local entry wins, adult is ignored."""
    decision, rules = explain(policy, "http://bad.example/")
    assert won(rules).kind == "local_block"
    assert decision.rule == won(rules).rule
    assert by_kind(rules, "category", "adult").why == "the school's local block entries come first"


def test_a_local_allow_beats_the_group_and_the_override_is_not_needed(policy: Policy) -> None:
    """open.example is locally allowed though in ut1/adult; an override for it is not needed."""
    override = ActiveOverride(
        7, "host", "open.example", "group", "pupil", MONDAY_NINE - timedelta(days=1),
        MONDAY_NINE + timedelta(days=1), "head", "topic",
    )  # fmt: skip
    decision, rules = explain(policy, "http://open.example/", overrides=(override,))
    assert decision.decision == "allow"
    assert won(rules).kind == "local_allow"
    adult = by_kind(rules, "category", "adult")
    assert adult.says == "block"
    assert adult.why == "the school's local allow entries come before the group's rules"
    assert by_kind(rules, "override").why.endswith("the override is not needed")


def test_an_override_that_opens_a_blocked_site_wins(policy: Policy) -> None:
    """An override for casino.example opens it; the gambling rule is listed as overridden."""
    override = ActiveOverride(
        9, "host", "casino.example", "group", "pupil", MONDAY_NINE - timedelta(days=1),
        MONDAY_NINE + timedelta(days=1), "head", "topic",
    )  # fmt: skip
    decision, rules = explain(policy, "http://casino.example/", overrides=(override,))
    assert decision.override == 9
    assert won(rules) == by_kind(rules, "override")
    assert by_kind(rules, "category", "gambling").why == "override #9 opens it"


def test_a_suspension_blocks_and_says_why_the_rest_is_ignored(policy: Policy) -> None:
    """A suspended pupil is blocked on an allowed site; the default is ignored because of it."""
    suspension = ActiveSuspension(3, "p.smith", MONDAY_NINE - timedelta(hours=1), None, "m", "dsl")
    decision, rules = explain(policy, "http://plain.example/", suspended=suspension)
    assert decision.action == "suspended"
    assert won(rules).kind == "suspension"
    assert by_kind(rules, "default").why.startswith("the user's access is suspended")


def test_an_illegal_hit_wins_and_withholds_every_entry(policy: Policy) -> None:
    """abuse.example/page is illegal and adult: illegal wins, and no rule shows where it went."""
    decision, rules = explain(policy, "http://abuse.example/page/1")
    assert decision.illegal
    assert won(rules).kind == "illegal"
    adult = by_kind(rules, "category", "adult")
    assert adult.why.startswith("category child_abuse is illegal")
    for rule in rules:
        if rule.matched is not None:
            assert rule.matched.entry == WITHHELD
        assert "abuse.example" not in str(rule.as_dict())


def test_no_list_matched_only_the_default_is_listed(policy: Policy) -> None:
    """An uncategorised site has one rule: the group's default, which wins."""
    decision, rules = explain(policy, "http://plain.example/")
    assert decision.decision == "allow"
    assert [(r.kind, r.won) for r in rules] == [("default", True)]
