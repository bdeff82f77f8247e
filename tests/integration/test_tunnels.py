"""A tunnel carries only what was decided: attacked through the real proxy.

A pupil (127.0.0.2, whose device trusts the school's CA) and a BYOD device
(127.0.0.5, group ``intercept: false``) open ``CONNECT host:443`` to a
blocked, an illegal and an allowed host, and send what a determined pupil
would: raw bytes, an SSH banner, OpenVPN's first packet, TLS ClientHellos
with every record-layer version byte from 0x00 to 0x04, and ClientHellos
whose SNI mitmproxy's parser cannot read. Every one of those host names is
sent to ``RecordingOrigin`` by the test-only ``hostmap`` launcher, which
counts every TCP connection it accepts: if the proxy ever opened an upstream
connection for a blocked host, the origin would see it (the names resolve,
so nothing fails quietly at DNS). Each attempt must leave a line in the
access log.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    PUPIL,
    Gateway,
    OriginCA,
    RecordingOrigin,
    mapped_gateway,
    recording_origin,
    run_cli,
    stop_gateway,
)

pytestmark = pytest.mark.integration

BYOD = "127.0.0.5"
BLOCKED, ILLEGAL, ALLOWED, PASSTHROUGH = (
    "adult-demo.example",
    "illegal-demo.example",
    "lesson.example",
    "git.example.org",
)
BANK = "bank-demo.example"  # on the no_decrypt list
HOSTS = [BLOCKED, ILLEGAL, ALLOWED, PASSTHROUGH, BANK]
SUSPENDED, OVERRIDDEN = "127.0.0.6", "127.0.0.7"  # a suspended pupil; BYOD with an override
POLICY = """\
school: Tunnel Test School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 127.0.0.2/32, group: pupil}
    - {cidr: 127.0.0.5/32, group: byod}
  users:
    - {name: s.pupil, group: pupil, ips: [127.0.0.6]}
    - {name: o.byod, group: byod, ips: [127.0.0.7]}
    - {name: head.teacher, group: pupil}
approvers: [head.teacher]
no_decrypt:
  hosts: [bank-demo.example]
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult, ut1/mixed_adult], incident: deliberate_offensive}
tcp_passthrough: ["git.example.org:443"]
groups:
  pupil:
    default: acceptable
    categories:
      adult: unacceptable
  byod:
    inherits: pupil
    intercept: false
  guest:
    inherits: pupil
"""


@pytest.fixture(scope="module")
def origin(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    found = recording_origin(origin_ca, tmp_path_factory.mktemp("tunnel-origin"), *HOSTS)
    yield found
    found.close()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, origin: RecordingOrigin
) -> Iterator[Gateway]:
    gateway = mapped_gateway(
        tmp_path_factory.mktemp("tunnels"),
        origin_ca,
        origin,
        HOSTS,
        "--set",
        "schoolgate_controls_refresh_ms=200",
        policy=POLICY,
    )
    yield gateway
    stop_gateway(gateway)


# --- what a pupil sends --------------------------------------------------------------------


def client_hello(sni: str, version_byte: int = 0x01) -> bytes:
    """Python's own ClientHello for ``sni`` (MemoryBIO), record-layer version byte patched."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = bytearray(outgoing.read())
    assert hello[:2] == b"\x16\x03"
    hello[2] = version_byte
    return bytes(hello)


def unreadable_sni(kind: str) -> bytes:
    """A ClientHello whose SNI mitmproxy's parser rejects: a 64-character label, or a NUL."""
    first, second = "a" * 30, "b" * 33
    template = f"{first}.{second}.example"
    hello = client_hello(template)
    good = template.encode()
    bad = (
        (first + "a" + second + ".example").encode()  # one label of 64 characters
        if kind == "long-label"
        else (first + "\x00" + second + ".example").encode()  # an embedded NUL
    )
    assert len(bad) == len(good)
    assert hello.count(good) == 1
    return hello.replace(good, bad)


# OpenVPN over TCP: a 2-byte length, P_CONTROL_HARD_RESET_CLIENT_V2 (0x38), a session id...
OPENVPN = bytes.fromhex("002a38") + bytes(range(8)) + b"\x00" * 5 + bytes(26)


