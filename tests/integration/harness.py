"""Real parts for integration tests: a local origin, a test CA, and the real proxy process.

Users are simulated by binding the client to different loopback addresses
(127.0.0.2 is a pupil, 127.0.0.3 staff, 127.0.0.4 the headteacher) which the
test policy maps to groups. Every port is ephemeral; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
PUPIL, STAFF, HEAD, GUEST = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"

TEST_POLICY = """\
school: Integration Test School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 127.0.0.2/32, group: pupil}
    - {cidr: 127.0.0.3/32, group: staff}
  users:
    - {name: head.teacher, group: head, ips: [127.0.0.4]}
approvers: [head.teacher]
schedules:
  never: {days: [sun], from: "00:00", to: "00:01"}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult, ut1/mixed_adult], incident: deliberate_offensive}
  gambling: {lists: [ut1/gambling]}
  games: {lists: [ut1/games], incident: non_educational_in_lessons}
  social: {lists: [ut1/social_networks, ut1/chat], incident: social_media}
groups:
  pupil:
    default: acceptable
    allowed_ports: [443, "1024-65535"]  # the local origins listen on ephemeral ports
    categories:
      adult: unacceptable
      gambling: unacceptable
      games: {acceptable_at: never}
      social: unacceptable
  staff:
    default: acceptable
    allowed_ports: [443, "1024-65535"]
    categories:
      adult: unacceptable
      social: blocked
  head:
    inherits: staff
    categories:
      social: acceptable
  guest:
    inherits: pupil
local:
  allow: [www.bbc.co.uk/bitesize]
  block:
    - {entry: bad.example, category: adult}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OriginCA:
    cert_path: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(self, tmp: Path, hostname: str, *more: str) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(h) for h in (hostname, *more)]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = tmp / f"{hostname}.pem", tmp / f"{hostname}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


@pytest.fixture(scope="session")
def origin_ca(tmp_path_factory: pytest.TempPathFactory) -> OriginCA:
    """A CA the origin's certificate is signed by, which the proxy is told to trust."""
    tmp = tmp_path_factory.mktemp("ca")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Schoolgate test origin CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return OriginCA(path, key, cert)


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"origin ok {self.headers.get('Host')} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_origin(
    handler: type[http.server.BaseHTTPRequestHandler], cert: Path, key: Path
) -> Iterator[tuple[int, int]]:
    """Serve ``handler`` over HTTP and HTTPS (``cert``) on 127.0.0.1; yields both ports."""
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, secure)]
    for thread in threads:
        thread.start()
    try:
        yield int(plain.server_address[1]), int(secure.server_address[1])
    finally:
        for server in (plain, secure):
            server.shutdown()
            server.server_close()


@dataclass
class Origin:
    http_port: int
    https_port: int
    hits: list[str]


