"""The shared facts: reading a ClientHello whatever its record version, and what bytes are."""

from __future__ import annotations

import ssl

import pytest

from addons import facts
from addons.tlspolicy import what_is


def client_hello(sni: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("version", [0x00, 0x01, 0x02, 0x03, 0x04, 0x7F, 0xFF])
def test_any_record_version_byte_is_tls(version: int) -> None:
    """Servers ignore the record layer's version byte, so every value of it is TLS to us."""
    hello = bytearray(client_hello("lesson.example"))
    hello[2] = version
    assert facts.starts_like_tls(bytes(hello))
    assert what_is(bytes(hello)) == "tls"
    parsed = facts.tls_client_hello(bytes(hello))
    assert parsed is not None
    assert facts.sni_of(parsed) == ("lesson.example", False)


def test_normalising_records_changes_only_the_version_bytes() -> None:
    """The handshake inside is untouched; each complete record's header says 0x0301."""
    hello = bytearray(client_hello("lesson.example"))
    hello[2] = 0x04
    fixed = facts.normalise_records(bytes(hello))
    assert fixed[:3] == b"\x16\x03\x01"
    assert fixed[3:] == bytes(hello[3:])


def test_half_a_client_hello_is_not_yet_anything() -> None:
    """An incomplete ClientHello is None (wait), not an error."""
    assert facts.tls_client_hello(client_hello("lesson.example")[:40]) is None


@pytest.mark.parametrize(
    "bad",
    [("a" * 30 + "a" + "b" * 33 + ".example"), ("a" * 30 + "\x00" + "b" * 33 + ".example")],
    ids=["64-character-label", "embedded-nul"],
)
def test_an_unreadable_sni_is_reported_as_sent_but_unreadable(bad: str) -> None:
    """mitmproxy's parser rejects these names; we know an SNI was there all the same."""
    good = "a" * 30 + "." + "b" * 33 + ".example"
    hello = client_hello(good).replace(good.encode(), bad.encode())
    parsed = facts.tls_client_hello(hello)
    assert parsed is not None
    assert facts.sni_of(parsed) == (None, True)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http"),
        (b"POST http://x/ HTTP/1.0\n", "http"),
        (b"GET / HTT", "more"),
        (b"GE", "more"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "other"),
        (b"hello, anything at all\r\n", "other"),
        (bytes.fromhex("002a38") + bytes(40), "other"),
        (b"\x16", "more"),
        (b"\x16\x03", "more"),
        (b"\x16\x04", "other"),
        (b"GET / HTTP/1.1" + bytes([0]), "other"),
    ],
)
def test_what_the_first_bytes_are(data: bytes, kind: str) -> None:
    """Only a request line is HTTP; a banner, a VPN packet or binary is something else."""
    assert what_is(data) == kind
