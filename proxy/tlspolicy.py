"""TLS without decryption: intercept, pass through untouched, or refuse, from the host alone.

``choose`` is pure (the filterset, who is asking, the connection's host
names and the filter's one decision on them are arguments; it never decides
a host itself). A connection is passed through undecrypted
when the group does not trust the school's certificate (``intercept:
false``: guests, BYOD) or when a host is on the policy's ``no_decrypt``
list (by host or category). Such a connection can only be filtered on its
host names, so the filter decides it as its root URL (``https://HOST/``),
suspensions and overrides included: blocked there means refused. Safe
search cannot be forced by rewriting requests on a connection that is not
decrypted, so for groups with safe search on a search engine's tunnel is
connected to the address of the engine's locked service (``connect_to``:
``forcesafesearch.google.com`` and the like), and an engine with no such
service is refused. Every other connection is intercepted, and the filter
decides on each request inside it.

HTTPS with no SNI to a raw IP address, or with an SNI that cannot be read,
follows the group's ``https_without_sni``: ``block`` refuses it, ``filter``
decides on the IP address (or CONNECT host) as the host; an unreadable SNI is
never passed through undecrypted.

Raw TCP (anything neither TLS nor HTTP) is carried only to a ``host:port``
on the policy's ``tcp_passthrough`` list (``tcp_passthrough_allowed``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from blocklists.normalise import BadURL, normalise_host, normalise_parts
from proxy.controls import NO_CONTROLS, Controls
from proxy.decision import Decision, stricter
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.safesearch import Level, lock_for, tunnel_target


@dataclass(frozen=True, slots=True)
class HostDecision:
    """The one decision on a connection's host, made at CONNECT or from its TLS SNI.

    ``decision`` is the host's own (its root URL, with suspensions and
    overrides); ``final`` says the host alone decides every request inside
    (a block no path entry can change), so requests inside get it without
    being decided again. ``hosts`` are the canonical names it was made on.
    """

    hosts: tuple[str, ...]
    decision: Decision
    final: bool
    via: str  # CONNECT, SNI or destination

    def covers(self, host: str | None) -> bool:
        """Whether this decision was made on ``host`` (any spelling of it)."""
        if host is None:
            return False
        try:
            return normalise_host(host) in self.hosts
        except BadURL:
            return False


def decide_hosts(
    fs: Filterset,
    identity: Identity,
    names: tuple[str | None, ...],
    when: datetime,
    controls: Controls = NO_CONTROLS,
    via: str = "CONNECT",
) -> HostDecision | None:
    """The one decision on a connection's host names (None when it has none).

    A block the host alone makes (``Filterset.decide_host``) is final; else
    the stricter of the hosts' root URLs decides what passes undecrypted.
    An unreadable name is a final block.
    """
    hosts: list[str] = []
    final: Decision | None = None
    worst: Decision | None = None
    for name in names:
        if not name:
            continue
        try:
            host = normalise_host(name)
        except BadURL:
            blocked = Decision.block(identity, f"unreadable host name {name!r}", by="filter")
            return HostDecision(tuple(hosts), blocked, True, via)
        if host in hosts:
            continue
        hosts.append(host)
        by_host = fs.decide_host(identity, host, when, controls)
        if by_host is not None:
            final = by_host if final is None else stricter(final, by_host)
            continue
        root = fs.decide_url(identity, normalise_parts("https", host, 443, "/"), when, controls)
        worst = root if worst is None else stricter(worst, root)
    if final is not None:
        return HostDecision(tuple(hosts), final, True, via)
    if worst is None:
        return None
    return HostDecision(tuple(hosts), worst, False, via)


@dataclass(frozen=True, slots=True)
class TlsChoice:
    """What to do with one TLS connection, and why."""

    action: Literal["intercept", "pass", "refuse"]
    reason: str
    host: str | None = None
    decision: Decision | None = None
    # For a search engine passed through: the name whose address the tunnel goes to.
    connect_to: str | None = None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def no_decrypt_reason(fs: Filterset, host: str) -> str | None:
    """Why ``host`` (canonical) is never decrypted, or None."""
    policy = fs.policy
    for entry in policy.no_decrypt_hosts:
        if host == entry or host.endswith("." + entry):
            return f"{host} is on the no-decrypt list ({entry})"
    if policy.no_decrypt_categories:
        for hit in fs.matcher.match(host, None):
            for category in policy.list_categories.get(hit.list, ()):
                if category in policy.no_decrypt_categories:
                    return f"{host} is in no-decrypt category {category}"
    return None


def choose(
    fs: Filterset,
    identity: Identity,
    decided: HostDecision | None,
    *,
    no_name: bool = False,
    unreadable_sni: bool = False,
) -> TlsChoice:
    """Intercept, pass through or refuse one TLS connection, before any handshake.

    ``decided`` is the filter's one decision on the connection's host names
    (SNI, CONNECT host; ``decide_hosts``), None when it has none.
    ``no_name``: HTTPS to an IP address with no SNI. ``unreadable_sni``: an SNI was
    sent that could not be read; it counts as no SNI, and such a
    ClientHello is never passed through (the server may read a name in it).
    """
    hosts = decided.hosts if decided else ()
    decision = decided.decision if decided else None
    group = fs.policy.groups[identity.group]
    if (no_name or unreadable_sni) and group.https_without_sni == "block":
        what = "an unreadable SNI" if unreadable_sni else "no host name (no SNI)"
        return TlsChoice(
            "refuse",
            f"HTTPS with {what} is blocked for group {group.name}",
            hosts[0] if hosts else None,
        )
    passthrough = None
    if not group.intercept:
        passthrough = f"group {group.name} does not trust the school's certificate"
    else:
        for host in hosts:
            passthrough = no_decrypt_reason(fs, host)
            if passthrough:
                break
    if passthrough is None or not hosts or decision is None:
        if passthrough is not None and unreadable_sni:
            return TlsChoice("refuse", f"{passthrough}; the SNI cannot be read", None, decision)
        if passthrough is not None:
            return TlsChoice("refuse", f"{passthrough}; no host name to decide on", None)
        return TlsChoice(
            "intercept", "decrypted and filtered per request", hosts[0] if hosts else None
        )
    if unreadable_sni:
        return TlsChoice("refuse", f"{passthrough}; the SNI cannot be read", hosts[0], decision)
    if decision.blocked:
        return TlsChoice("refuse", f"{passthrough}; {decision.rule}", hosts[0], decision)
    if group.safe_search != "off":
        level = cast(Level, group.safe_search)
        for host in hosts:
            lock = lock_for(host, level)
            target = tunnel_target(host, level)
            if lock is not None and target is not None:
                return TlsChoice(
                    "pass",
                    f"{passthrough}; safe search locked by connecting to {target}",
                    host,
                    decision,
                    connect_to=target,
                )
            if lock is not None:
                return TlsChoice(
                    "refuse",
                    f"{passthrough}; safe search cannot be forced on {lock.engine} "
                    "without decryption",
                    host,
                )
    return TlsChoice("pass", passthrough, hosts[0], decision)


def canonical_hosts(names: tuple[str | None, ...]) -> tuple[str, ...]:
    """The canonical, distinct host names among ``names``; ``BadURL`` for an unreadable one."""
    hosts: list[str] = []
    for name in names:
        if not name:
            continue
        host = normalise_host(name)
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def tcp_passthrough_allowed(fs: Filterset, host: str | None, port: int | None) -> bool:
    """Whether raw TCP to ``host:port`` is on the policy's explicit ``tcp_passthrough`` list."""
    if host is None or port is None:
        return False
    try:
        canonical = normalise_host(host)
    except BadURL:
        return False
    return (canonical, port) in fs.policy.tcp_passthrough
