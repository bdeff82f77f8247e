"""Safe search without decryption, through the real proxy, with a resolver the test controls.

Devices that do not trust the school's certificate (``intercept: false``)
get Google, Bing, YouTube and DuckDuckGo back with safe search locked: the
proxy connects their tunnel to the engine's locked service
(``forcesafesearch.google.com`` and the like) and the browser's TLS goes on
end to end. Here each locked service is an HTTPS origin on its own loopback
address, named to the proxy by ``schoolgate_safesearch_addresses``; the
engines' ordinary names go (through the test host map) to a trap origin on
127.0.0.1 that must never be reached for them (it plays ``lesson.example``).
Each origin records the address it was reached on and the name the browser
asked for.
"""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import (
    ROOT,
    Gateway,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

STRICT, MODERATE = "127.0.0.5", "127.0.0.6"
ENGINES = [
    "www.google.com",
    "www.google.co.uk",
    "www.bing.com",
    "www.youtube.com",
    "duckduckgo.com",
]
SAFE = {
    "forcesafesearch.google.com": "127.0.0.11",
    "strict.bing.com": "127.0.0.12",
    "restrict.youtube.com": "127.0.0.13",
    "restrictmoderate.youtube.com": "127.0.0.14",
    "safe.duckduckgo.com": "127.0.0.15",
}
TRAP = "127.0.0.1"
POLICY = """\
school: Integration Test School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 127.0.0.5/32, group: byod}
    - {cidr: 127.0.0.6/32, group: byod_moderate}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
groups:
  byod:
    default: acceptable
    safe_search: strict
    intercept: false
    categories:
      adult: unacceptable
  byod_moderate:
    inherits: byod
    safe_search: moderate
  guest:
    inherits: byod
"""


@dataclass
class Recorder:
    """What the HTTPS origins saw: (the address reached, the Host asked for, the path)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _serve(stack: ExitStack, address: str, cert: Path, key: Path, recorder: Recorder) -> int:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with recorder.lock:
                recorder.seen.append((address, self.headers.get("Host", ""), self.path))
            body = f"served from {address}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return int(server.server_address[1])


@dataclass
class Setup:
    gateway: Gateway
    recorder: Recorder
    ca: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("safesearch")
    cert, key = origin_ca.issue(tmp, ENGINES[0], *ENGINES[1:], "lesson.example")
    recorder = Recorder()
    with ExitStack() as stack:
        ports = {name: _serve(stack, addr, cert, key, recorder) for name, addr in SAFE.items()}
        trap_port = _serve(stack, TRAP, cert, key, recorder)
        pins = ",".join(f"{name}={SAFE[name]}:{port}" for name, port in ports.items())
        write_config(tmp / "config", tmp / "var", free_port(), POLICY)
        hostmap = {"hosts": [*ENGINES, "lesson.example"], "ports": {"443": trap_port}}
        gw = start_gateway(
            tmp,
            origin_ca,
            "--set",
            f"schoolgate_safesearch_addresses={pins}",
            env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
            command=[sys.executable, "-m", "tests.integration.hostmap"],
        )
        stack.callback(stop_gateway, gw)
        yield Setup(gw, recorder, origin_ca.cert_path)


def _search(setup: Setup, host: str, client: str) -> tuple[int, str]:
    """CONNECT as a browser does, then TLS with the engine's name end to end, and one GET."""
    sock = socket.create_connection(
        ("127.0.0.1", setup.gateway.port), timeout=10, source_address=(client, 0)
    )
    with sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1]) if head else 0
        if status != 200:
            return status, ""
        context = ssl.create_default_context(cafile=str(setup.ca))
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        with context.wrap_socket(sock, server_hostname=host) as tls:
            request = f"GET /search?q=lesson HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    return 200, data.decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("host", "client", "safe_name"),
    [
        ("www.google.com", STRICT, "forcesafesearch.google.com"),
        ("www.google.co.uk", STRICT, "forcesafesearch.google.com"),
        ("www.bing.com", STRICT, "strict.bing.com"),
        ("www.youtube.com", STRICT, "restrict.youtube.com"),
        ("www.youtube.com", MODERATE, "restrictmoderate.youtube.com"),
        ("duckduckgo.com", STRICT, "safe.duckduckgo.com"),
    ],
)
def test_undecrypted_search_goes_to_the_locked_service(
    setup: Setup, host: str, client: str, safe_name: str
) -> None:
    """The engine answers (was a refused tunnel) and the proxy connected to its safe address."""
    before = len(setup.recorder.seen)
    status, body = _search(setup, host, client)
    assert status == 200
    assert body.startswith("HTTP/1.1 200"), body
    reached = setup.recorder.seen[before:]
    assert reached == [(SAFE[safe_name], host, "/search?q=lesson")]
    assert not [seen for seen in setup.recorder.seen if seen[0] == TRAP and seen[1] in ENGINES]


def test_other_hosts_of_the_same_group_keep_their_address(setup: Setup) -> None:
    """A passed-through host that is no search engine is connected to its own address."""
    before = len(setup.recorder.seen)
    status, body = _search(setup, "lesson.example", STRICT)
    assert status == 200
    assert body.startswith("HTTP/1.1 200"), body
    assert setup.recorder.seen[before:] == [(TRAP, "lesson.example", "/search?q=lesson")]