def payload_for(name: str, host: str) -> bytes:
    """The bytes a pupil sends inside the tunnel, by name."""
    if name == "raw-tcp":
        return b"hello, anything at all\r\n"
    if name == "ssh-banner":
        return b"SSH-2.0-OpenSSH_9.6\r\n"
    if name == "openvpn":
        return OPENVPN
    if name == "http":
        return f"GET /inside HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    if name.startswith("tls-0x"):
        return client_hello(host, int(name[4:], 16))
    return unreadable_sni(name.removeprefix("sni-"))


PAYLOADS = [
    "http",
    "raw-tcp",
    "ssh-banner",
    "openvpn",
    *(f"tls-0x{v:02x}" for v in range(5)),
    "sni-long-label",
    "sni-nul",
]


def attempt(gw: Gateway, client: str, host: str, payload: bytes) -> tuple[int, bytes]:
    """CONNECT host:443; if allowed, send ``payload`` and read what comes back for a moment."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5, source_address=(client, 0))
    try:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = int(head.split(b" ", 2)[1]) if head else 0
        if status != 200:
            return status, b""
        sock.sendall(payload)
        sock.settimeout(1.0)
        reply = b""
        try:
            while len(reply) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return status, reply
    finally:
        sock.close()


def log_lines(gw: Gateway) -> list[dict[str, Any]]:
    text = gw.access_log.read_text(encoding="utf-8") if gw.access_log.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def new_line(gw: Gateway, before: int, client: str) -> dict[str, Any]:
    """The first access-log line after ``before`` from ``client`` (written off-thread)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in log_lines(gw)[before:] if x.get("client_ip") == client]
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for the attempt from {client}")


def settle(origin: RecordingOrigin, before: int) -> int:
    """New origin connections since ``before``, after giving a late one time to arrive.

    What each test saw in its own window is added up in ``origin.in_time``; the module's
    last test checks it against the total, so a connection that arrived too late for the
    test that caused it (and so was not checked by it) fails the module.
    """
    time.sleep(0.4)
    found = origin.count() - before
    origin.in_time += found
    return found


# --- blocked and illegal hosts: never an upstream connection -------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("host", [BLOCKED, ILLEGAL])
@pytest.mark.parametrize("client", [PUPIL, BYOD], ids=["intercepting", "not-intercepting"])
def test_a_blocked_host_never_gets_an_upstream_connection(
    gw: Gateway, origin: RecordingOrigin, client: str, host: str, payload: str
) -> None:
    """Whatever follows the CONNECT, the origin of a blocked host sees no connection; logged."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, reply = attempt(gw, client, host, payload_for(payload, host))
    assert settle(origin, before_origin) == 0
    assert b"origin ok" not in reply
    assert b"origin raw" not in reply
    if payload == "http" and client == PUPIL:
        assert reply.startswith(b"HTTP/1.1 403")  # the block page, inside the tunnel
    line = new_line(gw, before_log, client)
    assert line["decision"] == "block"
    if host == ILLEGAL:
        assert line["incident"] == "illegal"
        assert ILLEGAL not in json.dumps(log_lines(gw))  # withheld, never where
    else:
        assert line["host"] == BLOCKED
    if client == BYOD:
        assert status == 403  # refused at CONNECT: not even the tunnel opens


# --- an allowed host: only TLS or HTTP, or an explicit tcp_passthrough ---------------------


@pytest.mark.parametrize("payload", ["raw-tcp", "ssh-banner", "openvpn"])
@pytest.mark.parametrize("client", [PUPIL, BYOD], ids=["intercepting", "not-intercepting"])
def test_raw_tcp_to_an_allowed_host_is_refused_and_logged(
    gw: Gateway, origin: RecordingOrigin, client: str, payload: str
) -> None:
    """Neither TLS nor HTTP, and not on tcp_passthrough: refused before any upstream connection."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, reply = attempt(gw, client, ALLOWED, payload_for(payload, ALLOWED))
    assert status == 200
    assert reply == b""
    assert settle(origin, before_origin) == 0
    line = new_line(gw, before_log, client)
    assert (line["decision"], line["tunnel"], line["host"]) == ("block", "refuse", ALLOWED)
    assert "tcp_passthrough" in line["rule"]


