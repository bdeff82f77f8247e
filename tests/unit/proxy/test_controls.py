"""Overrides and suspensions in the decision: who they cover, when they end, what they open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blocklists.index import IndexBuilder
from blocklists.normalise import normalise_url
from proxy.controls import ActiveOverride, ActiveSuspension, Controls, ScopeKind, WhatKind
from proxy.decision import Decision, decide
from proxy.filterset import local_index
from proxy.identity import Identity
from proxy.policy import Policy
from tests.unit.proxy.test_decision import LISTS, MONDAY_NINE, policy  # noqa: F401

START = MONDAY_NINE - timedelta(days=1)
END = MONDAY_NINE + timedelta(days=13)


def override(
    what_kind: WhatKind,
    what: str,
    scope_kind: ScopeKind = "group",
    scope: str | None = "pupil",
    ends: datetime = END,
    id: int = 7,
) -> ActiveOverride:
    return ActiveOverride(
        id, what_kind, what, scope_kind, scope, START, ends, "head.teacher", "Year 9 project"
    )


def run(
    policy: Policy,  # noqa: F811
    url: str,
    identity: Identity,
    controls: Controls,
    when: datetime = MONDAY_NINE,
) -> Decision:
    builder = IndexBuilder()
    for name, entries in LISTS.items():
        builder.add_all(name, entries)
    lists = builder.freeze()
    canonical = normalise_url(url)
    hits = lists.match(canonical.host, canonical.path) + local_index(policy).match(
        canonical.host, canonical.path
    )
    return decide(
        policy,
        identity,
        canonical,
        hits,
        when,
        overrides=controls.overrides_for(identity, when),
        suspended=controls.suspension_of(identity, when),
    )


PUPIL = Identity("p.pupil", "pupil", None, "given")
STAFF = Identity("j.meer", "staff", None, "given")


def test_host_override_opens_the_site_and_says_which(policy: Policy) -> None:  # noqa: F811
    """An approved host override opens a blocked site; the decision names the override."""
    controls = Controls.of([override("host", "casino.example")], [], MONDAY_NINE)
    decision = run(policy, "http://www.casino.example/x", PUPIL, controls)
    assert decision.decision == "allow"
    assert decision.override == 7
    assert decision.rule.startswith("override #7: casino.example for group:pupil")
    assert decision.as_dict()["override"] == 7


def test_override_is_only_for_its_scope(policy: Policy) -> None:  # noqa: F811
    """A group override does not open the site for another group or another user."""
    controls = Controls.of(
        [override("host", "casino.example"), override("host", "adult.example", "user", "x", id=8)],
        [],
        MONDAY_NINE,
    )
    assert run(
        policy, "http://casino.example/", Identity(None, "guest", None, "given"), controls
    ).blocked
    assert run(policy, "http://adult.example/", PUPIL, controls).blocked


def test_expired_override_stops_applying_at_its_end_time(policy: Policy) -> None:  # noqa: F811
    """The decision checks the request's time: allowed a second before the end, blocked at it."""
    ends = MONDAY_NINE + timedelta(hours=1)
    controls = Controls.of([override("host", "casino.example", ends=ends)], [], MONDAY_NINE)
    before = run(policy, "http://casino.example/", PUPIL, controls, ends - timedelta(seconds=1))
    at_end = run(policy, "http://casino.example/", PUPIL, controls, ends)
    assert before.decision == "allow"
    assert at_end.decision == "block"
    assert at_end.override is None


def test_override_does_not_apply_before_it_starts(policy: Policy) -> None:  # noqa: F811
    """An override approved for next week does not open the site today."""
    controls = Controls.of([override("host", "casino.example")], [], MONDAY_NINE)
    assert run(
        policy, "http://casino.example/", PUPIL, controls, START - timedelta(seconds=1)
    ).blocked


