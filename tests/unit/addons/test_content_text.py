"""The words of a held page, by charset: UTF-8 goes to the parser as bytes, the rest decoded."""

from __future__ import annotations

import pytest
from mitmproxy import http

from addons.content import held_page_texts
from proxy.content import charset
from proxy.content.phrases import MARK


@pytest.mark.parametrize(
    ("content_type", "body", "readings"),
    [
        # Declared UTF-8: the bytes as they came; a byte that is not UTF-8 is U+FFFD.
        ("text/html; charset=utf-8", "<p>café \u2014 naïve</p>".encode(), ["café — naïve"]),
        ("text/html; charset=UTF-8", b"<p>caf\xc3\xa9 \xff bad</p>", ["café \ufffd bad"]),
        # Undeclared: HTML reads as UTF-8, and in each charset the page's first bytes name.
        ("text/html", "<p>Zürich</p>".encode(), ["Zürich"]),
        ("text/html", b"<meta charset=windows-1252><p>caf\xe9</p>", ["caf\ufffd", "café"]),
        # Declared in another charset: decoded from it (ISO-8859-1 is windows-1252 on the web).
        ("text/html; charset=iso-8859-1", b"<p>caf\xe9 cr\xe8me \x8aex</p>", ["café crème Šex"]),
        ("text/plain; charset=utf-8", "plain café".encode(), ["plain café"]),
        # Labels no browser reads a page in: the page is read as a browser reads it.
        ("text/html; charset=cp037", b"<p>free porn</p>", ["free porn"]),
        ("text/html", b'<meta charset="cp037"><p>free porn</p>', ["free porn"]),
        ("text/html", b'<meta charset="utf-7"><p>free +porn</p>', ["free +porn"]),
        ("text/html", b'<meta charset="utf-16"><p>free porn</p>', ["free porn"]),
        ("text/html", b"<p>free porn</p>" + b" " * 1024 + b'<meta charset="cp1251">',
         ["free porn"]),
        # UTF-16 without its mark, declared UTF-8: a NUL between every two characters, which a
        # browser drops from a page's text, showing "<p>free porn</p>" (its tags as text).
        ("text/html; charset=utf-8", "<p>free porn</p>".encode("utf-16-le"),
         ["<p>free porn</p>"]),
        # A byte order mark beats the header.
        ("text/html; charset=utf-8", b"\xff\xfe" + "<p>free porn</p>".encode("utf-16-le"),
         ["free porn"]),
    ],
)  # fmt: skip
def test_the_page_is_read_in_the_charsets_a_browser_reads_it_in(
    content_type: str, body: bytes, readings: list[str]
) -> None:
    response = http.Response.make(200, body, {"content-type": content_type})
    mime = content_type.split(";", 1)[0]
    found = [text.replace(MARK, " ").strip() for text in held_page_texts(response, mime, 1 << 20)]
    assert found == readings


def test_a_page_that_names_charsets_without_end_is_refused() -> None:
    """Each charset named is one more parse of the page: past a few, it is not read."""
    names = b"".join(
        b'<meta charset="%s">' % name for name in (b"koi8-r", b"cp1251", b"gbk", b"big5", b"euc-jp")
    )
    response = http.Response.make(200, names + b"<p>x</p>", {"content-type": "text/html"})
    with pytest.raises(charset.TooManyCharsets):
        held_page_texts(response, "text/html", 1 << 20)


def test_a_compressed_page_is_read_decoded() -> None:
    response = http.Response.make(200, b"", {"content-type": "text/html; charset=utf-8"})
    response.content = "<p>gzip café</p>".encode()
    response.encode("gzip")
    assert response.raw_content != response.content
    texts = held_page_texts(response, "text/html", 1 << 20)
    assert [text.replace(MARK, " ").strip() for text in texts] == ["gzip café"]
