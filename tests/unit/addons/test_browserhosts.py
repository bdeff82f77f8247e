"""With BrowserHosts installed, mitmproxy reads every host a browser sends, as it was sent."""

from __future__ import annotations

import ssl
import uuid

import pytest
from mitmproxy.net import check
from mitmproxy.net.http import url
from mitmproxy.proxy.layers.tls import parse_client_hello

from addons import browserhosts


@pytest.fixture(autouse=True)
def installed() -> None:
    browserhosts.install()


def _client_hello(server_name: str) -> bytes:
    """The first TLS record a client sends with this SNI (made by Python's ssl)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(
    "host", ["xn--fa-hia.de", "xn--a.com", "www.xn--fa-hia.de", "a..b", "_x.y"]
)
def test_hosts_browsers_send_are_valid(host: str) -> None:
    """Punycode labels IDNA2003 refuses, and other hosts WHATWG accepts, pass mitmproxy's check."""
    assert check.is_valid_host(host)
    assert check.is_valid_host(host.encode())


@pytest.mark.parametrize("host", ["exa mple.com", "a/b", "a\x00b", "[::1", "ex\tample"])
def test_hosts_browsers_refuse_stay_invalid(host: str) -> None:
    """Spaces, controls, delimiters and broken IPv6 are still refused."""
    assert not check.is_valid_host(host.encode())


def test_sni_of_a_punycode_host_is_read() -> None:
    """A ClientHello for xn--fa-hia.de has that SNI (mitmproxy read it as no SNI at all)."""
    hello = parse_client_hello(_client_hello("xn--fa-hia.de"))
    assert hello is not None
    assert hello.sni == "xn--fa-hia.de"


def test_authority_keeps_the_host_as_sent() -> None:
    """An ASCII authority is returned as sent, not decoded to Unicode."""
    assert url.parse_authority(b"xn--fa-hia.de:443", check=True) == ("xn--fa-hia.de", 443)
    assert url.parse_authority(b"xn--bcher-kva.de", check=True) == ("xn--bcher-kva.de", None)
    assert url.parse_authority(b"[::1]:8080", check=True) == ("::1", 8080)


def test_raw_unicode_host_is_mapped_as_a_browser_maps_it() -> None:
    """A raw UTF-8 faß.de becomes xn--fa-hia.de, the host it is decided as, never fass.de."""
    assert url.parse_authority("faß.de:443".encode(), check=True) == ("xn--fa-hia.de", 443)


def test_bad_authority_is_still_an_error() -> None:
    """What no browser sends is still refused when mitmproxy asks for a check."""
    with pytest.raises(ValueError, match="bad authority"):
        url.parse_authority(b"exa mple.com:80", check=True)
    with pytest.raises(ValueError, match="bad authority"):
        url.parse_authority(b"example.com:99999", check=True)


def test_only_names_of_dns_length_are_remembered() -> None:
    """A Host header can be 64 KiB: answered every time, never kept (32,768 kept would be
    2 GiB); a name of DNS's length is kept, and the answer is the same either way."""
    long_host = "a" * 60_000 + ".example"
    kept, mapped = browserhosts.browser_accepts, browserhosts._ascii_host
    before = (kept.cache_info().currsize, mapped.cache_info().currsize)
    answers = {
        (browserhosts.browser_accepts(long_host), browserhosts.parse_authority(long_host, False))
        for _ in range(2)
    }
    assert answers == {(browserhosts.browser_accepts.fn(long_host), (long_host, None))}
    assert (kept.cache_info().currsize, mapped.cache_info().currsize) == before
    name = f"kept-{uuid.uuid4().hex}.example"
    assert browserhosts.browser_accepts(name)
    assert kept.cache_info().currsize == before[0] + 1
