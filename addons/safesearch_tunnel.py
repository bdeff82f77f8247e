"""SafeSearchTunnel: where an undecrypted search engine's tunnel really goes.

For TLS that is not decrypted (a group with ``intercept: false``, or a
``no_decrypt`` host) the TLS policy decides, at the ClientHello, that a search
engine's tunnel is connected to the engine's locked service
(``TlsChoice.connect_to``: ``forcesafesearch.google.com`` for Google,
``strict.bing.com``, ``restrict.youtube.com`` / ``restrictmoderate.youtube.com``,
``safe.duckduckgo.com``) and puts that name in the server connection's
address, keeping the port. The names in the browser's request do not change,
so the certificate the engine presents stays valid for them.

This addon, at ``server_connect`` (the moment before mitmproxy opens the
connection), resolves those names itself when the option
``schoolgate_safesearch_addresses`` pins them (``NAME=ADDRESS[:PORT]``,
comma-separated): a school whose DNS is filtered can pin Google's documented
address, and the tests point the names at loopback origins. Without a pin,
mitmproxy resolves the name through the system's DNS. It re-decides nothing:
it only acts on a connection whose address the TLS policy already set to one
of the four names, and counts them.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from proxy.safesearch import TUNNEL_TARGETS

log = logging.getLogger("schoolgate.safesearch")
_NAMES = frozenset(TUNNEL_TARGETS.values())


def parse_addresses(spec: str) -> dict[str, tuple[str, int | None]]:
    """``NAME=ADDRESS[:PORT],…`` → {name: (address, port)}; ``ValueError`` names a bad item."""
    found: dict[str, tuple[str, int | None]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, target = item.partition("=")
        name = name.strip().lower().rstrip(".")
        if not sep or name not in _NAMES:
            raise ValueError(f"{item!r}: expected NAME=ADDRESS with NAME one of {sorted(_NAMES)}")
        host, port = target.strip(), None
        if host.startswith("["):
            host, _, rest = host[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else None
        elif host.count(":") == 1:
            host, port_text = host.split(":")
            port = int(port_text)
        if not host or (port is not None and not 0 < port < 65536):
            raise ValueError(f"{item!r}: bad address")
        found[name] = (host, port)
    return found


class SafeSearchTunnel:
    def __init__(self) -> None:
        self.addresses: dict[str, tuple[str, int | None]] = {}
        self.tunnels = 0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_safesearch_addresses",
            str,
            "",
            "Pin the safe-search names (forcesafesearch.google.com, strict.bing.com, "
            "restrict.youtube.com, restrictmoderate.youtube.com, safe.duckduckgo.com) "
            "to addresses: NAME=ADDRESS[:PORT],... Empty: resolved by DNS.",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_safesearch_addresses" in updated:
            try:
                self.addresses = parse_addresses(ctx.options.schoolgate_safesearch_addresses)
            except ValueError as exc:
                raise exceptions.OptionsError(f"schoolgate_safesearch_addresses: {exc}") from None

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is None or str(address[0]) not in _NAMES:
            return
        name, port = str(address[0]), int(address[1])
        self.tunnels += 1
        pinned = self.addresses.get(name)
        if pinned is not None:
            data.server.address = (pinned[0], pinned[1] or port)
        log.debug("safe search tunnel to %s (%s)", name, data.server.address)
