"""Identity: who is asking, from their address or proxy login.

A named user's login or fixed address beats a network; the longest matching
network prefix beats a shorter one; anyone else is the default group.
Rules are compiled once per policy (users by address, networks longest
first) so a request costs a dict lookup and a short scan.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from proxy.policy import Policy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from, and how we know."""

    user: str | None
    group: str
    ip: str | None
    source: Literal["login", "address", "network", "default", "given", "directory"]
    device: str | None = None


def parse_ip(text: str) -> IPAddress:
    """An address as the proxy reports it; IPv4-mapped IPv6 (``::ffff:10.0.0.1``) is unmapped."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IdentityResolver:
    """Compiled identity rules of one policy."""

    def __init__(self, policy: Policy) -> None:
        rules = policy.identity
        self.default_group = rules.default_group
        self._by_name = {u.name: u.group for u in rules.users}
        self._by_ip: dict[IPAddress, tuple[str, str]] = {
            ip: (u.name, u.group) for u in rules.users for ip in u.ips
        }
        self._networks = sorted(
            ((n.cidr, n.group) for n in rules.networks),
            key=lambda item: item[0].prefixlen,
            reverse=True,
        )

    def group_of(self, user: str) -> str | None:
        return self._by_name.get(user)

    def resolve(self, ip: str | None, login: str | None = None) -> Identity:
        """The identity of a client address, with a proxy login when there is one."""
        address: IPAddress | None = None
        if ip is not None:
            try:
                address = parse_ip(ip)
            except ValueError:
                address = None
        shown = str(address) if address is not None else ip
        if login is not None:
            group = self._by_name.get(login)
            if group is not None:
                return Identity(login, group, shown, "login")
        if address is not None:
            named = self._by_ip.get(address)
            if named is not None:
                return Identity(named[0], named[1], shown, "address")
            for network, group in self._networks:
                if address.version == network.version and address in network:
                    return Identity(login, group, shown, "network")
        return Identity(login, self.default_group, shown, "default")
