"""Transparent gateway mode, end to end, in network namespaces built for the test.

Three namespaces joined by veth pairs: a client on the pupil network
(10.10.0.2), the gateway that runs ``schoolgate run --mode transparent`` with
the shipped ``deploy/nftables/schoolgate.nft`` loaded, and an origin
(198.51.100.10, a documentation address that exists only in its namespace).
The client has no proxy setting: it connects straight to the origin's
address, and the gateway's nftables redirect is what puts Schoolgate in the
way. Needs root (CI runs as root); skipped, with the reason, only where
network namespaces cannot be made.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.logins import hash_password
from tests.integration.harness import ROOT, TEST_POLICY, OriginCA, schoolgate_command, write_config

NFT_RULES = ROOT / "deploy" / "nftables" / "schoolgate.nft"
PEER = Path(__file__).with_name("netns_peer.py")
CLIENT, GW_LAN, GW_WAN, ORIGIN = "10.10.0.2", "10.10.0.1", "198.51.100.1", "198.51.100.10"
PORT = 8080
SITE = "www.school-origin.test"
POLICY = TEST_POLICY.replace(
    "- {cidr: 127.0.0.2/32, group: pupil}", "- {cidr: 10.10.0.0/24, group: pupil}"
)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result


def why_no_namespaces() -> str | None:
    """The reason network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "transparent-mode test needs root to build network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "transparent-mode test needs iproute2's `ip` to build network namespaces"
    probe = f"sgprobe{os.getpid()}"
    made = sh("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return None


@dataclass
class Net:
    client: str
    gateway: str
    origin: str
    data_dir: Path
    processes: list[subprocess.Popen[bytes]]

    def request(
        self, scheme: str, host: str, path: str = "/", *headers: str, form: str | None = None
    ) -> tuple[int, str]:
        """One request from the client namespace, to the origin's address, no proxy set
        (a POST of ``form`` when given)."""
        ca = str(self.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem")
        how = ["get"] if form is None else ["post"]
        out = sh(
            "ip", "netns", "exec", self.client, sys.executable, str(PEER),
            *how, scheme, ORIGIN, host, path, ca, *headers, *([] if form is None else [form]),
        ).stdout  # fmt: skip
        status, _, body = out.partition("\n")
        return int(status), body


def build(net: Net) -> None:
    for name in (net.client, net.gateway, net.origin):
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
    sh("ip", "-n", net.gateway, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
       "netns", net.client)  # fmt: skip
    sh("ip", "-n", net.gateway, "link", "add", "wan", "type", "veth", "peer", "name", "eth0",
       "netns", net.origin)  # fmt: skip
    for ns, dev, address in (
        (net.client, "eth0", f"{CLIENT}/24"),
        (net.gateway, "lan", f"{GW_LAN}/24"),
        (net.gateway, "wan", f"{GW_WAN}/24"),
        (net.origin, "eth0", f"{ORIGIN}/24"),
    ):
        sh("ip", "-n", ns, "addr", "add", address, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", net.client, "route", "add", "default", "via", GW_LAN)
    sh("ip", "-n", net.origin, "route", "add", "default", "via", GW_WAN)
    # A real gateway forwards what it does not redirect (so without the rules the client
    # would reach the origin directly, and the test would fail).
    forward = "open('/proc/sys/net/ipv4/ip_forward', 'w').write('1')"
    sh("ip", "netns", "exec", net.gateway, sys.executable, "-c", forward)
    nft = shutil.which("nft")
    assert nft, "nft is missing: apt-get install nftables (make test installs it)"
    sh("ip", "netns", "exec", net.gateway, nft, "-D", 'lan_if="lan"', "-D", f"proxy_port={PORT}",
       "-f", str(NFT_RULES))  # fmt: skip


def wait_listening(
    ns: str, port: int, process: subprocess.Popen[bytes], what: str, log: Path | None = None
) -> None:
    """Wait for ``port`` in ``ns``; a bound, not a wait (two workers start slowly when loaded)."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 0.5)"
    deadline = time.monotonic() + 60
    tail = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if sh("ip", "netns", "exec", ns, sys.executable, "-c", probe, check=False).returncode == 0:
            return
        time.sleep(0.2)
    if log is not None and log.exists():
        tail = ": " + log.read_text("utf-8", "replace")[-1500:]
    state = "exited early" if process.poll() is not None else f"did not listen on {port} in 60 s"
    raise AssertionError(f"{what} {state}{tail}")


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def net(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    origin_ca: OriginCA,
) -> Iterator[Net]:
    reason = why_no_namespaces()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("transparent")
    # Unique per run and per parameter: worktrees share the machine's namespace names, and a
    # namespace left by a killed run must not make a later one fail.
    tag = secrets.token_hex(4)
    n = Net(f"sgc{tag}", f"sgg{tag}", f"sgo{tag}", tmp / "var", [])
    try:
        build(n)
        cert, key = origin_ca.issue(tmp, SITE)
        origin = subprocess.Popen(
            ["ip", "netns", "exec", n.origin, sys.executable, str(PEER), "origin", str(cert),
             str(key)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        n.processes.append(origin)
        wait_listening(n.origin, 80, origin, "origin")
        config = tmp / "config"
        write_config(config, n.data_dir, PORT, policy=POLICY)
        users = tmp / "users"
        users.write_text(f"head.teacher:{hash_password('head pass', rounds=4)}\n")
        with (config / "schoolgate.yaml").open("a") as f:
            f.write(f"auth: {{users_file: {users}}}\n")
        stderr = (tmp / "schoolgate.stderr").open("wb")
        gateway = subprocess.Popen(
            ["ip", "netns", "exec", n.gateway, *schoolgate_command(), "run", "--config",
             str(config), "--mode", "transparent", "--listen", f"0.0.0.0:{PORT}",
             "--set", f"ssl_verify_upstream_trusted_ca={origin_ca.cert_path}",
             "--set", "schoolgate_reload_ms=0", "--workers", str(request.param)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        n.processes.append(gateway)
        wait_listening(
            n.gateway, PORT, gateway, "schoolgate run --mode transparent", tmp / "schoolgate.stderr"
        )
        yield n
    finally:
        for process in reversed(n.processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in (n.client, n.gateway, n.origin):
            sh("ip", "netns", "del", name, check=False)


def test_a_pupil_is_filtered_with_no_proxy_setting(net: Net) -> None:
    """Plain HTTP to an adult site, sent straight to its address, gets the block page."""
    status, body = net.request("http", "adult-demo.example", "/page")
    assert status == 403
    assert "category <strong>adult</strong>" in body


def test_allowed_http_reaches_the_origin_through_the_gateway(net: Net) -> None:
    """An allowed request goes through Schoolgate to the origin namespace and back."""
    status, body = net.request("http", SITE, "/lesson")
    assert (status, body.strip()) == (200, f"origin ok {SITE} /lesson")


def test_blocked_https_is_decided_from_the_sni(net: Net) -> None:
    """HTTPS with no proxy setting is blocked from the TLS SNI, with the block page inside."""
    status, body = net.request("https", "casino-demo.example")
    assert status == 403
    assert "gambling" in body


def test_allowed_https_reaches_the_origin(net: Net) -> None:
    """Allowed HTTPS is intercepted, checked against the origin's real certificate, passed."""
    status, body = net.request("https", SITE, "/secure")
    assert (status, body.strip()) == (200, f"origin ok {SITE} /secure")


def test_the_access_log_names_the_pupil_by_address(net: Net) -> None:
    """The gateway logged the client's own address and the pupil group, not the gateway's."""
    assert net.request("http", "adult-demo.example", "/logged")[0] == 403
    deadline = time.monotonic() + 5
    blocked: list[dict[str, object]] = []
    while time.monotonic() < deadline and not blocked:
        log = net.data_dir / "access.log"
        if log.exists():
            rows = [json.loads(line) for line in log.read_text().splitlines()]
            blocked = [r for r in rows if r.get("path") == "/logged"]
        time.sleep(0.1)
    assert blocked
    assert {(r["client_ip"], r["group"], r["decision"]) for r in blocked} == {
        (CLIENT, "pupil", "block")
    }


def test_signing_in_binds_the_client_address(net: Net) -> None:
    """A transparent client signs in at the login page; its traffic is then the user's."""
    assert net.request("http", "social-demo.example")[0] == 403
    token = base64.b64encode(b"head.teacher:wrong").decode()
    assert net.request("http", "login.schoolgate", "/", f"Authorization=Basic {token}")[0] == 401
    assert net.request("http", "social-demo.example")[0] == 403
    token = base64.b64encode(b"head.teacher:head pass").decode()
    status, body_signed_in = net.request(
        "http", "login.schoolgate", "/", f"Authorization=Basic {token}"
    )
    assert (status, "signed in as head.teacher" in body_signed_in) == (200, True)
    try:
        # With workers, the other one rereads the shared bindings within a second.
        deadline = time.monotonic() + 3
        while True:
            status, body = net.request("http", "social-demo.example", "/feed")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (status, body.strip()) == (200, "origin ok social-demo.example /feed")
    finally:
        # Signing out is a POST with the token the signed-in page carries (not a GET).
        csrf = re.search(r"name='csrf' value='(\w+)'", body_signed_in)
        assert csrf is not None
        form = f"csrf={csrf.group(1)}"
        assert net.request("http", "login.schoolgate", "/logout", form=form)[0] == 200
    # Every worker looks at the bindings again within a second of its next request. Which
    # worker answers is the kernel's choice (SO_REUSEPORT), and on a loaded machine a request
    # in the namespace can take a second or more: wait for two 403s in a row, up to 10 s.
    deadline, refused = time.monotonic() + 10, 0
    while refused < 2:
        status = net.request("http", "social-demo.example")[0]
        refused = refused + 1 if status == 403 else 0
        if refused < 2 and time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 403
