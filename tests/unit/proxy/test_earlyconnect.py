"""Which tunnels may meet their server before the client's handshake: the filter's one
host decision at the ClientHello, covering and allowing every name, is all that is read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklists.index import IndexBuilder
from proxy.controls import ActiveSuspension, Controls
from proxy.earlyconnect import may_connect_early
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.policy import parse_policy
from proxy.settings import Settings, Source
from proxy.tlspolicy import HostDecision, decide_hosts

POLICY = """\
school: S
identity:
  default_group: pupil
  users:
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
categories:
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
groups:
  pupil:
    default: acceptable
    safe_search: strict
    categories: {adult: unacceptable}
  head:
    default: acceptable
local:
  allow: [adult.example/health]
"""
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PUPIL = Identity("p.one", "pupil", "10.10.0.9", "address")
HEAD = Identity("head.teacher", "head", "10.20.0.5", "address")


@pytest.fixture(scope="module")
def fs() -> Filterset:
    builder = IndexBuilder()
    builder.add("ut1/adult", "adult.example")
    builder.add("ut1/adult", "more-adult.example")
    policy = parse_policy(POLICY, Path("policy.yaml"))
    settings = Settings(sources={"ut1": Source(path=Path("/nonexistent"), format="ut1")})
    return Filterset.build(settings, policy, builder.freeze())


def early(
    fs: Filterset, identity: Identity, names: list[str], controls: Controls | None = None
) -> bool:
    """As the proxy does it: the filter decides the names at the ClientHello, once."""
    decided = decide_hosts(fs, identity, tuple(names), NOW, controls or Controls(), via="SNI")
    return may_connect_early(fs, identity, decided, names)


def test_allowed_names_connect_early(fs: Filterset) -> None:
    """A CONNECT host and SNI both allowed on their names: the tunnel may meet its server."""
    assert early(fs, PUPIL, ["lesson.example", "www.lesson.example"])


@pytest.mark.parametrize(
    "hosts",
    [
        ["more-adult.example"],  # blocked outright
        ["lesson.example", "more-adult.example"],  # an allowed CONNECT, a blocked SNI
        ["adult.example"],  # blocked but for a path the school opens: decided per request
        ["WWW.More-Adult.Example."],  # any spelling of a blocked name
        ["search.yahoo.com"],  # safe search cannot be locked there: blocked per request
        [],  # nothing decided
    ],
)
def test_anything_not_allowed_on_its_name_stays_lazy(fs: Filterset, hosts: list[str]) -> None:
    """Blocked names, path exceptions, unlockable engines, no name at all: no early connection."""
    assert not early(fs, PUPIL, hosts)


def test_a_decision_on_other_names_or_at_connect_is_not_read_as_the_sni_s(fs: Filterset) -> None:
    """Only the decision made at this ClientHello on these very names lets a tunnel go early."""
    at_connect = decide_hosts(fs, PUPIL, ("lesson.example",), NOW, Controls(), via="CONNECT")
    assert not may_connect_early(fs, PUPIL, at_connect, ["lesson.example"])
    other = decide_hosts(fs, PUPIL, ("lesson.example",), NOW, Controls(), via="SNI")
    assert isinstance(other, HostDecision)
    assert may_connect_early(fs, PUPIL, other, ["lesson.example"])
    assert not may_connect_early(fs, PUPIL, other, ["lesson.example", "elsewhere.example"])
    assert not may_connect_early(fs, PUPIL, None, ["lesson.example"])


def test_the_head_s_search_engine_connects_early(fs: Filterset) -> None:
    """Safe search off for the head: an unlockable engine is just another allowed host."""
    assert early(fs, HEAD, ["search.yahoo.com"])


def test_a_suspended_user_never_connects_early(fs: Filterset) -> None:
    """While a user's internet access is suspended, no tunnel of theirs meets a server."""
    suspension = ActiveSuspension(
        1, "head.teacher", NOW - timedelta(hours=1), None, "misuse", "a.dsl"
    )
    controls = Controls(suspensions={"head.teacher": (suspension,)})
    assert not early(fs, HEAD, ["lesson.example"], controls)
