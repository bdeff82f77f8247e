"""The decision: precedence, schedules, nominated users, and what it says about itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blocklists.index import Hit, IndexBuilder
from blocklists.normalise import normalise_url
from proxy.decision import WITHHELD, Decision, decide, stricter
from proxy.filterset import local_index
from proxy.identity import Identity
from proxy.policy import Policy, parse_policy

POLICY = """\
school: S
timezone: Europe/London
identity:
  default_group: guest
  users:
    - {name: j.meer, group: staff}
    - {name: a.n.other, group: staff}
schedules:
  lunchtime: {days: [mon, tue, wed, thu, fri], from: "12:00", to: "13:15"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  gambling: {lists: [ut1/gambling]}
  games: {lists: [ut1/games], incident: non_educational_in_lessons}
  social: {lists: [ut1/social], incident: social_media}
  news: {lists: [ut1/news]}
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
      gambling: blocked
      games: {acceptable_at: lunchtime}
      social: unacceptable
  staff:
    default: acceptable
    categories:
      social: {acceptable_for: [j.meer]}
  infants:
    default: blocked
    categories:
      news: acceptable
  guest: {inherits: pupil}
local:
  allow: [www.bbc.co.uk/bitesize, allowed.example]
  block:
    - {entry: bad.example, category: gambling}
    - {entry: worse.example, category: adult}
"""

LISTS = {
    "iwf": ["abuse.example/page"],
    "ut1/adult": ["adult.example", "bbc.co.uk", "allowed.example"],
    "ut1/gambling": ["casino.example"],
    "ut1/games": ["games.example"],
    "ut1/social": ["social.example", "both.example"],
    "ut1/news": ["news.example", "both.example"],
}

MONDAY_NOON = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)  # 12:30 in London (GMT)
MONDAY_NINE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SATURDAY_NOON = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
SUMMER_LUNCH_UTC = datetime(2026, 6, 15, 11, 30, tzinfo=UTC)  # 12:30 BST


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY, Path("p.yaml"))


def run(
    policy: Policy, url: str, group: str, user: str | None = None, when: datetime = MONDAY_NINE
) -> Decision:
    builder = IndexBuilder()
    for name, entries in LISTS.items():
        builder.add_all(name, entries)
    lists = builder.freeze()
    local = local_index(policy)
    canonical = normalise_url(url)
    hits = lists.match(canonical.host, canonical.path) + local.match(canonical.host, canonical.path)
    return decide(policy, Identity(user, group, None, "given"), canonical, hits, when)


@pytest.mark.parametrize(
    ("url", "group", "decision", "category", "rule_part"),
    [
        ("http://abuse.example/page/1", "staff", "block", "child_abuse", "illegal"),
        ("http://adult.example/", "pupil", "block", "adult", "adult is unacceptable"),
        ("http://www.adult.example/x", "pupil", "block", "adult", "adult is unacceptable"),
        ("http://adult.example/", "staff", "allow", "adult", "adult is acceptable"),
        ("http://casino.example/", "pupil", "block", "gambling", "gambling is blocked"),
        ("http://bad.example/", "staff", "block", "gambling", "local block entry bad.example"),
        ("http://www.bbc.co.uk/bitesize/maths", "pupil", "allow", None, "local allow"),
        ("http://www.bbc.co.uk/news", "pupil", "block", "adult", "adult is unacceptable"),
        ("http://www.bbc.co.uk/bitesizes", "pupil", "block", "adult", "adult is unacceptable"),
        ("http://allowed.example/", "pupil", "allow", None, "local allow"),
        ("http://plain.example/", "pupil", "allow", None, "default is acceptable"),
        ("http://plain.example/", "infants", "block", None, "default is blocked"),
        ("http://news.example/", "infants", "allow", "news", "news is acceptable"),
        ("http://both.example/", "pupil", "block", "social", "social is unacceptable"),
        ("http://games.example/", "guest", "block", "games", "outside lunchtime"),
    ],
)
def test_precedence(
    policy: Policy, url: str, group: str, decision: str, category: str | None, rule_part: str
) -> None:
    """Illegal, then local block, local allow, the group's action, the group's default."""
    found = run(policy, url, group)
    assert (found.decision, found.category) == (decision, category)
    assert rule_part in found.rule


def test_illegal_hit_never_shows_its_entry(policy: Policy) -> None:
    """The illegal list's entry is withheld even from the decision."""
    found = run(policy, "http://abuse.example/page", "pupil")
    assert found.incident == "illegal"
    assert found.matched is not None
    assert found.matched.entry == WITHHELD
    assert "abuse.example" not in str(found.as_dict())


def test_illegal_beats_local_allow(policy: Policy) -> None:
    """A local allow entry does not open an illegal entry."""
    found = decide(
        policy,
        Identity(None, "pupil", None, "given"),
        None,
        (Hit("local/allow", "x.example"), Hit("iwf", "x.example")),
        MONDAY_NINE,
    )
    assert found.blocked
    assert found.illegal


@pytest.mark.parametrize(
    ("when", "decision"),
    [
        (MONDAY_NOON, "allow"),
        (MONDAY_NINE, "block"),
        (SATURDAY_NOON, "block"),
        (SUMMER_LUNCH_UTC, "allow"),
    ],
)
def test_acceptable_at_follows_the_schedule_in_school_time(
    policy: Policy, when: datetime, decision: str
) -> None:
    """Games open at lunchtime on weekdays, in the school's timezone (BST in summer)."""
    assert run(policy, "http://games.example/", "pupil", when=when).decision == decision


def test_outside_the_schedule_raises_the_category_incident(policy: Policy) -> None:
    """Games in lesson time are unacceptable, since the category names an incident type."""
    found = run(policy, "http://games.example/", "pupil")
    assert (found.incident, found.incident_type) == ("unacceptable", "non_educational_in_lessons")


def test_acceptable_for_opens_only_for_nominated_users(policy: Policy) -> None:
    """Social media is open to j.meer and not to another member of staff."""
    assert run(policy, "http://social.example/", "staff", "j.meer").decision == "allow"
    other = run(policy, "http://social.example/", "staff", "a.n.other")
    assert other.decision == "block"
    assert other.incident_type == "social_media"


def test_blocked_raises_no_incident(policy: Policy) -> None:
    """'blocked' blocks quietly; 'unacceptable' raises an incident."""
    assert run(policy, "http://casino.example/", "pupil").incident is None
    assert run(policy, "http://adult.example/", "pupil").incident == "unacceptable"


def test_decision_as_dict_has_the_documented_keys(policy: Policy) -> None:
    """explain --json needs decision, category, action, incident, matched and rule."""
    found = run(policy, "http://adult.example/", "pupil").as_dict()
    assert {"decision", "category", "action", "incident", "matched", "rule"} <= set(found)
    assert found["matched"] == {"list": "ut1/adult", "entry": "adult.example"}


def test_named_constructors_say_who_decided() -> None:
    """Decision.block/allow/failed carry the deciding part; the policy's own say "policy"."""
    blocked = Decision.block(None, "port 22", by="circumvention")
    assert (blocked.decision, blocked.by, blocked.group, blocked.action) == (
        "block",
        "circumvention",
        "unknown",
        "blocked",
    )
    assert Decision.failed(None, "bug").by == "failsafe"
    assert Decision.allow(None, "form", by="review").as_dict()["by"] == "review"


def test_stricter_prefers_a_block_then_the_graver_incident() -> None:
    """One stricter(): block beats allow; illegal beats unacceptable beats none."""
    allow = Decision.allow(None, "ok", by="policy")
    plain = Decision.block(None, "b", by="policy")
    grave = Decision.block(None, "i", by="policy", incident="illegal")
    assert stricter(allow, plain) is plain
    assert stricter(plain, allow) is plain
    assert stricter(plain, grave) is grave
    assert stricter(grave, plain) is grave


def test_the_one_redaction_rule_withholds_where_an_illegal_hit_was() -> None:
    """An illegal decision shows neither host, path nor rule; any other shows them."""
    grave = Decision.block(None, "category child_abuse", by="policy", incident="illegal")
    assert grave.shown("abuse.example", "/x") == ("(withheld)", "(withheld)", None)
    assert grave.shown("abuse.example", None) == ("(withheld)", None, None)
    plain = Decision.block(None, "adult", by="policy")
    assert plain.shown("a.example", "/x") == ("a.example", "/x", "adult")
