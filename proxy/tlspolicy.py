"""TLS without decryption: intercept, pass through untouched, or refuse, from the host alone.

``choose`` is pure (the filterset, who is asking, the TLS SNI and the
CONNECT host are arguments). A connection is passed through undecrypted
when the group does not trust the school's certificate (``intercept:
false``: guests, BYOD) or when a host is on the policy's ``no_decrypt``
list (by host or category). Such a connection can only be filtered on its
host names, so it is decided as its root URL (``https://HOST/``) would be:
blocked there means refused. Safe search cannot be forced by rewriting
requests on a connection that is not decrypted, so for groups with safe
search on a search engine's tunnel is connected to the address of the
engine's locked service (``connect_to``: ``forcesafesearch.google.com`` and
the like), and an engine with no such service is refused. Every other
connection is intercepted, and the filter decides on each request inside it.

HTTPS with no SNI to a raw IP address follows the group's
``https_without_sni``: ``block`` refuses it, ``filter`` decides on the IP
address as the host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from blocklists.normalise import BadURL, normalise_host, normalise_parts
from proxy.decision import Decision
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.safesearch import Level, lock_for, tunnel_target

_SEVERITY = {None: 0, "unacceptable": 1, "illegal": 2}


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


def _stricter(a: Decision, b: Decision) -> Decision:
    if a.blocked != b.blocked:
        return a if a.blocked else b
    return b if _SEVERITY[b.incident] > _SEVERITY[a.incident] else a


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
    *,
    sni: str | None,
    connect_host: str | None,
    when: datetime,
) -> TlsChoice:
    """Intercept, pass through or refuse one TLS connection, before any handshake."""
    group = fs.policy.groups[identity.group]
    no_name = sni is None and (connect_host is None or is_ip(connect_host))
    if no_name and group.https_without_sni == "block":
        return TlsChoice(
            "refuse",
            f"HTTPS to an IP address with no host name (no SNI) is blocked for group {group.name}",
            connect_host,
        )
    hosts: list[str] = []
    for name in (sni, connect_host):
        if not name:
            continue
        try:
            host = normalise_host(name)
        except BadURL:
            return TlsChoice("refuse", f"unreadable host name {name!r}", None)
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        return TlsChoice("intercept", "no host name: decided per request", None)

    passthrough = None
    if not group.intercept:
        passthrough = f"group {group.name} does not trust the school's certificate"
    else:
        for host in hosts:
            passthrough = no_decrypt_reason(fs, host)
            if passthrough:
                break
    if passthrough is None:
        return TlsChoice("intercept", "decrypted and filtered per request", hosts[0])

    worst: Decision | None = None
    worst_host = hosts[0]
    for host in hosts:
        decision = fs.decide_url(identity, normalise_parts("https", host, 443, "/"), when)
        if worst is None or _stricter(worst, decision) is decision:
            worst, worst_host = decision, host
    assert worst is not None
    if worst.blocked:
        return TlsChoice("refuse", f"{passthrough}; {worst.rule}", worst_host, worst)
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
                    worst,
                    connect_to=target,
                )
            if lock is not None:
                return TlsChoice(
                    "refuse",
                    f"{passthrough}; safe search cannot be forced on {lock.engine} "
                    "without decryption",
                    host,
                )
    return TlsChoice("pass", passthrough, worst_host, worst)
