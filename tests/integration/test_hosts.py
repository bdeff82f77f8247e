"""Hosts as browsers spell them, through the real proxy: IDN, IPv6 literals, NAT64.

Before ada-url and ``addons/browserhosts.py``: ``xn--fa-hia.de`` (faß.de) was
answered 400 by mitmproxy, ``faß.de`` in a list was the key of ``fass.de``,
every ``http://[IPv6]/`` URL was blocked as "filter error", and
``[64:ff9b::1.2.3.4]`` missed an entry for ``1.2.3.4``.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    PUPIL,
    TEST_POLICY,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    schoolgate_command,
    start_gateway,
    stop_gateway,
    write_config,
)

POLICY = TEST_POLICY.replace(
    "    - {entry: bad.example, category: adult}\n",
    "    - {entry: bad.example, category: adult}\n"
    "    - {entry: faß.de, category: adult}\n"
    "    - {entry: 1.2.3.4, category: adult}\n"
    "    - {entry: '2001:db8::7', category: adult}\n",
)


@pytest.fixture(scope="module")
def hosts_gateway(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("hosts")
    write_config(tmp / "config", tmp / "var", free_port(), POLICY)
    gw = start_gateway(tmp, origin_ca)
    yield gw
    stop_gateway(gw)


def _raw(gateway: Gateway, request: bytes) -> bytes:
    """Send raw bytes from the pupil's address; the proxy's answer up to the first body bytes."""
    with socket.create_connection(
        ("127.0.0.1", gateway.port), timeout=10, source_address=(PUPIL, 0)
    ) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize(
    "target",
    ["http://xn--fa-hia.de/", "http://XN--FA-HIA.DE./page", "http://www.xn--fa-hia.de/"],
)
def test_punycode_host_browsers_send_is_filtered_not_refused(
    hosts_gateway: Gateway, target: str
) -> None:
    """faß.de as browsers send it reaches the entry written as faß.de: 403, not mitmproxy's 400."""
    status, body = hosts_gateway.get(target, client=PUPIL)
    assert status == 403, body
    assert "adult" in body


def test_connect_to_punycode_host_is_filtered_not_refused(hosts_gateway: Gateway) -> None:
    """CONNECT xn--fa-hia.de:443 is accepted (was 400) and the page inside it is blocked."""
    answer = _raw(
        hosts_gateway, b"CONNECT xn--fa-hia.de:443 HTTP/1.1\r\nHost: xn--fa-hia.de\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    status, body = hosts_gateway.get("https://xn--fa-hia.de/", client=PUPIL)
    assert status == 403, body
    assert "adult" in body


@pytest.mark.parametrize(
    "target",
    [
        "http://[64:ff9b::1.2.3.4]/",
        "http://[64:ff9b::102:304]:8080/x",
        "http://[::ffff:1.2.3.4]/",
        "http://[2001:DB8:0:0:0:0:0:7]/a",
    ],
)
def test_ipv6_literals_reach_their_entries(hosts_gateway: Gateway, target: str) -> None:
    """NAT64 and mapped spellings of 1.2.3.4, and a long IPv6 spelling, reach their entry."""
    status, body = hosts_gateway.get(target, client=PUPIL)
    assert status == 403, body
    assert "filter error" not in body
    assert "adult" in body


def test_ipv6_literal_is_filtered_and_allowed(hosts_gateway: Gateway, origin: Origin) -> None:
    """An allowed http://[IPv6]/ URL is decided (not a "filter error") and reaches the origin."""
    before = len(origin.hits)
    status, body = hosts_gateway.get(
        f"http://[::ffff:127.0.0.1]:{origin.http_port}/v6-lesson", client=PUPIL
    )
    assert status == 200, body
    assert "/v6-lesson" in body
    assert len(origin.hits) == before + 1


def test_fass_and_fass_sharp_s_are_two_hosts(hosts_gateway: Gateway) -> None:
    """An entry for faß.de does not match fass.de, another host (IDNA2003 made them one)."""
    explained = subprocess.run(
        [
            *schoolgate_command(),
            "explain",
            "http://fass.de/",
            "--group",
            "pupil",
            "--json",
            "--config",
            str(hosts_gateway.config_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(explained.stdout)["decision"] == "allow"
    sharp = subprocess.run(
        [
            *schoolgate_command(),
            "explain",
            "http://faß.de/",
            "--group",
            "pupil",
            "--json",
            "--config",
            str(hosts_gateway.config_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(sharp.stdout)
    assert found["decision"] == "block"
    assert found["matched"]["entry"] == "xn--fa-hia.de"


def test_policy_file_is_read(hosts_gateway: Gateway) -> None:
    """The module's policy is the one with the IDN and IP entries (guards the fixture)."""
    text = Path(hosts_gateway.config_dir / "policy.yaml").read_text(encoding="utf-8")
    assert "faß.de" in text
