"""Whether a tunnel may connect upstream before the client's TLS handshake.

Schoolgate runs mitmproxy with ``connection_strategy=lazy`` so that a blocked
host never gets an upstream connection. Lazy has a price on allowed HTTPS:
mitmproxy answers the client's ClientHello before it has met the server, so
it cannot offer the client what the server speaks. A browser offering h2
gets HTTP/2 from the proxy even when the server speaks only HTTP/1.1, and
mitmproxy's HTTP/2 (the pure-Python ``h2``) costs several times its HTTP/1.1
per request; measured with curl on keep-alive tunnels to an HTTP/1.1 origin,
bare mitmdump did about a third of its eager throughput (issue #18,
``make bench``). mitmproxy's eager strategy meets the server first and
mirrors it. ``addons.earlyconnect`` does the same, per tunnel, only when this
function says yes: every name the tunnel was decided on (the CONNECT host and
the SNI) is allowed by the host alone. A host blocked outright, blocked
except for a path some local entry or override opens, suspended access, or
a search engine safe search refuses for the group, stays lazy: no upstream
connection unless a request inside is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import cast

from blocklists.normalise import normalise_host
from proxy.controls import NO_CONTROLS, Controls
from proxy.decision import decide
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.safesearch import Level, lock_for


def may_connect_early(
    fs: Filterset,
    identity: Identity,
    hosts: Iterable[str],
    when: datetime,
    controls: Controls = NO_CONTROLS,
) -> bool:
    """True when every one of ``hosts`` is allowed on its name alone for ``identity``."""
    group = fs.policy.groups[identity.group]
    overrides = controls.overrides_for(identity, when)
    suspended = controls.suspension_of(identity, when)
    names = 0
    for name in hosts:
        host = normalise_host(name)
        names += 1
        decision = decide(
            fs.policy,
            identity,
            None,
            fs.matcher.match(host, None),
            when,
            overrides=overrides,
            suspended=suspended,
            host=host,
        )
        if decision.blocked:
            return False
        if group.safe_search != "off":
            lock = lock_for(host, cast(Level, group.safe_search))
            if lock is not None and lock.blocked:
                return False
    return names > 0
