"""Allowed tunnels meet their server early; a blocked host still never gets a connection.

Schoolgate runs mitmproxy lazily (no upstream connection until a request is
allowed) but lets a tunnel whose CONNECT host and SNI are allowed on their
names meet the server before the client's TLS handshake, as mitmproxy's eager
strategy does, so the client is offered what the server speaks
(``addons/earlyconnect.py``). These tests attack that: an origin that counts
every TCP connection it accepts plays each host (through the test-only
``hostmap`` launcher), and each test checks what reached it, and when.
"""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.harness import (
    PUPIL,
    ROOT,
    Gateway,
    OriginCA,
    start_gateway,
    stop_gateway,
    write_config,
)

HOSTS = ["lesson.example", "adult-demo.example", "casino-demo.example"]
POLICY = """\
school: Early Connect School
timezone: Europe/London
identity:
  default_group: pupil
categories:
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  gambling: {lists: [ut1/gambling]}
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
      gambling: blocked
local:
  allow: [casino-demo.example/open]  # a listed host the school opens one path of
"""


@dataclass
class Recorder:
    """A TLS origin speaking HTTP/1.1 only, counting the connections it accepts."""

    port: int = 0
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return self.accepted


@pytest.fixture(scope="module")
def recorder(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    state = Recorder()
    cert, key = origin_ca.issue(tmp_path_factory.mktemp("early-origin"), "localhost", *HOSTS)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.request = context.wrap_socket(self.request, server_side=True)
            super().setup()

        def do_GET(self) -> None:
            body = f"origin ok {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True

        def process_request(self, request: Any, client_address: Any) -> None:
            with state.lock:
                state.accepted += 1
            super().process_request(request, client_address)

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that hangs up mid-handshake is no news here

    server = Server(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, recorder: Recorder
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("earlyconnect")
    write_config(tmp / "config", tmp / "var", 1, POLICY)
    hostmap = {"hosts": HOSTS, "ports": {"443": recorder.port}}
    gateway = start_gateway(
        tmp,
        origin_ca,
        env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
        command=[sys.executable, "-m", "tests.integration.hostmap"],
    )
    yield gateway
    stop_gateway(gateway)


def tunnel(
    gw: Gateway, connect_host: str, sni: str, alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLSocket:
    """CONNECT to ``connect_host``:443, then a TLS handshake naming ``sni`` offering ``alpn``."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(PUPIL, 0))
    sock.sendall(
        f"CONNECT {connect_host}:443 HTTP/1.1\r\nHost: {connect_host}:443\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the proxy closed the CONNECT"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    context.set_alpn_protocols(list(alpn))
    return context.wrap_socket(sock, server_hostname=sni)


def get(tls: ssl.SSLSocket, host: str, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on an open tunnel (closing it after)."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def settle() -> None:
    """Give an upstream connection, if the proxy were to open one, time to arrive."""
    time.sleep(0.5)


def test_an_allowed_tunnel_meets_its_server_before_the_handshake(
    gw: Gateway, recorder: Recorder
) -> None:
    """Allowed CONNECT and SNI: the origin is connected before any request, and the client is
    offered the origin's HTTP/1.1 (not HTTP/2) although it offered h2."""
    before = recorder.count()
    with tunnel(gw, "lesson.example", "lesson.example", ("h2", "http/1.1")) as tls:
        settle()
        assert recorder.count() == before + 1
        assert tls.selected_alpn_protocol() == "http/1.1"
        status, body = get(tls, "lesson.example", "/lesson")
    assert status == 200
    assert body == b"origin ok /lesson\n"
    assert recorder.count() == before + 1  # the request went over that same connection


def test_a_blocked_host_gets_no_connection_at_connect_nor_at_the_handshake(
    gw: Gateway, recorder: Recorder
) -> None:
    """A blocked CONNECT host: the block page inside the tunnel and not one upstream connection."""
    before = recorder.count()
    with tunnel(gw, "adult-demo.example", "adult-demo.example") as tls:
        settle()
        assert recorder.count() == before
        status, body = get(tls, "adult-demo.example", "/")
    assert status == 403
    assert b"adult" in body
    settle()
    assert recorder.count() == before


def test_a_blocked_sni_inside_an_allowed_connect_gets_no_connection(
    gw: Gateway, recorder: Recorder
) -> None:
    """An allowed CONNECT host with a blocked SNI is held to the SNI: no upstream connection."""
    before = recorder.count()
    with tunnel(gw, "lesson.example", "adult-demo.example") as tls:
        settle()
        assert recorder.count() == before
        status, _ = get(tls, "adult-demo.example", "/")
    assert status == 403
    settle()
    assert recorder.count() == before


def test_a_host_blocked_but_for_one_path_stays_lazy(gw: Gateway, recorder: Recorder) -> None:
    """A blocked host with one allowed path is connected only for a request to that path."""
    before = recorder.count()
    with tunnel(gw, "casino-demo.example", "casino-demo.example") as tls:
        settle()
        assert recorder.count() == before
        status, _ = get(tls, "casino-demo.example", "/closed")
    assert status == 403
    assert recorder.count() == before
    with tunnel(gw, "casino-demo.example", "casino-demo.example") as tls:
        status, body = get(tls, "casino-demo.example", "/open")
    assert status == 200
    assert body == b"origin ok /open\n"
    assert recorder.count() == before + 1
