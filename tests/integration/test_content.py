"""Content analysis through the real proxy: pages no list knows, scored on what they say.

A local origin serves pages that are on no list: one that reads like adult
content (plain, gzip and brotli-encoded, over HTTP and intercepted HTTPS), a
sex education page and a breast cancer page (which must pass), and the five
real school e-safety policies (which discuss pornography, extremism and
self-harm educationally, and must never cross a threshold). Pupils have
`content: {analyse: [pages], threshold: 100}`; staff have no analysis; the
headteacher's group only logs.
"""

from __future__ import annotations

import base64
import gzip
import html
import http.client
import http.server
import json
import re
import shutil
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest

from proxy.content.learned import LEARNED_FILE, LearnedList, learned_now
from tests.console_accounts import ensure_account, proof
from tests.integration.harness import (
    HEAD,
    PUPIL,
    ROOT,
    STAFF,
    TEST_POLICY,
    Gateway,
    OriginCA,
    schoolgate_command,
    serve_origin,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.shared import shared

ADULT = (
    "<html><head><title>Hot videos</title><script>var porn = 'not read'</script></head><body>"
    "<h1>Free porn videos</h1><p>The best free porn, live sex cams and hardcore porn. "
    "New porn videos every day: nude girls, milf and more.</p></body></html>"
)
SEX_EDUCATION = (
    "<html><head><title>Relationships and sex education</title></head><body>"
    "<h1>Relationships and sex education (RSE) at Key Stage 3</h1>"
    "<p>Sex education helps pupils understand puberty, consent, contraception and sexual "
    "health. Pupils learn how pornography presents an unrealistic picture of sex, and "
    "where to get support. Parents may ask about the sex education curriculum.</p></body></html>"
)
ADULT_WORDS = (
    "Free porn videos. The best free porn, live sex cams and hardcore porn. New porn videos "
    "every day: nude girls, milf and more."
)
BREAST_CANCER = (
    "<html><body><h1>Breast cancer</h1><p>Breast cancer is the most common cancer in the UK. "
    "Check your breasts and nipples regularly; breast cancer screening is offered from 50. "
    "Signs include a lump, a change in the nipple or the skin of the breast.</p></body></html>"
)

BENIGN_PARAGRAPH = "<p>The river flows past the old mill and the village school. </p>"


def _in_words(page: str, insert: str, at: int = 1) -> str:
    """``page`` with ``insert`` at ``at`` in each word of three letters or more of its text
    (not in its tags or its script)."""
    parts = re.split(r"(<script.*?</script>|<[^>]*>)", page)
    return "".join(
        part if part.startswith("<")
        else re.sub(r"[A-Za-z]{3,}", lambda word: word[0][:at] + insert + word[0][at:], part)
        for part in parts
    )  # fmt: skip


# The adult page in disguises a browser reads straight through, as the parser does: what a
# pupil sees is the adult page, whatever its bytes look like. Its words split by markup the
# parser drops ("p</x>orn", another "<html>"), by text in a table outside its cells (which the
# parser moves before the table, onto the text there), or with references in them that the
# parser reads as part of the word: a legacy one without its ";" ("&ampporn" is "&porn"), a
# numeric one without it ("&#38porn"), and ones that fold to nothing (a zero-width space, a
# combining accent). The shortcut this project had for a day, which read words from the
# bytes, gave each of these pages a most-it-could-score below the threshold and let it through.
ADULT_MARKUP = {
    "/adult-end-tags": _in_words(ADULT, "</x>"),
    "/adult-html-tags": _in_words(ADULT, "<html lang=en>"),
    "/adult-table": "<table>" + _in_words(ADULT, "<tr><td>.</td></tr>") + "</table>",
    "/adult-legacy-refs": _in_words(ADULT, "&amp", at=0),
    "/adult-numeric-refs": _in_words(ADULT, "&#38", at=0),
    "/adult-zero-width-refs": _in_words(ADULT, "&#8203;"),
    "/adult-accent-refs": _in_words(ADULT, "&#x301;"),
    # And markup a browser shows nothing for: an empty element, a comment, an element of a
    # name no one knows, each inside a word ("p<i></i>orn" reads "porn").
    "/adult-empty-elements": _in_words(ADULT, "<i></i>"),
    "/adult-comments": _in_words(ADULT, "<!-- -->"),
    "/adult-unknown-elements": _in_words(ADULT, "<x-a></x-a>"),
    # Each word a block of its own (a reader sees the words one under another) and each split
    # by an empty element: a space where the blocks meet, nothing inside the words. Read with
    # a space at every such place, or with nothing at every one, the page says nothing.
    "/adult-blocks-and-splits": "<html><body>"
    + "".join(f"<div>{word[:1]}<i></i>{word[1:]}</div>" for word in ADULT_WORDS.split())
    + "</body></html>",
    # A <noscript> the parser read as markup, as a browser without scripts would: a textarea or
    # a style in it swallowed the rest of the page, which a browser with scripts shows. And the
    # adult text inside a <noscript>, which a pupil sees by turning scripts off.
    "/adult-after-noscript-style": "<body><noscript><style></noscript>" + ADULT,
    "/adult-after-noscript-textarea": "<body><noscript><textarea></noscript>" + ADULT,
    "/adult-in-noscript": f"<html><body><noscript><p>{_in_words(ADULT_WORDS, '<b></b>')}</p>"
    "</noscript><p>Please turn on JavaScript.</p></body></html>",
    # Words a browser shows that are not text in the tree: a declarative shadow root (its
    # content is a template's, which is otherwise never shown), and the placeholders and
    # values of text boxes.
    "/adult-shadow-root": "<html><body><div><template shadowrootmode='open'>"
    f"<p>{ADULT_WORDS}</p></template></div></body></html>",
    "/adult-in-text-boxes": "<html><body>"
    + "".join(f"<input placeholder='{part}'>" for part in ADULT_WORDS.split(". "))
    + f"<input type='search' value='{ADULT_WORDS}'></body></html>",
    # Letters a browser does not show inside the words: hidden by an attribute or an inline
    # style, a space in zero-size type, a ruby annotation (shown above the word, not in it).
    "/adult-hidden-letters": _in_words(ADULT, "<span hidden>x</span>"),
    "/adult-display-none": _in_words(ADULT, "<span style='display: none'>qq</span>"),
    "/adult-zero-size-spaces": _in_words(ADULT, "<span style='font-size:0'> </span>"),
    "/adult-escaped-style": _in_words(ADULT, "<span style='display: n\\6f ne'>qq</span>"),
    "/adult-ruby": "<html><body><p>"
    + " ".join(f"<ruby>{word[:1]}<rt>x</rt>{word[1:]}</ruby>" for word in ADULT_WORDS.split())
    + "</p></body></html>",
    # Written backwards and shown forwards: a bdo element, a style that overrides the
    # direction, a right-to-left override character.
    "/adult-bdo": f"<html><body><bdo dir='rtl'>{ADULT_WORDS[::-1]}</bdo></body></html>",
    "/adult-bidi-style": "<html><body><p style='direction: rtl; unicode-bidi: bidi-override'>"
    f"{ADULT_WORDS[::-1]}</p></body></html>",
    "/adult-rlo": f"<html><body><p>\u202e{ADULT_WORDS[::-1]}</p></body></html>",
    # Text the page shows from elsewhere in its own bytes: drawn in an svg, a document in an
    # iframe's srcdoc, or in a data: URL (the browser makes no request the proxy could see).
    "/adult-svg": f"<html><body><svg><text x='0' y='20'>{ADULT_WORDS}</text></svg></body></html>",
    "/adult-srcdoc": f"<html><body><iframe srcdoc='{html.escape(ADULT)}'></iframe></body></html>",
    # A picture that draws the words: an SVG in a data: URL.
    "/adult-svg-picture": "<html><body><img alt='' src='data:image/svg+xml;base64,"
    + base64.b64encode(
        f"<svg xmlns='http://www.w3.org/2000/svg'><text y='20'>{ADULT_WORDS}</text></svg>".encode()
    ).decode()
    + "'></body></html>",
    "/adult-data-frame": "<html><body><iframe src='data:text/html;base64,"
    + base64.b64encode(ADULT.encode()).decode()
    + "'></iframe></body></html>",
}


# About 260 KB: over the 64 KB hold bound the AI gateway is given, so it is scored as it streams.
LONG_PAGE = (BENIGN_PARAGRAPH * 2000 + "<p>" + ADULT + "</p>" + BENIGN_PARAGRAPH * 2000
             + "<p>END-OF-PAGE</p>")  # fmt: skip
# The same with the adult part in markup and references a browser reads straight through, and
# in the disguises only a parser sees through (which streamed pages were read without).
LONG_DISGUISES = {
    "/long-disguised": LONG_PAGE.replace(
        ADULT, _in_words(_in_words(ADULT, "<b></b>"), "&#8203;", at=2)
    ),
    "/long-hidden-letters": LONG_PAGE.replace(ADULT, _in_words(ADULT, "<span hidden>x</span>")),
    "/long-bdo": LONG_PAGE.replace(ADULT, f"<bdo dir='rtl'>{ADULT_WORDS[::-1]}</bdo>"),
    "/long-text-boxes": LONG_PAGE.replace(
        ADULT, "".join(f"<input placeholder='{part}'>" for part in ADULT_WORDS.split(". "))
    ),
}


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"a" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()


PAGES: dict[str, tuple[str, bytes, str | None]] = {
    "/long": ("text/html; charset=utf-8", LONG_PAGE.encode(), None),
    # The same sent chunked: its length is known only once it is past the hold bound.
    "/long-chunked": ("text/html; charset=utf-8", LONG_PAGE.encode(), None),
    **{
        path: ("text/html; charset=utf-8", page.encode(), None)
        for path, page in LONG_DISGUISES.items()
    },
    # A label no browser knows, which Python reads as EBCDIC.
    "/long-header-ebcdic": ("text/html; charset=cp037", LONG_PAGE.encode(), None),
    "/adult": ("text/html; charset=utf-8", ADULT.encode(), None),
    "/adult-gzip": ("text/html; charset=utf-8", gzip.compress(ADULT.encode()), "gzip"),
    "/adult-br": ("text/html; charset=utf-8", brotli.compress(ADULT.encode()), "br"),
    "/adult-latin1": ("text/html; charset=iso-8859-1", ADULT.encode("latin-1"), None),
    # Over the streaming threshold (1 MiB), under the hold bound (2 MiB), sent chunked.
    "/adult-chunked": (
        "text/html; charset=utf-8",
        ADULT.encode() + b"<p>" + b"a walk in the park " * 80_000 + b"</p>",
        None,
    ),
    # The same with its length known.
    "/adult-big": (
        "text/html; charset=utf-8",
        ADULT.encode() + b"<p>" + b"a walk in the park " * 80_000 + b"</p>",
        None,
    ),
    "/sex-education": ("text/html; charset=utf-8", SEX_EDUCATION.encode(), None),
    "/breast-cancer": ("text/html; charset=utf-8", BREAST_CANCER.encode(), None),
    "/adult-image": ("image/png", b"\x89PNG\r\n\x1a\n" + ADULT.encode(), None),
    # 512 MiB of one byte, gzipped to half a megabyte: a page that is nothing but a bomb.
    "/bomb": ("text/html; charset=utf-8", _gzip_bomb(512 << 20), "gzip"),
    # An encoding no browser asked for: its bytes are not the page.
    # Documents a browser shows as pages too: an SVG drawn with text, an XML document.
    "/adult-svg-document": (
        "image/svg+xml",
        f"<svg xmlns='http://www.w3.org/2000/svg'><text y='20'>{ADULT_WORDS}</text></svg>".encode(),
        None,
    ),
    "/adult-xml": ("text/xml", f"<?xml version='1.0'?><page>{ADULT_WORDS}</page>".encode(), None),
    # No type at all, which a browser sniffs as HTML; a text type a browser shows as text.
    "/adult-no-type": ("", ADULT.encode(), None),
    "/adult-markdown": ("text/markdown; charset=utf-8", ADULT_WORDS.encode(), None),
    # A page pushed part after part (Firefox shows each), and a feed (shown as its text).
    "/adult-pushed": (
        "multipart/x-mixed-replace; boundary=part",
        b"--part\r\nContent-Type: text/html\r\n\r\n" + ADULT.encode() + b"\r\n--part--\r\n",
        None,
    ),
    "/adult-feed": (
        "application/rss+xml",
        f"<rss><channel><item><title>{ADULT_WORDS}</title></item></channel></rss>".encode(),
        None,
    ),
    # Binary data with no type: a browser saves it, so it passes whole, read or not.
    "/binary-no-type": ("", b"\x00\x01\x02PK" + ADULT.encode() * 2, None),
    "/long-binary-no-type": ("", b"\x00\x01\x02PK" + LONG_PAGE.encode(), None),
    # UTF-16 with its byte order mark, which a browser follows whatever the header says.
    "/adult-utf16": ("text/html; charset=utf-8", ADULT.encode("utf-16"), None),
    # Charsets a browser does not read the page in: a label it does not know (in the header or
    # a meta), a meta naming UTF-16 (a browser reads UTF-8 then), a meta past the first 1024
    # bytes (a browser stops looking there). Each decoded as named, the page was gibberish.
    "/adult-meta-ebcdic": ("text/html", b'<meta charset="cp037">' + ADULT.encode(), None),
    "/adult-meta-utf16": ("text/html", b'<meta charset="utf-16">' + ADULT.encode(), None),
    "/adult-header-ebcdic": ("text/html; charset=cp037", ADULT.encode(), None),
    "/adult-late-meta": (
        "text/html",
        ADULT.encode().replace(b"</body>", b" " * 2000 + b'<meta charset="utf-16"></body>'),
        None,
    ),
    "/adult-unknown-encoding": ("text/html; charset=utf-8", ADULT.encode()[::-1], "x-reversed"),
    "/long-unknown-encoding": ("text/html; charset=utf-8", LONG_PAGE.encode()[::-1], "x-reversed"),
    "/learned-1": ("text/html; charset=utf-8", ADULT.encode(), None),
    "/learned-2": ("text/html; charset=utf-8", ADULT.encode(), None),
    "/rejected": ("text/html; charset=utf-8", ADULT.encode(), None),
    **{
        path: ("text/html; charset=utf-8", page.encode(), None)
        for path, page in ADULT_MARKUP.items()
    },
}

# The same URL and the same bytes, read another way the second time (another content coding,
# another charset): a score kept by URL and bytes alone would pass the second on the first's.
SWAPS = {
    "/same-bytes-gzip": (
        (("text/html; charset=utf-8", None), ("text/html; charset=utf-8", "gzip")),
        gzip.compress(ADULT.encode()),
    ),
    "/same-bytes-utf8": (
        (("text/html; charset=utf-16", None), ("text/html; charset=utf-8", None)),
        ADULT.encode(),
    ),
}

POLICY = TEST_POLICY.replace(
    """  pupil:
    default: acceptable
""",
    """  pupil:
    default: acceptable
    content: {analyse: [pages], threshold: 100}
""",
).replace(
    """  head:
    inherits: staff
""",
    """  head:
    inherits: staff
    content: {analyse: [pages], threshold: 100, action: log}
""",
)


@dataclass
class Pages:
    http_port: int
    https_port: int
    seen: list[str]

    def url(self, path: str, scheme: str = "http") -> str:
        port = self.http_port if scheme == "http" else self.https_port
        return f"{scheme}://localhost:{port}{path}"


POLICIES = sorted((ROOT.parent / "shared" / "school-policies").glob("*.txt"))


@pytest.fixture(scope="module")
def pages(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pages]:
    """An origin serving PAGES, and the school policies as text under /policy/N."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path.startswith("/policy/"):
                kind = "text/plain; charset=utf-8"
                body, encoding = POLICIES[int(self.path.rsplit("/", 1)[1])].read_bytes(), None
            elif self.path == "/swap":  # the same URL: a benign page first, then the adult one
                page = BREAST_CANCER if seen.count("/swap") == 1 else ADULT
                kind, body, encoding = "text/html; charset=utf-8", page.encode(), None
            elif self.path in SWAPS:
                heads, body = SWAPS[self.path]
                kind, encoding = heads[min(seen.count(self.path), 2) - 1]
            else:
                kind, body, encoding = PAGES[self.path]
            self.send_response(200)
            if kind:  # none at all: the browser sniffs it
                self.send_header("Content-Type", kind)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            if self.path.endswith("-chunked"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 65536):
                    piece = body[i : i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    cert, key = origin_ca.issue(tmp_path_factory.mktemp("pages"), "localhost")
    with serve_origin(Handler, cert, key) as (http_port, https_port):
        yield Pages(http_port, https_port, seen)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    """The real proxy with content analysis for pupils (block) and the head (log only)."""
    tmp = tmp_path_factory.mktemp("content")
    write_config(tmp / "config", tmp / "var", 1, POLICY)  # run --listen sets the real port
    shutil.copy(ROOT / "config" / "content-phrases.yaml", tmp / "config")
    gateway = start_gateway(tmp, origin_ca)
    yield gateway
    stop_gateway(gateway)


def last_log_line(gw: Gateway, path: str, group: str = "pupil") -> dict[str, Any]:
    """The access log's last line for ``path`` requested by ``group`` (written off-thread)."""
    return gw.access_line(lambda line: line.get("path") == path and line.get("group") == group)


def logged_blocked(gw: Gateway, path: str) -> None:
    """Wait for the log's line saying a pupil's request for ``path`` was blocked by content
    analysis (when ``path`` was requested before, its earlier line may be the last one
    written yet)."""
    gw.access_line(
        lambda line: (
            line.get("path") == path
            and line.get("group") == "pupil"
            and line.get("content", {}).get("outcome") == "blocked"
        )
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("path", ["/adult", "/adult-gzip", "/adult-br", "/adult-latin1"])
def test_an_unlisted_adult_page_is_blocked_for_pupils(
    gw: Gateway, pages: Pages, path: str, scheme: str
) -> None:
    """A page on no list that reads like adult content gets the block page, in plain words."""
    status, body = gw.get(pages.url(path, scheme), client=PUPIL)
    assert status == 403
    assert "looked like adult content" in body
    assert "porn" not in body.lower()  # the block page never repeats the phrases
    line = last_log_line(gw, path)
    assert line["decision"] == "block"
    content = line["content"]
    assert isinstance(content, dict)
    # The first request for a page is scored; later ones (the same path over the other scheme)
    # are answered from the learned list.
    assert content["outcome"] in {"blocked", "blocked: learned list entry"}
    assert content["scores"]["adult"] >= 100
    assert "free porn" in content["phrases"]


def test_a_chunked_page_over_the_streaming_threshold_is_still_held_and_scored(
    gw: Gateway, pages: Pages
) -> None:
    """A 1.5 MiB page, chunked or with its length, is held up to the hold bound (not streamed
    at the 1 MiB streaming threshold, addons/limits.py), scored and blocked."""
    for path in ("/adult-chunked", "/adult-big"):
        status, body = gw.get(pages.url(path), client=PUPIL)
        assert status == 403
        assert "looked like adult content" in body
        assert last_log_line(gw, path)["content"]["outcome"] == "blocked"


def test_staff_get_the_same_page(gw: Gateway, pages: Pages) -> None:
    """Staff have no content analysis: the page passes as the origin sent it."""
    status, body = gw.get(pages.url("/adult"), client=STAFF)
    assert status == 200
    assert "Free porn videos" in body


def test_log_only_records_without_blocking(gw: Gateway, pages: Pages) -> None:
    """With action: log the head gets the page, and the log says it would have crossed."""
    status, _ = gw.get(pages.url("/adult-gzip"), client=HEAD)
    assert status == 200
    content = last_log_line(gw, "/adult-gzip", "head")["content"]
    assert isinstance(content, dict)
    assert content["outcome"] == "logged"
    assert content["category"] == "adult"


@pytest.mark.parametrize("path", ["/sex-education", "/breast-cancer"])
def test_benign_pages_about_the_body_pass(gw: Gateway, pages: Pages, path: str) -> None:
    """Sex education and breast cancer pages are not adult content."""
    status, body = gw.get(pages.url(path, "https"), client=PUPIL)
    assert status == 200, body
    content = last_log_line(gw, path)["content"]
    assert isinstance(content, dict)
    assert content["outcome"] == "passed"


@pytest.mark.parametrize("path", sorted(ADULT_MARKUP))
def test_an_adult_page_split_or_joined_by_markup_is_blocked(
    gw: Gateway, pages: Pages, path: str
) -> None:
    """Words split by markup the parser drops, by table text it moves, or joined by references:
    the analysis reads the text as the browser shows it, so the page is blocked."""
    status, body = gw.get(pages.url(path), client=PUPIL)
    assert status == 403, body
    assert "looked like adult content" in body
    content = last_log_line(gw, path)["content"]
    assert content["outcome"] == "blocked"
    assert content["scores"]["adult"] >= 100


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024  # type: ignore[index]


def test_a_compression_bomb_is_refused_without_being_decoded(gw: Gateway, pages: Pages) -> None:
    """Half a megabyte of gzip that decodes to 512 MiB: decoding stops at the bound (32 MiB)
    and the page is refused, "could not be checked"; the proxy's peak memory barely moves."""
    before = _peak_rss_mib(gw.process.pid)
    status, body = gw.get(pages.url("/bomb"), client=PUPIL)
    assert status == 403
    assert "could not be checked" in body
    assert last_log_line(gw, "/bomb")["content"]["outcome"].startswith("blocked: the body decodes")
    assert _peak_rss_mib(gw.process.pid) - before < 64


def test_a_page_in_an_unknown_encoding_is_refused(gw: Gateway, pages: Pages) -> None:
    """Scoring the still-encoded bytes would pass whatever they hold."""
    status, body = gw.get(pages.url("/adult-unknown-encoding"), client=PUPIL)
    assert status == 403
    assert "could not be checked" in body
    assert "cannot be read" in last_log_line(gw, "/adult-unknown-encoding")["content"]["outcome"]


@pytest.mark.parametrize(
    "path",
    [
        "/adult-svg-document",
        "/adult-xml",
        "/adult-utf16",
        "/adult-no-type",
        "/adult-markdown",
        "/adult-pushed",
        "/adult-feed",
    ],
)
def test_other_documents_a_browser_shows_as_pages_are_read(
    gw: Gateway, pages: Pages, path: str
) -> None:
    """An SVG or XML document opened on its own shows its text; a UTF-16 page with its byte
    order mark is read as UTF-16 by a browser whatever its header says; a page with no type
    is sniffed as HTML, and one of another text type shown as text."""
    status, body = gw.get(pages.url(path), client=PUPIL)
    assert status == 403, body
    assert last_log_line(gw, path)["content"]["outcome"] == "blocked"


@pytest.mark.parametrize(
    "path", ["/adult-meta-ebcdic", "/adult-meta-utf16", "/adult-header-ebcdic", "/adult-late-meta"]
)
def test_a_page_is_read_in_the_charset_a_browser_reads_it_in(
    gw: Gateway, pages: Pages, path: str
) -> None:
    """Labels a browser does not know, or does not follow, do not make the page gibberish to
    the proxy while the browser shows it."""
    status, body = gw.get(pages.url(path), client=PUPIL)
    assert status == 403, body
    logged_blocked(gw, path)


def test_a_page_that_changes_is_analysed_again(gw: Gateway, pages: Pages) -> None:
    """Scores are kept by URL and body: a URL that served a benign page and then serves an
    adult one is not passed on the benign page's score."""
    status, _ = gw.get(pages.url("/swap"), client=PUPIL)
    assert status == 200
    status, body = gw.get(pages.url("/swap"), client=PUPIL)
    assert status == 403, body
    logged_blocked(gw, "/swap")


@pytest.mark.parametrize("path", sorted(SWAPS))
def test_the_same_bytes_read_another_way_are_analysed_again(
    gw: Gateway, pages: Pages, path: str
) -> None:
    """The same URL serves the same bytes twice: first as they are (gzip's bytes, or UTF-8
    read as UTF-16: nothing a reader can read, so it passes), then as a gzipped or UTF-8
    page, which a browser shows as the adult page. The second is analysed, not passed on
    the first one's score."""
    status, _ = gw.get(pages.url(path), client=PUPIL)
    assert status == 200
    status, body = gw.get(pages.url(path), client=PUPIL)
    assert status == 403, body
    logged_blocked(gw, path)


def test_images_are_not_scored_as_text(gw: Gateway, pages: Pages) -> None:
    """Only text responses are analysed: an image whose bytes hold words passes."""
    status, _ = gw.get(pages.url("/adult-image"), client=PUPIL)
    assert status == 200


@pytest.mark.shared_data
@pytest.mark.parametrize("index", range(5))
def test_the_school_policies_never_cross_a_threshold(gw: Gateway, pages: Pages, index: int) -> None:
    """The five real e-safety policies, which discuss pornography and self-harm, pass."""
    shared("school-policies")
    status, _ = gw.get(pages.url(f"/policy/{index}"), client=PUPIL)
    assert status == 200


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Gateway]:
    """The same proxy with two worker processes sharing the port."""
    tmp = tmp_path_factory.mktemp("content-pool")
    write_config(tmp / "config", tmp / "var", 1, POLICY)
    shutil.copy(ROOT / "config" / "content-phrases.yaml", tmp / "config")
    gateway = start_gateway(tmp, origin_ca, "--workers", "2")
    yield gateway
    stop_gateway(gateway)


def get_on_new_connections(pool: Gateway, url: str, count: int) -> list[int]:
    """``count`` GETs, each on a new connection (SO_REUSEPORT spreads them over the workers)."""
    return [pool.get(url, client=PUPIL)[0] for _ in range(count)]


def test_a_learned_entry_blocks_in_every_worker_without_analysis(
    pool: Gateway, pages: Pages
) -> None:
    """An entry another worker appended blocks at once in both workers; the origin sees nothing."""
    LearnedList(pool.data_dir / LEARNED_FILE).add(
        learned_now("localhost/learned-1", "adult", 150, ("free porn",))
    )
    time.sleep(3)  # the workers read the list every half second (a loaded machine is slow)
    assert get_on_new_connections(pool, pages.url("/learned-1"), 10) == [403] * 10
    assert "/learned-1" not in pages.seen


def test_a_page_over_the_threshold_is_learned_for_the_next_request(
    pool: Gateway, pages: Pages
) -> None:
    """The first request is scored and blocked; the rest never reach the origin."""
    assert pool.get(pages.url("/learned-2"), client=PUPIL)[0] == 403
    learned = LearnedList(pool.data_dir / LEARNED_FILE)
    learned.refresh()
    found = learned.get("localhost/learned-2")
    assert found is not None
    assert (found.category, found.state) == ("adult", "learned")
    assert "free porn" in found.phrases
    time.sleep(3)
    assert get_on_new_connections(pool, pages.url("/learned-2"), 10) == [403] * 10
    assert pages.seen.count("/learned-2") == 1


def test_a_rejected_page_opens_and_the_decision_is_in_change_control(
    pool: Gateway, pages: Pages
) -> None:
    """`content reject` opens the page for every worker and records who and why."""
    assert pool.get(pages.url("/rejected"), client=PUPIL)[0] == 403
    config = ["--config", str(pool.config_dir)]
    ensure_account(pool.config_dir, "it.tech", "technician")
    result = subprocess.run(
        [*schoolgate_command(), "content", "reject", "localhost/rejected", "--by", "it.tech",
         "--reason", "a museum page", *config],
        check=False, capture_output=True, text=True, timeout=60,
        input=proof(pool.config_dir, "it.tech"),  # it.tech's console password and code
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    time.sleep(3)
    assert get_on_new_connections(pool, pages.url("/rejected"), 4) == [200] * 4
    changes = subprocess.run(
        [*schoolgate_command(), "changes", "list", *config],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "localhost/rejected" in changes.stdout
    assert "it.tech" in changes.stdout


# ---- streams: a long page and a chatbot's answer --------------------------------------------

PREAMBLE = "Sure, I can help with that. "
ANSWER_BAD = (PREAMBLE + "Here are some free porn videos and hardcore porn, live sex cams, "
              "free porn and more porn videos. END-OF-ANSWER")  # fmt: skip
ANSWER_GOOD = "Photosynthesis turns light, water and carbon dioxide into sugar. END-OF-ANSWER"
# The same answer written backwards after a right-to-left override, which shows it forwards (a
# pupil can ask an assistant to answer so).
_BAD_WORDS = ANSWER_BAD[len(PREAMBLE) : -len(" END-OF-ANSWER")]
ANSWER_BACKWARDS = PREAMBLE + "\u202e" + _BAD_WORDS[::-1] + "\u202c END-OF-ANSWER"


@dataclass
class Chatbot:
    http_port: int
    https_port: int
    prompts: list[str]


@pytest.fixture(scope="module")
def chatbot(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chatbot]:
    """Plays chatgpt.com: answers a prompt as server-sent events, a few characters at a time."""
    prompts: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]["parts"][0]
            prompts.append(prompt)
            answer = ANSWER_BAD if "videos" in prompt else ANSWER_GOOD
            if "backwards" in prompt:
                answer = ANSWER_BACKWARDS
            if body.get("stream") is False:  # the whole answer in one JSON document
                whole = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(whole)))
                self.end_headers()
                self.wfile.write(whole)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for i in range(0, len(answer), 6):
                    event = {"choices": [{"delta": {"content": answer[i : i + 6]}}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    # A pause after the first words, so they reach the pupil on their own.
                    time.sleep(0.5 if i < len(PREAMBLE) <= i + 6 else 0.01)
                self.wfile.write(b"data: [DONE]\n\n")
            except OSError:
                pass  # the proxy cut the answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    cert, key = origin_ca.issue(tmp_path_factory.mktemp("chatbot"), "localhost", "chatgpt.com")
    with serve_origin(Handler, cert, key) as (http_port, https_port):
        yield Chatbot(http_port, https_port, prompts)


@pytest.fixture(scope="module")
def ai_gw(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, chatbot: Chatbot
) -> Iterator[Gateway]:
    """The proxy with chatgpt.com sent to the local chatbot; pupils' answers are analysed."""
    tmp = tmp_path_factory.mktemp("content-ai")
    policy = POLICY.replace(
        "content: {analyse: [pages], threshold: 100}",
        "content: {analyse: [pages, ai_answers], threshold: 100}",
    )
    write_config(tmp / "config", tmp / "var", 1, policy)
    shutil.copy(ROOT / "config" / "content-phrases.yaml", tmp / "config")
    shutil.copy(ROOT / "config" / "concerning-terms.yaml", tmp / "config")
    hostmap = {"hosts": ["chatgpt.com"], "ports": {"443": chatbot.https_port}}
    gateway = start_gateway(
        tmp,
        origin_ca,
        "--set",
        "schoolgate_content_hold_kb=64",
        env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
        command=[sys.executable, "-m", "tests.integration.hostmap"],
    )
    yield gateway
    stop_gateway(gateway)


def ask(gw: Gateway, prompt: str, client: str = PUPIL, stream: bool = True) -> tuple[int, str]:
    """POST a prompt to chatgpt.com through the proxy, as its web app does; the whole answer."""
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=20, context=context, source_address=(client, 0)
    )
    conn.set_tunnel("chatgpt.com", 443)
    message = {"author": {"role": "user"}, "content": {"content_type": "text", "parts": [prompt]}}
    body: dict[str, Any] = {"action": "next", "messages": [message]}
    if not stream:
        body["stream"] = False
    try:
        conn.request("POST", "/backend-api/conversation", json.dumps(body),
                     {"Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        try:
            return response.status, response.read().decode()
        except http.client.IncompleteRead as exc:
            return response.status, exc.partial.decode()
    finally:
        conn.close()


def said(events: str) -> str:
    """The text a chat app shows for a stream of events: the deltas, joined."""
    text = ""
    for line in events.splitlines():
        if line.startswith("data: {"):
            text += json.loads(line[6:])["choices"][0]["delta"]["content"]
    return text


@pytest.mark.parametrize("prompt", ["show me videos", "answer backwards"])
def test_a_chatbot_answer_is_cut_when_it_crosses(
    ai_gw: Gateway, chatbot: Chatbot, prompt: str
) -> None:
    """The answer streams until it reads like adult content, then the pupil sees a notice;
    written backwards after a right-to-left override too, as it is shown forwards."""
    status, events = ask(ai_gw, prompt)
    assert status == 200
    answer = said(events)
    assert answer.startswith(PREAMBLE)  # it streamed until it crossed
    assert "Schoolgate stopped this because its content looked like adult content" in answer
    assert "END-OF-ANSWER" not in answer
    assert prompt in chatbot.prompts


@pytest.mark.parametrize(("prompt", "cut"), [("show me videos", True), ("explain it", False)])
def test_an_answer_in_one_json_document_is_read_before_it_goes_on(
    ai_gw: Gateway, prompt: str, cut: bool
) -> None:
    """Asked not to stream, an assistant answers in one JSON document: it is held, read and
    then sent whole, or replaced by the notice (it went on unread)."""
    status, text = ask(ai_gw, prompt, stream=False)
    assert status == 200
    answer = json.loads(text)["choices"][0]["message"]["content"]
    if cut:
        assert answer.startswith("Schoolgate stopped this because its content looked like")
        assert "END-OF-ANSWER" not in text
    else:
        assert answer == ANSWER_GOOD


def test_a_benign_answer_streams_whole(ai_gw: Gateway) -> None:
    """An ordinary answer reaches the pupil complete."""
    status, events = ask(ai_gw, "explain photosynthesis")
    assert status == 200
    answer = said(events)
    assert answer == ANSWER_GOOD
    assert "Schoolgate stopped" not in answer


def read_cut(gw: Gateway, url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` as a pupil over plain HTTP, reading what came before the proxy cut it."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout,
                                      source_address=(PUPIL, 0))  # fmt: skip
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            body = exc.partial
    finally:
        conn.close()
    return response.status, body


def test_a_long_chunked_page_is_cut_once_past_the_hold_bound(ai_gw: Gateway, pages: Pages) -> None:
    """Sent chunked, a page shows its length only as it arrives: past the hold bound what was
    held and the rest are scored as they go on, and cut where they cross (it used to pass
    unscored, "too large")."""
    status, raw = read_cut(ai_gw, pages.url("/long-chunked"), timeout=20)
    body = raw.decode()
    assert status == 200
    assert "village school" in body
    assert "looked like adult content" in body
    assert "END-OF-PAGE" not in body
    assert last_log_line(ai_gw, "/long-chunked")["content"]["outcome"] == "cut"


@pytest.mark.parametrize("path", sorted(LONG_DISGUISES))
def test_a_long_page_in_disguise_is_cut_mid_stream(ai_gw: Gateway, pages: Pages, path: str) -> None:
    """Streamed, a page is read piece by piece as a held page is whole: its words split by
    empty elements, joined by zero-width references, split by hidden letters, written
    backwards in a bdo or put in text boxes are read as the browser shows them, and cut."""
    status, raw = read_cut(ai_gw, pages.url(path), timeout=20)
    body = raw.decode()
    assert status == 200
    assert "looked like adult content" in body
    assert "END-OF-PAGE" not in body
    assert last_log_line(ai_gw, path)["content"]["outcome"] == "cut"


def test_a_streamed_bomb_is_cut_once_it_decodes_past_the_bound(
    ai_gw: Gateway, pages: Pages
) -> None:
    """Over the hold bound, the bomb streams: it is decoded and scored as it goes, and cut
    with a notice once 64 MiB have come out, not decoded to its 512 MiB."""
    before = _peak_rss_mib(ai_gw.process.pid)
    status, body = read_cut(ai_gw, pages.url("/bomb"), timeout=60)
    assert status == 200
    assert body.endswith(b"it was too large to check.</p></div>")
    assert len(body) < 80 << 20
    outcome = last_log_line(ai_gw, "/bomb")["content"]["outcome"]
    assert outcome == "cut: it decodes to more than 64 MiB"
    assert _peak_rss_mib(ai_gw.process.pid) - before < 64


def test_a_long_page_in_an_unknown_encoding_is_refused(ai_gw: Gateway, pages: Pages) -> None:
    """Over the hold bound, so streamed, in an encoding no browser asked for: refused."""
    status, body = ai_gw.get(pages.url("/long-unknown-encoding"), client=PUPIL)
    assert status == 403
    assert "could not be checked" in body


@pytest.mark.parametrize("path", ["/binary-no-type", "/long-binary-no-type"])
def test_binary_data_without_a_type_passes_whole(ai_gw: Gateway, pages: Pages, path: str) -> None:
    """Held or streamed (over the 64 KB hold bound here), a body without a type whose first
    bytes are binary data is what a browser saves, not a page: it is not cut."""
    status, body = read_cut(ai_gw, pages.url(path), timeout=20)
    assert status == 200
    assert body == PAGES[path][1]


def test_a_prompt_is_logged_as_a_search(ai_gw: Gateway) -> None:
    """The pupil's prompt is a search of engine chatgpt; a concerning one is flagged."""
    ask(ai_gw, "i want to kill myself")
    deadline = time.monotonic() + 15
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            [*schoolgate_command(), "incidents", "searches", "--config", str(ai_gw.config_dir)],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        if "i want to kill myself" in out:
            break
        time.sleep(0.5)
    line = next(line for line in out.splitlines() if "i want to kill myself" in line)
    assert "chatgpt" in line
    assert "suicide" in line  # the concerning-terms category it matched


@pytest.mark.parametrize("path", ["/long", "/long-header-ebcdic"])
def test_a_long_page_is_cut_mid_stream(ai_gw: Gateway, pages: Pages, path: str) -> None:
    """A page over the hold bound is scored as it passes and cut where it crosses, read in
    the charset a browser reads it in (a label no browser knows is not read as EBCDIC)."""
    status, raw = read_cut(ai_gw, pages.url(path), timeout=20)
    body = raw.decode()
    assert status == 200
    assert "village school" in body  # the start of the page went through
    assert "looked like adult content" in body
    assert "END-OF-PAGE" not in body
    assert pages.seen.count(path) == 1
