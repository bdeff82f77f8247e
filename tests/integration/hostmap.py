"""A mitmproxy script for tests only: send chosen host names to the local origin.

mitmproxy has no hosts file, and the tests must play Google, Bing, YouTube
and the rest without leaving 127.0.0.1. The integration tests load this
file with ``--set scripts=tests/integration/hostmap.py`` and pass the map in
the environment variable ``SCHOOLGATE_TEST_HOSTMAP`` as JSON::

    {"hosts": ["www.google.com", ...], "ports": {"80": 40001, "443": 40002}}

When mitmproxy opens an upstream connection to a listed host, on a listed
port, the address is rewritten to 127.0.0.1 and the mapped port; the TLS
SNI stays the real name, so the origin's certificate must list it. Nothing
in Schoolgate's own code knows this file exists.
"""

from __future__ import annotations

import json
import os

from mitmproxy.proxy import server_hooks

_MAP = json.loads(os.environ.get("SCHOOLGATE_TEST_HOSTMAP", '{"hosts": [], "ports": {}}'))
HOSTS = frozenset(h.lower() for h in _MAP["hosts"])
PORTS = {int(k): int(v) for k, v in _MAP["ports"].items()}


def server_connect(data: server_hooks.ServerConnectionHookData) -> None:
    address = data.server.address
    if address is None:
        return
    host, port = str(address[0]).lower().rstrip("."), int(address[1])
    if host in HOSTS and port in PORTS:
        data.server.address = ("127.0.0.1", PORTS[port])
