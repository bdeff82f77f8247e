"""The words of a held page, by charset: UTF-8 goes to the parser as bytes, the rest decoded."""

from __future__ import annotations

import pytest
from mitmproxy import http

from addons.content import held_page_text, utf8_body


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        # Declared UTF-8: the bytes as they came; a byte that is not UTF-8 is U+FFFD.
        ("text/html; charset=utf-8", "<p>café \u2014 naïve</p>".encode(), "café — naïve"),
        ("text/html; charset=UTF-8", b"<p>caf\xc3\xa9 \xff bad</p>", "café \ufffd bad"),
        # Undeclared: HTML reads as UTF-8 unless the page says otherwise in a meta tag.
        ("text/html", "<p>Zürich</p>".encode(), "Zürich"),
        ("text/html", b"<meta charset=windows-1252><p>caf\xe9</p>", "café"),
        # Declared in another charset: decoded from it, not read as UTF-8.
        ("text/html; charset=iso-8859-1", b"<p>caf\xe9 cr\xe8me</p>", "café crème"),
        ("text/plain; charset=utf-8", "plain café".encode(), "plain café"),
    ],
)
def test_the_page_is_read_in_its_charset(content_type: str, body: bytes, words: str) -> None:
    response = http.Response.make(200, body, {"content-type": content_type})
    mime = content_type.split(";", 1)[0]
    assert held_page_text(response, mime, utf8_body(response)).strip() == words


def test_a_compressed_page_is_read_decoded() -> None:
    response = http.Response.make(200, b"", {"content-type": "text/html; charset=utf-8"})
    response.content = "<p>gzip café</p>".encode()
    response.encode("gzip")
    assert response.raw_content != response.content
    utf8 = utf8_body(response)
    assert utf8 == "<p>gzip café</p>".encode()
    assert held_page_text(response, "text/html", utf8).strip() == "gzip café"


@pytest.mark.parametrize(
    ("content_type", "body", "utf8"),
    [
        ("text/html; charset=utf-8", b"<p>caf\xc3\xa9</p>", True),
        ("text/html", b"<p>caf\xc3\xa9</p>", True),
        ("text/html", b"<meta charset=windows-1252><p>caf\xe9</p>", False),
        ("text/html; charset=iso-8859-1", b"<p>caf\xe9</p>", False),
    ],
)
def test_only_a_utf8_body_is_given_for_the_ceiling(
    content_type: str, body: bytes, utf8: bool
) -> None:
    """The ceiling reads bytes as UTF-8: a page in another charset gets none, and is analysed
    in full (its letters would be other bytes)."""
    response = http.Response.make(200, body, {"content-type": content_type})
    assert (utf8_body(response) == body) if utf8 else utf8_body(response) is None
