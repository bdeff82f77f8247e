"""explain's protections: what the shipped policy's groups get on a request, beside the decision."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocklists.normalise import normalise_url
from proxy.explain import Protection, group_protections
from proxy.policy import Policy, load_policy

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "config" / "policy.yaml")


def of(policy: Policy, group: str, url: str) -> dict[str, Protection]:
    return {p.name: p for p in group_protections(policy.groups[group], normalise_url(url))}


def test_a_pupil_search_on_google_has_safe_search_forced(policy: Policy) -> None:
    """Strict safe search names the engine and what is forced on it."""
    found = of(policy, "pupil", "https://www.google.co.uk/search?q=x")["safe_search"]
    assert found.applies
    assert found.detail == {"level": "strict", "engine": "google"}
    assert "safe=active" in found.says


def test_safe_search_off_for_the_head_says_so(policy: Policy) -> None:
    """The head's group has safe search off: it does not apply, and says why."""
    found = of(policy, "head", "https://www.google.co.uk/search?q=x")["safe_search"]
    assert not found.applies
    assert found.says == "off for group head"


def test_an_engine_that_cannot_be_locked_is_blocked(policy: Policy) -> None:
    """A search engine with no safe mode to force is said to be blocked, not passed."""
    found = of(policy, "pupil", "https://search.yahoo.com/search?p=x")["safe_search"]
    assert found.applies
    assert "cannot be locked" in found.says


def test_a_tunnel_to_another_port_is_refused_for_pupils_not_the_head(policy: Policy) -> None:
    """8443 is refused for a pupil, allowed for the head (allowed_ports: [443, 8443])."""
    pupil = of(policy, "pupil", "https://example.com:8443/")["ports"]
    head = of(policy, "head", "https://example.com:8443/")["ports"]
    assert pupil.says.startswith("8443 refused")
    assert head.says.startswith("8443 allowed")
    assert pupil.detail == {"port": 8443, "allowed": ["443"]}


def test_downloads_content_and_doh_follow_the_group(policy: Policy) -> None:
    """A pupil's downloads, content analysis and DoH rules are shown; staff have no analysis."""
    pupil = of(policy, "pupil", "https://example.com/")
    assert pupil["downloads"].detail == {
        "block": ["executable", "installer", "script"],
        "max_mb": 100,
    }
    assert "larger than 100 MB" in pupil["downloads"].says
    assert pupil["content"].applies
    assert pupil["content"].detail["action"] == "block"
    assert pupil["doh"].says == "DNS-over-HTTPS requests are unacceptable"
    staff = of(policy, "staff", "https://example.com/")
    assert not staff["content"].applies
    assert not staff["downloads"].applies
