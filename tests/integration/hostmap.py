"""For tests only: ``schoolgate run`` with chosen host names sent to the local origin.

mitmproxy has no hosts file, and the tests must play Google, Bing, YouTube
and the rest without leaving 127.0.0.1. ``python -m tests.integration.hostmap
run ...`` runs the real ``schoolgate`` command line with one extra mitmproxy
addon, ``HostMap``, appended to the proxy's addons; the map comes from the
environment variable ``SCHOOLGATE_TEST_HOSTMAP`` as JSON::

    {"hosts": ["www.google.com", ...], "ports": {"80": 40001, "443": 40002}}

When mitmproxy opens an upstream connection to a listed host on a listed
port, the address becomes 127.0.0.1 and the mapped port; the TLS SNI stays
the real name, so the origin's certificate must list it. Nothing in
Schoolgate's own code knows this module exists.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mitmproxy.proxy import server_hooks


class HostMap:
    def __init__(self, spec: str) -> None:
        found = json.loads(spec)
        self.hosts = frozenset(h.lower() for h in found["hosts"])
        self.ports = {int(k): int(v) for k, v in found["ports"].items()}

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is None:
            return
        host, port = str(address[0]).lower().rstrip("."), int(address[1])
        if host in self.hosts and port in self.ports:
            data.server.address = ("127.0.0.1", self.ports[port])


def main() -> None:
    from proxy import cli, master

    spec = os.environ.get("SCHOOLGATE_TEST_HOSTMAP", '{"hosts": [], "ports": {}}')
    real = master.proxy_addons

    def with_hostmap() -> list[Any]:
        return [*real(), HostMap(spec)]

    master.proxy_addons = with_hostmap
    cli.main()


if __name__ == "__main__":
    main()
