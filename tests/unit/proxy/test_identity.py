"""Identity: login and fixed addresses beat networks; the longest prefix wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.identity import IdentityResolver, parse_ip
from proxy.policy import parse_policy

POLICY = """\
school: S
identity:
  default_group: guest
  networks:
    - {cidr: 10.0.0.0/8, group: staff}
    - {cidr: 10.10.0.0/16, group: pupil}
    - {cidr: "2001:db8::/32", group: pupil}
  users:
    - {name: head.teacher, group: head, ips: [10.10.0.5, "2001:db8::5"]}
    - {name: j.meer, group: staff}
groups: {pupil: {}, staff: {}, head: {}, guest: {}}
"""


@pytest.fixture(scope="module")
def resolver() -> IdentityResolver:
    return IdentityResolver(parse_policy(POLICY, Path("p.yaml")))


@pytest.mark.parametrize(
    ("ip", "login", "user", "group", "source"),
    [
        ("10.10.3.4", None, None, "pupil", "network"),
        ("10.20.3.4", None, None, "staff", "network"),
        ("10.10.0.5", None, "head.teacher", "head", "address"),
        ("::ffff:10.10.0.5", None, "head.teacher", "head", "address"),
        ("::ffff:10.10.9.9", None, None, "pupil", "network"),
        ("2001:db8::5", None, "head.teacher", "head", "address"),
        ("2001:db8::77", None, None, "pupil", "network"),
        ("192.168.1.1", None, None, "guest", "default"),
        ("10.10.3.4", "j.meer", "j.meer", "staff", "login"),
        ("10.10.0.5", "j.meer", "j.meer", "staff", "login"),
        ("10.10.3.4", "stranger", "stranger", "pupil", "network"),
        ("not-an-ip", None, None, "guest", "default"),
        (None, None, None, "guest", "default"),
    ],
)
def test_resolve(
    resolver: IdentityResolver,
    ip: str | None,
    login: str | None,
    user: str | None,
    group: str,
    source: str,
) -> None:
    """Each address and login lands in the expected group, for the expected reason."""
    found = resolver.resolve(ip, login)
    assert (found.user, found.group, found.source) == (user, group, source)


def test_mapped_addresses_are_unmapped() -> None:
    """An IPv4-mapped IPv6 address is its IPv4 address."""
    assert str(parse_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
