"""Memory limits with the real proxy: 431 for huge headers, bodies streamed, rules on the stream.

Each test attacks the proxy as a few pupils could (a huge header, a huge
upload, parallel downloads), then reads the proxy's peak resident memory
(VmHWM, from /proc) and checks it grew by less than ``BOUND_MIB`` over the
proxy's memory before the first attack. Without the limits each of these
grows it by about twice the bytes sent (``python -m bench.memory --unbounded``).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.memory import (
    POLICY,
    PUPIL,
    STAFF,
    MiB,
    bytes_origin,
    download,
    huge_header,
    memory_kib,
    proxy,
    upload,
)

BOUND_MIB = 64
# Staff may download files of up to 8 MiB and no Windows programs.
LIMITED = POLICY.replace("max_mb: 1500", "max_mb: 8")


class Running:
    def __init__(self, pid: int, port: int, origin: int, tmp: Path) -> None:
        self.pid, self.port, self.origin, self.tmp = pid, port, origin, tmp
        download(port, origin, MiB, PUPIL)  # warm up: the first request loads lazily
        self.base = memory_kib(pid)["VmRSS"]

    def growth_mib(self) -> float:
        """How far the proxy's peak memory rose over its memory before the first attack."""
        return (memory_kib(self.pid)["VmHWM"] - self.base) / 1024

    def stderr(self) -> str:
        return (self.tmp / "stderr").read_text(errors="replace")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("limits")
    with bytes_origin() as origin, proxy(tmp, policy=LIMITED) as process:
        yield Running(process.pid, process.port, origin, tmp)  # type: ignore[attr-defined]


def test_a_128_mib_header_gets_431_and_is_not_held(running: Running) -> None:
    """A request whose headers go on for 128 MiB is answered 431 and cut off early."""
    status, sent = huge_header(running.port, running.origin, 128 * MiB, PUPIL)
    assert status == 431
    assert sent < 8 * MiB  # the proxy stopped reading long before the end
    assert running.growth_mib() < BOUND_MIB


def test_a_512_mib_upload_streams_to_the_origin(running: Running) -> None:
    """A 512 MiB upload reaches the origin whole while the proxy holds almost none of it."""
    status, body = upload(running.port, f"localhost:{running.origin}", 512 * MiB, PUPIL)
    assert (status, body.strip()) == (200, str(512 * MiB))
    assert running.growth_mib() < BOUND_MIB


def test_a_chunked_upload_streams_too(running: Running) -> None:
    """An upload with no length (chunked) switches to streaming once it is large."""
    sink = f"localhost:{running.origin}"
    status, body = upload(running.port, sink, 128 * MiB, PUPIL, chunked=True)
    assert (status, body.strip()) == (200, str(128 * MiB))
    assert running.growth_mib() < BOUND_MIB


def test_four_parallel_downloads_for_a_group_without_rules_stream(running: Running) -> None:
    """Four pupils downloading 256 MiB each at once do not grow the proxy by what they fetch."""
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: download(running.port, running.origin, 256 * MiB, PUPIL), range(4))
        )
    assert results == [(200, 256 * MiB)] * 4
    assert running.growth_mib() < BOUND_MIB


def test_a_blocked_upload_is_dropped_not_held(running: Running) -> None:
    """A large upload to a blocked site gets the block page; its body is read and dropped."""
    status, body = upload(running.port, "adult-demo.example", 256 * MiB, PUPIL)
    assert status == 403
    assert "adult" in body.lower()
    assert running.growth_mib() < BOUND_MIB
    assert "Traceback" not in running.stderr()


def test_a_streamed_program_is_cut_by_the_download_rules(running: Running) -> None:
    """A 4 MiB Windows program (length known, over the streaming threshold) is sniffed
    on the stream and cut: the rules apply to streamed bodies, not only held ones."""
    status, got = download(running.port, running.origin, 4 * MiB, STAFF, "?mz")
    assert status == 200  # the headers had gone on before the first bytes showed an .exe
    assert got < 4 * MiB
    status, got = download(running.port, running.origin, 4 * MiB, STAFF)
    assert (status, got) == (200, 4 * MiB)  # the same size, not a program: whole


