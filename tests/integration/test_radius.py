"""Identity from the Wi-Fi, through the real proxy: RADIUS accounting names who has an address.

The test plays the wireless controller (a NAS on 127.0.0.1) and sends real
RADIUS Accounting-Requests (pyrad) to the filter's listener. The pupil's
address (127.0.0.2, group pupil by network) becomes head.teacher's at Start
(the head may use social media), stays so across a restart of the filter,
and is the pupil network's again at Stop. A packet with the wrong secret, or
from an address that is not a listed NAS, changes nothing. With a directory
(a real slapd), a Wi-Fi user the policy does not list gets the filter group
their directory group maps to.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from pyrad import packet

from proxy.radius import load_dictionary
from tests.integration.harness import (
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    run_cli,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.slapd import Slapd, slapd  # noqa: F401  (the fixture)

SECRET = b"integration-wifi-secret"
DICT = load_dictionary()


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nas:
    """A wireless controller sending accounting to the filter from ``source``."""

    def __init__(self, port: int, source: str = "127.0.0.1", secret: bytes = SECRET) -> None:
        self.port, self.source, self.secret = port, source, secret

    def send(self, status: str, user: str, ip: str, mac: str | None = None) -> bool:
        """Send one Accounting-Request; whether an Accounting-Response came back."""
        pkt = packet.AcctPacket(code=packet.AccountingRequest, secret=self.secret, dict=DICT)
        pkt["Acct-Status-Type"] = status
        pkt["User-Name"] = user
        pkt["Framed-IP-Address"] = ip
        pkt["Acct-Session-Id"] = f"{user}-{ip}"
        if mac is not None:
            pkt["Calling-Station-Id"] = mac
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.source, 0))
            sock.settimeout(2.0)
            sock.sendto(pkt.RequestPacket(), ("127.0.0.1", self.port))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                return False
        reply = packet.Packet(packet=data, secret=self.secret, dict=DICT)
        return bool(reply.code == packet.AccountingResponse and reply.id == pkt.id)


@pytest.fixture(scope="module")
def radius_port() -> int:
    return _udp_port()


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, radius_port: int
) -> tuple[Path, OriginCA]:
    tmp = tmp_path_factory.mktemp("radius")
    write_config(tmp / "config", tmp / "var", free_port())
    with (tmp / "config" / "schoolgate.yaml").open("a", encoding="utf-8") as settings:
        settings.write(
            "radius:\n"
            f"  listen: 127.0.0.1:{radius_port}\n"
            "  session_minutes: 30\n"
            "  clients:\n"
            f"    - {{address: 127.0.0.1, secret: {SECRET.decode()}}}\n"
        )
    return tmp, origin_ca


def _social(gw: Gateway, origin: Origin) -> int:
    url = f"http://127.0.0.1:{origin.http_port}/feed"
    return gw.get(url, client=PUPIL, headers={"Host": "social-demo.example"})[0]


def _eventually(want: int, gw: Gateway, origin: Origin) -> int:
    """The status, once it is ``want`` (bindings are reread at most once a second)."""
    deadline = time.monotonic() + 5
    status = _social(gw, origin)
    while status != want and time.monotonic() < deadline:
        time.sleep(0.3)
        status = _social(gw, origin)
    return status


def test_start_names_the_address_and_stop_ends_it(
    setup: tuple[Path, OriginCA], origin: Origin, radius_port: int
) -> None:
    """Start makes 127.0.0.2 head.teacher's (social allowed), a restart keeps it, Stop ends it."""
    tmp, origin_ca = setup
    gw = start_gateway(tmp, origin_ca)
    try:
        time.sleep(0.5)  # the listener starts with the proxy
        nas = Nas(radius_port)
        assert _social(gw, origin) == 403  # the pupil network's rule
        assert not Nas(radius_port, secret=b"wrong").send("Start", "head.teacher", PUPIL)
        assert not Nas(radius_port, source="127.0.0.9").send("Start", "head.teacher", PUPIL)
        time.sleep(1.2)
        assert _social(gw, origin) == 403  # neither changed anything
        assert nas.send("Start", "head.teacher", PUPIL)
        assert _eventually(200, gw, origin) == 200
    finally:
        stop_gateway(gw)
    gw = start_gateway(tmp, origin_ca)  # a restart keeps the session
    try:
        assert _eventually(200, gw, origin) == 200
        time.sleep(0.5)
        assert Nas(radius_port).send("Stop", "head.teacher", PUPIL)
        assert _eventually(403, gw, origin) == 403
    finally:
        stop_gateway(gw)


def test_an_incident_names_the_wifi_device(
    setup: tuple[Path, OriginCA], origin: Origin, radius_port: int
) -> None:
    """The MAC the controller sends (Calling-Station-Id) is the device on the user's incident,
    so the DSL can find the device after its address has gone to someone else."""
    tmp, origin_ca = setup
    gw = start_gateway(tmp, origin_ca)
    try:
        time.sleep(0.5)
        assert Nas(radius_port).send("Start", "head.teacher", PUPIL, mac="AC-DE-48-00-11-22")
        assert _eventually(200, gw, origin) == 200  # the binding is read: the head's group
        url = f"http://127.0.0.1:{origin.http_port}/page"
        assert gw.get(url, client=PUPIL, headers={"Host": "adult-demo.example"})[0] == 403
        deadline = time.monotonic() + 15
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline and not rows:
            out = run_cli(gw.config_dir, "incidents", "list", "--json")
            rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            rows = [row for row in rows if row["category"] == "adult"]
            time.sleep(0.3)
        assert [(row["user"], row["device"]) for row in rows] == [
            ("head.teacher", "ac:de:48:00:11:22")
        ]
    finally:
        assert Nas(radius_port).send("Stop", "head.teacher", PUPIL)
        stop_gateway(gw)


def test_directory_group_picks_the_filter_group(
    tmp_path: Path,
    origin_ca: OriginCA,
    origin: Origin,
    slapd: Slapd,  # noqa: F811
) -> None:
    """A Wi-Fi user the policy does not list gets the group their directory group maps to."""
    port = _udp_port()
    write_config(tmp_path / "config", tmp_path / "var", free_port())
    with (tmp_path / "config" / "schoolgate.yaml").open("a", encoding="utf-8") as settings:
        settings.write(
            "radius:\n"
            f"  listen: 127.0.0.1:{port}\n"
            "  clients:\n"
            f"    - {{address: 127.0.0.1, secret: {SECRET.decode()}}}\n"
            "directory:\n"
            f"  server: {slapd.url}\n"
            f"  base_dn: {slapd.suffix}\n"
            "  groups:\n"
            f"    - {{dn: 'cn=teachers,ou=groups,{slapd.suffix}', group: head}}\n"
        )
    gw = start_gateway(tmp_path, origin_ca)
    try:
        time.sleep(0.5)
        assert _social(gw, origin) == 403  # 127.0.0.2 is the pupil network
        assert Nas(port).send("Start", "erin.nobody", PUPIL)  # in the directory, no mapped group
        time.sleep(1.5)
        assert _social(gw, origin) == 403
        assert Nas(port).send("Start", "carol.staff", PUPIL)  # a member of cn=teachers
        assert _eventually(200, gw, origin) == 200  # head: social media allowed
    finally:
        stop_gateway(gw)
