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
function says yes, from the filter's one decision on the connection's host
made at the ClientHello (``HostDecision``, never decided again here): it must
cover every name the tunnel was opened with (the CONNECT host and the SNI)
and allow them. A host blocked outright, blocked except for a path some local
entry or override opens (its root is blocked), or a suspended user's, stays
lazy; so does a search engine that safe search refuses for the group (a rule
on the name alone, applied per request inside): no upstream connection unless
a request inside is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from blocklists.normalise import BadURL, normalise_host
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.safesearch import Level, lock_for
from proxy.tlspolicy import HostDecision


def may_connect_early(
    fs: Filterset,
    identity: Identity,
    decided: HostDecision | None,
    names: Iterable[str],
) -> bool:
    """True when ``decided``, made at the ClientHello, allows and covers every one of ``names``."""
    if decided is None or decided.via != "SNI" or decided.decision.blocked:
        return False
    level = fs.policy.groups[identity.group].safe_search
    count = 0
    for name in names:
        count += 1
        if not decided.covers(name):
            return False  # decided on other names (a stale or unrelated decision)
        if level != "off":
            try:
                lock = lock_for(normalise_host(name), cast(Level, level))
            except BadURL:
                return False
            if lock is not None and lock.blocked:
                return False
    return count > 0