@pytest.fixture(scope="session")
def origin(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """An HTTP and an HTTPS origin on 127.0.0.1 that echo what they were asked for."""
    hits: list[str] = []

    class Handler(_OriginHandler):
        def do_GET(self) -> None:
            hits.append(f"{self.headers.get('Host')}{self.path}")
            super().do_GET()

    cert, key = origin_ca.issue(tmp_path_factory.mktemp("origin"), "localhost")
    with serve_origin(Handler, cert, key) as (http_port, https_port):
        yield Origin(http_port, https_port, hits)


class RecordingOrigin:
    """A TCP server that records every connection it accepts, then plays TLS or HTTP.

    For tests that must show that nothing reached an origin: it counts
    connections (``count``), so an upstream connection opened and never
    used is seen too, and apart from them the HTTP requests it was sent
    (``requests``, the request line of each), so a test can tell a bare
    TCP/TLS connection from one that carried a request.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        self.connections: list[bytes] = []
        self.requests: list[bytes] = []  # the request line of every HTTP request received
        self.handshakes = 0  # WebSocket upgrades accepted
        self.messages: list[bytes] = []  # every WebSocket message received (each is echoed)
        self.in_time = 0  # connections a test saw in its own window (test_tunnels adds them up)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self.connections)

    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def opened_since(self, count: int) -> list[bytes]:
        """The first byte of each connection after the first ``count`` (b"\\x16": TLS)."""
        with self._lock:
            return self.connections[count:]

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            index = len(self.connections)
            self.connections.append(b"")
        conn.settimeout(3)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
            with self._lock:
                self.connections[index] = first
            if first == b"\x16":
                with self.tls.wrap_socket(conn, server_side=True) as tls:
                    self._answer(tls)
            elif first.isalpha():
                self._answer(conn)
            else:
                conn.sendall(b"origin raw\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def _answer(self, stream: socket.socket) -> None:
        request = stream.recv(4096)
        if not request:
            return  # a connection (and its TLS handshake) with no request on it
        with self._lock:
            self.requests.append(request.split(b"\r\n", 1)[0])
        if b"upgrade: websocket" in request.lower():
            self._websocket(stream, request)
        else:
            stream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\norigin ok")

    def _websocket(self, stream: socket.socket, request: bytes) -> None:
        """Accept the upgrade, record each message and echo it, until either side closes."""
        from wsproto import ConnectionType, WSConnection, events

        # Longer than a client waits: a test that sees the WebSocket end knows the proxy ended it.
        stream.settimeout(30)
        ws = WSConnection(ConnectionType.SERVER)
        data, parts = request, b""
        while data:
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, events.Request):
                    with self._lock:
                        self.handshakes += 1
                    stream.sendall(ws.send(events.AcceptConnection()))
                elif isinstance(event, events.Message):
                    parts += event.data.encode() if isinstance(event.data, str) else event.data
                    if event.message_finished:
                        with self._lock:
                            self.messages.append(parts)
                        stream.sendall(ws.send(events.BytesMessage(parts)))
                        parts = b""
                elif isinstance(event, events.CloseConnection):
                    stream.sendall(ws.send(event.response()))
                    return
            data = stream.recv(4096)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Gateway:
    """A running ``schoolgate run`` process and what a test needs to talk to it."""

    process: subprocess.Popen[bytes]
    port: int
    config_dir: Path
    data_dir: Path
    stderr_path: Path

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"

    @property
    def access_log(self) -> Path:
        return self.data_dir / "access.log"

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def get(
        self, url: str, *, client: str = PUPIL, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """GET ``url`` through the proxy from a client address; HTTPS trusts the proxy's CA."""
        scheme, rest = url.split("://", 1)
        authority, _, path = rest.partition("/")
        host, _, port_text = authority.partition(":")
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = ssl.create_default_context(cafile=str(self.ca_file))
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=10, context=context, source_address=(client, 0)
            )
            conn.set_tunnel(host, int(port_text or 443))
            target = "/" + path
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=10, source_address=(client, 0)
            )
            target = url
        try:
            conn.request("GET", target, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def access_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until the access log has at least ``count`` lines (it is written off-thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.access_log.exists():
                lines = self.access_log.read_text(encoding="utf-8").splitlines()
                if len(lines) >= count:
                    return lines
            time.sleep(0.05)
        raise AssertionError(f"access log has fewer than {count} lines")

    def access_line(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The newest access-log line ``match`` accepts, waiting for the off-thread writer.

        A gateway shared by a file's tests already has lines, so waiting for a line count
        can read the log before this request's line is written.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.access_log.exists():
                lines = self.access_log.read_text(encoding="utf-8").splitlines()
                entries: list[dict[str, Any]] = [json.loads(line) for line in lines]
                found = [entry for entry in entries if match(entry)]
                if found:
                    return found[-1]
            time.sleep(0.05)
        raise AssertionError("no access-log line matched")


def write_config(config_dir: Path, data_dir: Path, port: int, policy: str = TEST_POLICY) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    demo = ROOT / "blocklists" / "demo"
    (config_dir / "schoolgate.yaml").write_text(
        f"listen: 127.0.0.1:{port}\n"
        "modes: [regular]\n"
        f"data_dir: {data_dir}\n"
        "sources:\n"
        f"  ut1: {{path: {demo / 'ut1'}, format: ut1}}\n"
        f"  iwf: {{path: {demo / 'iwf.txt'}, format: iwf}}\n",
        encoding="utf-8",
    )
    (config_dir / "policy.yaml").write_text(policy, encoding="utf-8")


def schoolgate_command() -> list[str]:
    exe = Path(sys.executable).with_name("schoolgate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "proxy"]


def start_gateway(
    tmp: Path,
    origin_ca: OriginCA,
    *extra: str,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> Gateway:
    port = free_port()
    config_dir, data_dir = tmp / "config", tmp / "var"
    if not (config_dir / "policy.yaml").exists():
        write_config(config_dir, data_dir, port)
    stderr_path = tmp / "schoolgate.stderr"
    process = subprocess.Popen(
        [
            *(command or schoolgate_command()),
            "run",
            "--config",
            str(config_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--set",
            f"ssl_verify_upstream_trusted_ca={origin_ca.cert_path}",
            "--set",
            "schoolgate_reload_ms=200",
            "--no-console",  # tests that want the console pass --console (the last one wins)
            *extra,
        ],
        stdout=(tmp / "schoolgate.stdout").open("wb"),  # kept: no output may name an IWF host
        stderr=stderr_path.open("wb"),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    gateway = Gateway(process, port, config_dir, data_dir, stderr_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"schoolgate run exited early: {gateway.stderr()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError("schoolgate run did not start listening in 30 s")
    assert process.poll() is None
    return gateway


def stop_gateway(gateway: Gateway) -> None:
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGTERM)
        try:
            gateway.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    """One real proxy process shared by a module's tests."""
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), origin_ca)
    yield gw
    stop_gateway(gw)


@pytest.fixture
def own_gateway(tmp_path: Path, origin_ca: OriginCA) -> Iterator[Gateway]:
    """A real proxy process for one test that changes its configuration."""
    gw = start_gateway(tmp_path, origin_ca)
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="session", autouse=True)
def loopback_aliases() -> None:
    """Linux routes all of 127.0.0.0/8 to lo; make sure a client can bind 127.0.0.2."""
    with socket.socket() as sock:
        sock.bind((PUPIL, 0))


# -- set-ups several modules share (added at the end, so concurrent edits above merge cleanly)


def eventually(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Wait until ``check()`` is true (the proxy rereads files and the store on timers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_cli(config_dir: Path, *args: str, accounts: dict[str, str] | None = None) -> str:
    """``schoolgate ARGS --config CONFIG_DIR`` in this process; its output. Whoever ``--by``
    names is given a console account (role from ``accounts``) and answers the prompts."""
    from click.testing import CliRunner

    from proxy.cli import cli
    from tests.console_accounts import acting, ensure_account, proof

    names = acting(args) if accounts is not None else []
    for name in names:
        ensure_account(config_dir, name, (accounts or {})[name])
    result = CliRunner().invoke(
        cli, [*args, "--config", str(config_dir)], input=proof(config_dir, *names)
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def recording_origin(origin_ca: OriginCA, folder: Path, *names: str) -> RecordingOrigin:
    """A TLS origin that records each connection, with a certificate for ``names``."""
    cert, key = origin_ca.issue(folder, *names)
    return RecordingOrigin(cert, key)


def mapped_gateway(
    tmp: Path,
    origin_ca: OriginCA,
    origin: RecordingOrigin,
    hosts: Iterable[str],
    *extra: str,
    ports: Iterable[int] = (443,),
    policy: str = TEST_POLICY,
    module: str = "tests.integration.hostmap",
) -> Gateway:
    """The real proxy, with ``hosts`` on ``ports`` resolved to ``origin`` (``hostmap``) and a
    metrics listener (``gateway.metrics_port``). ``module`` runs it: ``hostmap``, or a module
    that also patches the proxy (``breakhook``)."""
    write_config(tmp / "config", tmp / "var", 1, policy)
    metrics = free_port()
    with (tmp / "config" / "schoolgate.yaml").open("a", encoding="utf-8") as settings:
        settings.write(f"metrics_listen: 127.0.0.1:{metrics}\n")
    hostmap = {"hosts": list(hosts), "ports": {str(port): origin.port for port in ports}}
    gateway = start_gateway(
        tmp,
        origin_ca,
        *extra,
        env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
        command=[sys.executable, "-m", module],
    )
    gateway.metrics_port = metrics  # type: ignore[attr-defined]
    return gateway