@pytest.mark.parametrize(
    "opened",
    [
        override("all", "*"),
        override("host", "abuse.example"),
        override("url", "abuse.example/page"),
        override("category", "child_abuse"),
        override("all", "*", "everyone", None),
    ],
    ids=["switch-off", "host", "url", "category", "everyone"],
)
def test_illegal_category_cannot_be_overridden(
    policy: Policy,  # noqa: F811
    opened: ActiveOverride,
) -> None:
    """No override of any kind opens an illegal category."""
    decision = run(
        policy, "http://abuse.example/page/1", PUPIL, Controls.of([opened], [], MONDAY_NINE)
    )
    assert decision.blocked
    assert decision.illegal
    assert decision.override is None


def test_category_override_opens_only_that_category(policy: Policy) -> None:  # noqa: F811
    """Opening social leaves a site that is also in another blocking category blocked."""
    controls = Controls.of([override("category", "games")], [], MONDAY_NINE)
    assert run(policy, "http://games.example/", PUPIL, controls).override == 7
    assert run(policy, "http://casino.example/", PUPIL, controls).blocked


def test_url_override_opens_only_its_path(policy: Policy) -> None:  # noqa: F811
    """A URL override opens that page and below, not the rest of the site."""
    controls = Controls.of([override("url", "adult.example/art")], [], MONDAY_NINE)
    assert run(policy, "http://adult.example/art/gallery", PUPIL, controls).decision == "allow"
    assert run(policy, "http://adult.example/other", PUPIL, controls).blocked


def test_switch_off_opens_local_blocks_but_not_for_others(policy: Policy) -> None:  # noqa: F811
    """A filter switch-off for one user opens everything but illegal, for that user only."""
    controls = Controls.of([override("all", "*", "user", "j.meer")], [], MONDAY_NINE)
    assert run(policy, "http://worse.example/", STAFF, controls).decision == "allow"
    other = Identity("a.n.other", "staff", None, "given")
    assert run(policy, "http://worse.example/", other, controls).blocked


def test_override_not_named_when_the_policy_allows_anyway(policy: Policy) -> None:  # noqa: F811
    """Explain names an override only when it is what opened the request."""
    controls = Controls.of([override("host", "example.org")], [], MONDAY_NINE)
    decision = run(policy, "http://example.org/", PUPIL, controls)
    assert decision.decision == "allow"
    assert decision.override is None


def test_suspended_user_is_blocked_except_the_local_allow_list(policy: Policy) -> None:  # noqa: F811
    """A suspension blocks every site, even an overridden one, but not the local allow list."""
    suspension = ActiveSuspension(3, "p.pupil", START, None, "misuse", "head.teacher")
    controls = Controls.of([override("all", "*")], [suspension], MONDAY_NINE)
    blocked = run(policy, "http://example.org/", PUPIL, controls)
    assert blocked.blocked
    assert blocked.action == "suspended"
    assert "suspended until restored by head.teacher: misuse" in blocked.rule
    assert run(policy, "http://www.bbc.co.uk/bitesize/x", PUPIL, controls).decision == "allow"
    assert run(policy, "http://abuse.example/page", PUPIL, controls).illegal


def test_suspension_ends_at_its_end_time(policy: Policy) -> None:  # noqa: F811
    """A suspension with an end no longer applies from that moment."""
    ends = MONDAY_NINE + timedelta(hours=2)
    controls = Controls.of(
        [], [ActiveSuspension(3, "p.pupil", START, ends, "misuse", "h")], MONDAY_NINE
    )
    assert run(policy, "http://example.org/", PUPIL, controls, ends - timedelta(seconds=1)).blocked
    assert not run(policy, "http://example.org/", PUPIL, controls, ends).blocked


def test_unnamed_user_is_never_taken_for_a_suspended_one() -> None:
    """Suspensions are by login name: an address-only identity is not matched."""
    controls = Controls.of([], [ActiveSuspension(1, "x", START, None, "r", "h")], datetime.now(UTC))
    assert (
        controls.suspension_of(Identity(None, "pupil", "10.0.0.1", "network"), MONDAY_NINE) is None
    )
