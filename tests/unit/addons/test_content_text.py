"""The words of a held page, by charset: UTF-8 goes to the parser as bytes, the rest decoded."""

from __future__ import annotations

import pytest
from mitmproxy import http

from addons.content import held_page_text
from proxy.content.phrases import MARK


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
    assert held_page_text(response, mime, 1 << 20).replace(MARK, " ").strip() == words


def test_a_compressed_page_is_read_decoded() -> None:
    response = http.Response.make(200, b"", {"content-type": "text/html; charset=utf-8"})
    response.content = "<p>gzip café</p>".encode()
    response.encode("gzip")
    assert response.raw_content != response.content
    assert held_page_text(response, "text/html", 1 << 20).replace(MARK, " ").strip() == "gzip café"
