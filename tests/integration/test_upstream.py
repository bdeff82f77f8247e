"""Chaining to a parent proxy: 20 hosts on one keep-alive client connection, no stall."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import (
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)


@dataclass
class Parent:
    """A parent proxy that keeps every connection alive (as a broadband provider's might)."""

    port: int
    seen: list[str] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def parent() -> Iterator[Parent]:
    state = Parent(0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with state.lock:
                state.accepted += 1
                state.open_now += 1
                state.most_open = max(state.most_open, state.open_now)

        def finish(self) -> None:
            super().finish()
            with state.lock:
                state.open_now -= 1

        def do_CONNECT(self) -> None:
            """Tunnel to the address asked for (only 127.0.0.1/localhost exist here)."""
            state.seen.append(f"CONNECT {self.path}")
            host, _, port = self.path.rpartition(":")
            if host not in ("localhost", "127.0.0.1"):
                self.send_error(502)
                return
            upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            self.send_response(200, "Connection established")
            self.end_headers()
            pipe = threading.Thread(target=_copy, args=(upstream, self.connection), daemon=True)
            pipe.start()
            _copy(self.connection, upstream)
            pipe.join(timeout=10)
            self.close_connection = True

        def do_GET(self) -> None:
            state.seen.append(self.path)
            body = f"parent ok {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def chained(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, parent: Parent
) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("chained")
    write_config(tmp / "config", tmp / "var", free_port())
    with (tmp / "config" / "schoolgate.yaml").open("a") as f:
        f.write(f"upstream: http://127.0.0.1:{parent.port}\n")
    gw = start_gateway(tmp, origin_ca)
    yield gw
    stop_gateway(gw)


def test_twenty_hosts_on_one_client_connection(chained: Gateway, parent: Parent) -> None:
    """One keep-alive client connection reaches 20 hosts through the parent, none stalls."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", chained.port, timeout=5, source_address=(PUPIL, 0)
    )
    try:
        for n in range(20):
            conn.request("GET", f"http://host-{n}.example/page{n}")
            response = conn.getresponse()
            body = response.read().decode()
            assert (response.status, body.strip()) == (
                200,
                f"parent ok http://host-{n}.example/page{n}",
            ), f"host {n}"
            assert not response.will_close
        sock = conn.sock
        conn.request("GET", "http://adult-demo.example/")
        response = conn.getresponse()
        response.read()
        assert response.status == 403
        assert conn.sock is sock  # the same client connection all along
    finally:
        conn.close()
    assert not any("adult-demo" in path for path in parent.seen)
    assert parent.most_open <= 6  # at most 4 kept, 1 in use, 1 closing


def test_a_host_visited_again_keeps_its_parent_connection(chained: Gateway, parent: Parent) -> None:
    """The first hosts of a connection keep their parent connection: no new one per request."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", chained.port, timeout=5, source_address=(PUPIL, 0)
    )
    try:
        conn.request("GET", "http://again.example/1")
        conn.getresponse().read()
        before = parent.accepted
        for n in range(5):
            conn.request("GET", f"http://again.example/{n}")
            assert conn.getresponse().read().decode().startswith("parent ok")
        assert parent.accepted == before
    finally:
        conn.close()


def test_https_goes_through_the_parent_and_blocks_stay_local(
    chained: Gateway, parent: Parent, origin: Origin
) -> None:
    """Allowed HTTPS is tunnelled through the parent; a blocked host never reaches it."""
    status, body = chained.get(f"https://localhost:{origin.https_port}/secure", client=PUPIL)
    assert (status, body.startswith("origin ok")) == (200, True)
    assert f"CONNECT localhost:{origin.https_port}" in parent.seen
    assert chained.get("https://casino-demo.example/", client=PUPIL)[0] == 403
    assert not any("casino-demo" in seen for seen in parent.seen)