@pytest.mark.parametrize("payload", ["raw-tcp", "ssh-banner", "openvpn"])
@pytest.mark.parametrize("client", [PUPIL, BYOD], ids=["intercepting", "not-intercepting"])
def test_tcp_passthrough_carries_raw_tcp_to_its_host_only(
    gw: Gateway, origin: RecordingOrigin, client: str, payload: str
) -> None:
    """git.example.org:443 is on tcp_passthrough: its raw TCP reaches the origin, logged."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, reply = attempt(gw, client, PASSTHROUGH, payload_for(payload, PASSTHROUGH))
    assert status == 200
    assert b"origin" in reply
    assert settle(origin, before_origin) == 1
    line = new_line(gw, before_log, client)
    assert (line["decision"], line["tunnel"], line["host"]) == ("allow", "pass", PASSTHROUGH)


@pytest.mark.parametrize("client", [PUPIL, BYOD], ids=["intercepting", "not-intercepting"])
def test_http_inside_a_tunnel_to_an_allowed_host_is_filtered_per_request(
    gw: Gateway, origin: RecordingOrigin, client: str
) -> None:
    """Plain HTTP inside CONNECT reaches an allowed host, decided like any request."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, reply = attempt(gw, client, ALLOWED, payload_for("http", ALLOWED))
    assert status == 200
    assert reply.endswith(b"origin ok")
    assert settle(origin, before_origin) == 1
    line = new_line(gw, before_log, client)
    assert (line["decision"], line["host"], line["path"]) == ("allow", ALLOWED, "/inside")


