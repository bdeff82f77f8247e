"""No IWF host in any output: illegal hits over HTTP and HTTPS, with and without the CA.

The real proxy is sent illegal requests every way a device can make them;
a device that does not trust the school's CA makes mitmproxy log its TLS
failure, naming the host. Then stdout, stderr and every file under the data
folder (access log, database, spool, review requests) are searched for the
illegal hosts and the IWF URL's path.
"""

from __future__ import annotations

import http.client
import ssl

import pytest

from tests.integration.harness import (
    PUPIL,
    ROOT,
    STAFF,
    Gateway,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

ILLEGAL_HOST = "illegal-demo.example"  # a host entry of the demo IWF list
IWF_URL_HOST, IWF_PATH = "iwf-test.example", "/abuse/test-image.jpg"  # a URL entry
LAWFUL_HOST = "lawful-site.example"  # on no list
ILLEGAL_ADDRESS = "127.0.0.99"  # added to the IWF list for this test: an address entry


def untrusting_tunnel(gw: Gateway, host: str, client: str) -> str:
    """Open HTTPS to ``host`` through the proxy from a device without the school's CA."""
    context = ssl.create_default_context()  # the system's CAs only
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=10, context=context, source_address=(client, 0)
    )
    conn.set_tunnel(host, 443)
    try:
        conn.request("GET", "/")
        return f"answered {conn.getresponse().status}"
    except ssl.SSLError as exc:
        return type(exc).__name__
    finally:
        conn.close()


@pytest.fixture(scope="module")
def after_illegal_hits(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA
) -> tuple[Gateway, list[tuple[str, bytes]]]:
    """A proxy that saw illegal hits every way, stopped; every output it wrote, by name."""
    tmp = tmp_path_factory.mktemp("redaction")
    config = tmp / "config"
    write_config(config, tmp / "var", free_port())
    demo_iwf = ROOT / "blocklists" / "demo" / "iwf.txt"
    iwf = tmp / "iwf.txt"
    iwf.write_text(demo_iwf.read_text() + f"{ILLEGAL_ADDRESS}\n")
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text().replace(str(demo_iwf), str(iwf)))
    gw = start_gateway(tmp, origin_ca)
    try:
        for client in (PUPIL, STAFF):
            assert gw.get(f"http://{ILLEGAL_HOST}/page", client=client)[0] == 403
            assert gw.get(f"https://{ILLEGAL_HOST}/page", client=client)[0] == 403
            assert untrusting_tunnel(gw, ILLEGAL_HOST, client) == "SSLCertVerificationError"
            assert gw.get(f"http://{IWF_URL_HOST}{IWF_PATH}", client=client)[0] == 403
            assert gw.get(f"https://{IWF_URL_HOST}{IWF_PATH}", client=client)[0] == 403
            assert untrusting_tunnel(gw, IWF_URL_HOST, client) == "SSLCertVerificationError"
        assert untrusting_tunnel(gw, LAWFUL_HOST, PUPIL) == "SSLCertVerificationError"
        assert gw.get(f"http://{ILLEGAL_ADDRESS}:8000/page", client=PUPIL)[0] == 403
        untrusting_tunnel(gw, ILLEGAL_ADDRESS, PUPIL)  # refused or failing: either way logged
        gw.access_lines(8)
    finally:
        stop_gateway(gw)
    outputs = [("stdout", (tmp / "schoolgate.stdout").read_bytes())]
    outputs.append(("stderr", gw.stderr_path.read_bytes()))
    outputs += [(str(p), p.read_bytes()) for p in sorted(gw.data_dir.rglob("*")) if p.is_file()]
    return gw, outputs


def test_the_tls_failures_were_logged(
    after_illegal_hits: tuple[Gateway, list[tuple[str, bytes]]],
) -> None:
    """mitmproxy did log the untrusting devices' failures (so the next test means something)."""
    gw, _ = after_illegal_hits
    failures = [line for line in gw.stderr().splitlines() if "does not trust" in line]
    assert len([line for line in failures if "(withheld)" in line]) >= 4


@pytest.mark.parametrize(
    "needle", [ILLEGAL_HOST, IWF_URL_HOST, IWF_PATH, "test-image", ILLEGAL_ADDRESS]
)
def test_no_output_names_an_illegal_host_or_url(
    after_illegal_hits: tuple[Gateway, list[tuple[str, bytes]]], needle: str
) -> None:
    """Neither stdout, stderr nor any file in the data folder names the illegal host or URL."""
    _, outputs = after_illegal_hits
    assert len(outputs) > 3
    found = [name for name, data in outputs if needle.encode() in data.lower()]
    assert found == []


def test_a_lawful_host_is_still_logged(
    after_illegal_hits: tuple[Gateway, list[tuple[str, bytes]]],
) -> None:
    """Only illegal hosts are withheld: a lawful host's TLS failure still names it."""
    gw, _ = after_illegal_hits
    assert any(
        "does not trust" in line and LAWFUL_HOST in line for line in gw.stderr().splitlines()
    )
