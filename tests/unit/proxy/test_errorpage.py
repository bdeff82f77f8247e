"""The upstream-failure page says what happened, in the school's name, with a reference."""

from __future__ import annotations

import pytest

from proxy.errorpage import classify, notice, render


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("[Errno 111] Connect call failed ('127.0.0.1', 49083)", "refused"),
        ("[Errno 113] Connect call failed ('10.0.0.9', 443): No route to host", "refused"),
        ("[Errno -2] Name or service not known", "dns"),
        ("[Errno -5] No address associated with hostname", "dns"),
        ("TLS handshake failed: certificate verify failed (self-signed certificate)", "tls"),
        ("Server TLS handshake failed. [SSL: WRONG_VERSION_NUMBER] wrong version number", "tls"),
        ("[Errno 110] Connect call failed ('192.0.2.1', 443)", "timeout"),
        ("Connection timed out", "timeout"),
        ("something else entirely", "other"),
    ],
)
def test_failures_are_told_apart(message: str, kind: str) -> None:
    """mitmproxy's and the OS's messages map to DNS, refused, TLS, timeout or other."""
    assert classify(message).kind == kind


def test_page_names_the_school_and_escapes_what_it_shows() -> None:
    """The page has the school, the reference and the detail, all HTML-escaped."""
    page = render("<script>x</script> refused", school="St Aidan's & Co", reference="SG-1234ABCD")
    assert "St Aidan&#x27;s &amp; Co" in page
    assert 'id="reference">SG-1234ABCD<' in page
    assert "<script>x" not in page
    assert "This site refused the connection" in page


def test_notice_is_in_the_school_style() -> None:
    """The login page's answers carry the school's name, escaped, in the filter's page style."""
    page = notice("Sign in", "Sign in with <b>your</b> name.", school="St Aidan's")
    assert '<p class="school" id="school">St Aidan&#x27;s</p>' in page
    assert "&lt;b&gt;your&lt;/b&gt;" in page
    assert "border-top" in page  # the same card as the block page