def test_max_mb_is_counted_on_a_chunked_stream(running: Running) -> None:
    """A chunked download with no length is cut once it passes the group's max_mb."""
    status, got = download(running.port, running.origin, 32 * MiB, STAFF, "?chunked")
    assert status == 200
    assert 0 < got <= 9 * MiB
    assert running.growth_mib() < BOUND_MIB


def test_an_origins_endless_response_head_is_cut(running: Running) -> None:
    """An origin that sends 128 MiB of response headers gets its connection closed, not held."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def endless_head() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Filler: ")
                for _ in range(2048):
                    conn.sendall(b"a" * 65536)
            except OSError:
                pass  # the proxy closed the connection: what this test wants

    thread = threading.Thread(target=endless_head, daemon=True)
    thread.start()
    try:
        status, _ = download(running.port, port, 1, PUPIL)
    finally:
        thread.join(30)
        server.close()
    assert status == 502
    assert running.growth_mib() < BOUND_MIB


def test_an_endless_chunk_header_is_cut(running: Running) -> None:
    """A chunked upload whose chunk-size line never ends is cut, not held (h11 would hold it)."""
    sock = socket.create_connection(
        ("127.0.0.1", running.port), timeout=30, source_address=(PUPIL, 0)
    )
    sent = 0
    try:
        sock.sendall(
            f"POST http://localhost:{running.origin}/sink HTTP/1.1\r\n"
            f"Host: localhost:{running.origin}\r\nTransfer-Encoding: chunked\r\n\r\n"
            "1;ext=".encode()
        )
        piece = b"a" * 65536
        while sent < 128 * MiB:
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the proxy closed the connection: what this test wants
    finally:
        sock.close()
    assert sent < 16 * MiB
    assert running.growth_mib() < BOUND_MIB


def _ws_accept(key: str) -> str:
    magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1((key + magic).encode()).digest()).decode()


def test_an_endless_websocket_message_is_cut(running: Running) -> None:
    """A WebSocket message sent in fragments for 128 MiB ends the connection, not held whole."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = bytearray()

    def ws_origin() -> None:
        conn, _ = server.accept()
        with conn:
            head = conn.recv(65536).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + _ws_accept(key).encode()
                + b"\r\n\r\n"
            )
            # Nothing reaches the origin until the proxy cuts the message (16 MiB of masked
            # fragments to read first, slow on a loaded machine: CI once took over 5 s): the
            # close frame, then the end, finish the wait well before this.
            conn.settimeout(30)
            try:
                while data := conn.recv(1 << 20):
                    received.extend(data)
            except TimeoutError:
                pass

    thread = threading.Thread(target=ws_origin, daemon=True)
    thread.start()
    # The client waits as long as the origin does: a client that gives up first closes the
    # connection, and the proxy then drops both sides without a close frame to cut.
    client = socket.create_connection(
        ("127.0.0.1", running.port), timeout=30, source_address=(PUPIL, 0)
    )
    sent = 0
    try:
        client.sendall(
            f"GET http://localhost:{port}/ws HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
        )
        assert client.recv(4096).startswith(b"HTTP/1.1 101")
        payload = b"a" * 65536
        # Binary, not final; then continuations, none final. Masked with a zero key.
        first = struct.pack("!BBQ", 0x02, 0x80 | 127, len(payload)) + b"\0\0\0\0"
        more = struct.pack("!BBQ", 0x00, 0x80 | 127, len(payload)) + b"\0\0\0\0"
        client.sendall(first + payload)
        while sent < 128 * MiB:
            client.sendall(more + payload)
            sent += len(payload)
    except OSError:
        pass  # the proxy stopped reading (closed, or timed out here): what this test wants
    finally:
        client.close()
        thread.join(30)
        server.close()
    assert sent < 64 * MiB
    # No fragment of the unfinished message went on: only a close frame, code 1009.
    assert received[:1] == b"\x88"
    assert len(received) < 64
    assert running.growth_mib() < BOUND_MIB