@pytest.mark.parametrize("payload", ["sni-long-label", "sni-nul"])
@pytest.mark.parametrize("client", [PUPIL, BYOD], ids=["intercepting", "not-intercepting"])
def test_an_unreadable_sni_is_https_without_sni(
    gw: Gateway, origin: RecordingOrigin, client: str, payload: str
) -> None:
    """An SNI the parser rejects is no SNI: https_without_sni (block) refuses it, logged."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, reply = attempt(gw, client, ALLOWED, payload_for(payload, ALLOWED))
    assert status == 200
    assert settle(origin, before_origin) == 0
    assert reply in (b"", b"\x15\x03\x01\x00\x02\x02\x31")  # nothing, or an access_denied alert
    line = new_line(gw, before_log, client)
    assert (line["decision"], line["tls"]) == ("block", "refused")
    assert "SNI" in line["rule"]


@pytest.mark.parametrize("version", [0x00, 0x01, 0x02, 0x03, 0x04])
def test_any_record_version_byte_is_tls_passed_through_for_byod(
    gw: Gateway, origin: RecordingOrigin, version: int
) -> None:
    """BYOD TLS to an allowed host passes through untouched, whatever the version byte."""
    before_origin, before_log = origin.count(), len(log_lines(gw))
    status, _ = attempt(gw, BYOD, ALLOWED, client_hello(ALLOWED, version))
    assert status == 200
    assert settle(origin, before_origin) == 1
    assert origin.connections[-1] == b"\x16"
    line = new_line(gw, before_log, BYOD)
    assert (line["decision"], line["tls"], line["host"]) == ("allow", "passthrough", ALLOWED)


def test_a_0x04_client_hello_is_intercepted_and_filtered_for_pupils(
    gw: Gateway, origin: RecordingOrigin
) -> None:
    """A full TLS session whose first record says 0x0304: intercepted, and filtered per request.

    The pupil's blocked host gets the block page inside it; the allowed host reaches the origin.
    """
    for host, expected in ((BLOCKED, b"403"), (ALLOWED, b"200")):
        before = origin.count()
        sock = socket.create_connection(
            ("127.0.0.1", gw.port), timeout=5, source_address=(PUPIL, 0)
        )
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(gw.ca_file))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                if first:
                    data = data[:2] + b"\x04" + data[3:]
                    first = False
                if data:
                    sock.sendall(data)
                incoming.write(sock.recv(65536))
        tls.write(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        sock.sendall(outgoing.read())
        reply = b""
        while b"\r\n" not in reply:
            incoming.write(sock.recv(65536))
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
        sock.close()
        assert reply.split(b" ", 2)[1] == expected
        assert settle(origin, before) == (0 if host == BLOCKED else 1)


# --- the decision table, a representative subset through the real proxy and CLI -----------


ACCOUNTS = {"j.teacher": "staff", "head.teacher": "approver", "dsl": "dsl"}


def sg(config_dir: Path, *args: str) -> str:
    return run_cli(config_dir, *args, accounts=ACCOUNTS)


def tunnel_answer(gw: Gateway, origin: RecordingOrigin, client: str, host: str) -> str:
    """allow or block, for a ClientHello to ``host`` after CONNECT (passed through or not)."""
    before = origin.count()
    status, reply = attempt(gw, client, host, client_hello(host))
    reached = settle(origin, before)
    if status != 200 or reply.startswith(b"\x15"):  # refused at CONNECT, or a TLS alert
        assert reached == 0
        return "block"
    assert reached == 1  # passed through untouched: the origin itself answers the ClientHello
    return "allow"


def mitm_answer(gw: Gateway, client: str, host: str) -> str:
    """allow or block, for an HTTPS request decrypted by the proxy."""
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=5, context=context, source_address=(client, 0)
    )
    conn.set_tunnel(host, 443)
    try:
        conn.request("GET", "/")
        status = conn.getresponse().status
    finally:
        conn.close()
    return "block" if status == 403 else "allow"


def test_the_real_proxy_answers_as_explain_does(gw: Gateway, origin: RecordingOrigin) -> None:
    """Suspension and override, passed through or decrypted: the proxy does what explain says.

    Two of these were wrong before one decision per connection: a suspended pupil
    passed through a no_decrypt host, and an approved override did not open a
    host for a group that is not intercepted.
    """
    sg(gw.config_dir, "access", "suspend", "s.pupil", "--reason", "misuse", "--by", "dsl")
    out = sg(
        gw.config_dir,
        *("override", "request", BLOCKED, "--for", "user:o.byod", "--days", "1"),
        *("--reason", "Art history: the nude in painting", "--by", "j.teacher"),
    )
    sg(gw.config_dir, "override", "approve", out.split()[1].lstrip("#"), "--by", "head.teacher")
    cases = [
        (SUSPENDED, BANK, tunnel_answer),  # no_decrypt, suspended: refused
        (PUPIL, BANK, tunnel_answer),  # no_decrypt, not suspended: passed through
        (OVERRIDDEN, BLOCKED, tunnel_answer),  # not intercepted, override: passed through
        (BYOD, BLOCKED, tunnel_answer),  # not intercepted, no override: refused
        (SUSPENDED, ALLOWED, mitm_answer),  # intercepted, suspended: the block page
        (OVERRIDDEN, ILLEGAL, tunnel_answer),  # the override is for another host; illegal
    ]
    time.sleep(1.0)  # the proxy reads the store every 200 ms
    for client, host, way in cases:
        explained = json.loads(
            sg(gw.config_dir, "explain", f"https://{host}/", "--ip", client, "--json")
        )
        if way is tunnel_answer:
            answer = tunnel_answer(gw, origin, client, host)
        else:
            answer = mitm_answer(gw, client, host)
        assert answer == explained["decision"], (client, host, explained["rule"])


def tunnel_counts(gw: Gateway) -> dict[str, float]:
    port = gw.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("schoolgate_tunnels_total{")
    }


def test_tunnels_are_counted_by_group(gw: Gateway, origin: RecordingOrigin) -> None:
    """schoolgate_tunnels_total counts a refused and a relayed SSH tunnel, by group."""
    refused = 'schoolgate_tunnels_total{action="refuse",group="byod",kind="tcp"}'
    relayed = 'schoolgate_tunnels_total{action="pass",group="byod",kind="tcp"}'
    before = tunnel_counts(gw)
    before_origin = origin.count()
    attempt(gw, BYOD, ALLOWED, payload_for("ssh-banner", ALLOWED))
    attempt(gw, BYOD, PASSTHROUGH, payload_for("ssh-banner", PASSTHROUGH))
    assert settle(origin, before_origin) == 1
    after = tunnel_counts(gw)
    assert after[refused] == before[refused] + 1
    assert after[relayed] == before[relayed] + 1


def test_the_origin_saw_no_connection_it_was_not_expected_to(origin: RecordingOrigin) -> None:
    """Runs last: every connection the origin accepted was seen, and checked, by its test."""
    time.sleep(1.0)
    assert origin.count() == origin.in_time
