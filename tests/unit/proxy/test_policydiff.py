"""The impact of a policy change: decisions that change, inherited ones too, entries in and out."""

from __future__ import annotations

from pathlib import Path

from proxy.policy import parse_policy
from proxy.policydiff import impact, text_diff
from tests.unit.proxy.test_decision import POLICY


def test_impact_lists_changed_decisions_and_entries() -> None:
    """Opening games for pupils shows for pupil and for guest (who inherits it); local entries."""
    new_text = POLICY.replace("games: {acceptable_at: lunchtime}", "games: acceptable").replace(
        "allow: [www.bbc.co.uk/bitesize, allowed.example]", "allow: [www.bbc.co.uk/bitesize]"
    )
    old = parse_policy(POLICY, Path("p.yaml"))
    new = parse_policy(new_text, Path("p.yaml"))
    assert impact(old, new) == [
        "group guest: games acceptable_at:lunchtime → acceptable",
        "group pupil: games acceptable_at:lunchtime → acceptable",
        "local allow entry removed: allowed.example",
    ]
    assert "-      games: {acceptable_at: lunchtime}" in text_diff(POLICY, new_text, "p.yaml")


def test_no_impact_for_a_comment() -> None:
    """A comment or layout change decides nothing differently."""
    policy = parse_policy(POLICY, Path("p.yaml"))
    assert impact(policy, parse_policy(POLICY + "# note\n", Path("p.yaml"))) == []
