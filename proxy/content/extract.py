"""The words a reader sees on a page: HTML to text, with a fast parser.

selectolax (the Lexbor engine, C) parses about 100 MB/s here; scripts,
styles, templates and the like are dropped, since they are not what the
reader reads (and a site's JavaScript is full of words like "execute" and
"kill"). The title and the image descriptions (``alt``) are kept: a page
that is nothing but pictures says what they are there. So are button labels,
what text boxes hold and ask for (``value``, ``placeholder``), text drawn in
an svg, a declarative shadow root's content (a ``<template
shadowrootmode>``, shown in its host's place), a ``<noscript>``'s (shown with
scripts off), and the documents a page shows inside itself without a request
of their own (an iframe's ``srcdoc``, ``data:`` URLs in frames, objects and
embeds), which the proxy would otherwise never see. Text shown in reverse
(``<bdo dir=rtl>``, a direction override) is read reversed too; what a
browser does not show where it stands (a hidden element, a ruby annotation)
is read apart from the words around it, which it no longer splits. A body
that is already text (``text/plain``, a JSON answer) is scored as it is.

``html_marked`` puts ``MARK`` where two pieces of text meet, because markup
alone cannot say where a reader sees a space: a paragraph's end is parted from
the next paragraph's first word, but ``p<b>o</b>rn``, ``p<i></i>orn``,
``p<!---->orn`` and an element the parser drops (``p</x>orn``) all show "porn"
in a browser. ``PhraseScorer.score`` reads each mark as a space or as nothing,
whichever finds a phrase: a page cannot hide its words behind either, short of
style sheets that move text about (a block made inline, a space made with a
margin), which no reading of the markup follows.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import threading
from urllib.parse import unquote, unquote_to_bytes

import hyperscan
from selectolax.lexbor import LexborHTMLParser, LexborNode

from proxy.content.phrases import MARK

# What is not read: scripts, styles, templates, the head (an svg's text is read, as it is
# drawn on the page; its scripts and styles go with the rest), and a ruby's fallback
# brackets, rp, shown by no browser now. (And a <noscript>, read apart: see _read.)
_DROPPED = frozenset({"script", "style", "template", "head", "rp"})
# Documents a page shows inside itself without another request, which the proxy would never
# see: an iframe's srcdoc, and data: URLs in frames, objects and pictures (an SVG draws text).
_EMBEDDING = frozenset({"iframe", "frame", "embed", "object", "image"})
# Where each of them names what it shows.
_SOURCE = {"object": "data", "image": "href"}
# Text a browser does not show where it stands: an element hidden by its attribute or its
# inline style ("p<span hidden>x</span>orn" shows "porn"), or set in zero-size type; a ruby
# annotation, shown above its base ("p<rt>x</rt>orn" shows "porn" under an "x"). Its words
# are taken out of the text around it and read apart. Every inline style is looked at: CSS
# reads escapes and comments in it ("display: n\\6f ne", "display:/**/none"), which a
# substring selector would not see through.
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(.))", re.DOTALL)
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|font-size\s*:\s*0*\.?0*(?:px|pt|em|rem|%|vw|vh)?)"
    r"\s*(?:!\s*important\s*)?(?:;|$)",
    re.IGNORECASE,
)
_APART = frozenset({"rt"})
# An input of these types shows no value.
_VALUE_NOT_SHOWN = frozenset(
    {"hidden", "password", "checkbox", "radio", "file", "image", "color", "range"}
)
# What the reading looks for, in one CSS selector list, so the tree is walked once: each
# query walks it again (five cost 0.26 ms a 100 KB page over the parse's 0.61, one 0.17;
# strip_tags walks it once per tag name). The tags it finds tell the parts apart. (Each
# element is matched by one selector only: Lexbor returns an element once per selector it
# matches, and an iframe with both a srcdoc and a src was read twice.)
#
# Most pages hold few of those elements, and each selector in the list costs a little on every
# node (0.59 ms a 100 KB page for all of them, 0.26 for the ones every page needs). An element
# or attribute is only in the tree if its name is in the bytes (names are not written with
# references, and the parser makes none of these up), so one Hyperscan pass over the bytes
# (caseless, each name reported once) says which selectors a page needs. A selector list is
# built for each set of names a page has.
#
# Every page: the title, what is not read, image descriptions and data: pictures.
_ALWAYS = "head > title, img[alt], img[src^='data:' i], script, style, head"
_IF_PRESENT = {
    b"hidden": "[hidden]",  # hidden elements, and
    b"style": "[style]",  # inline styles (hiding, or overriding the direction)
    b"<rt": "rt",
    b"<rp": "rp",
    b"<bdo": "bdo[dir=rtl i]",  # shown reversed: "<bdo dir=rtl>nrop</bdo>" shows "porn"
    b"<noscript": "noscript",
    b"<template": "template",
    b"<image": "image",  # an svg's picture
    b"<textarea": "textarea[placeholder]",  # what text boxes and buttons hold or ask for
    b"<input": "input",
    b"<iframe": "iframe",
    b"<frame": "frame[src]",
    b"<embed": "embed[src]",
    b"<object": "object[data]",
}
_NAMES = list(_IF_PRESENT)
_PRESENT = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
_PRESENT.compile(
    expressions=[re.escape(name) for name in _NAMES],
    ids=list(range(len(_NAMES))),
    elements=len(_NAMES),
    flags=hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH,
)
_PRESENT_SCRATCH = threading.local()


@functools.lru_cache(maxsize=256)
def _selector(present: frozenset[int]) -> str:
    return ", ".join((_ALWAYS, *(_IF_PRESENT[_NAMES[i]] for i in sorted(present))))


# Everything the reading looks for, whatever a page holds.
_WANTED = _selector(frozenset(range(len(_NAMES))))


def _wanted(html: str | bytes) -> str:
    """The selector list for what ``html`` may hold."""
    if not isinstance(html, bytes):
        html = html.encode("utf-8", "replace")
    scratch = getattr(_PRESENT_SCRATCH, "scratch", None)
    if scratch is None:
        scratch = _PRESENT_SCRATCH.scratch = hyperscan.Scratch(_PRESENT)
    present: set[int] = set()
    _PRESENT.scan(html, match_event_handler=lambda i, *_: present.add(i), scratch=scratch)
    return _selector(frozenset(present))


# How deep documents inside documents are read (each is part of the page's own bytes).
EMBEDDED_DEPTH = 3
# Pages read through the parser: HTML, and SVG and XML documents (their text, as shown).
PARSED_TYPES = frozenset(
    {"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"}
)
_URL_IGNORED = re.compile(r"[\t\n\r]")


def data_url(url: str) -> tuple[str, bytes] | None:
    """A data: URL's media type and bytes (RFC 2397), or None if it is not one. Read as a
    browser reads the attribute: tabs and newlines anywhere, and spaces and controls at
    either end, are not part of the URL."""
    url = _URL_IGNORED.sub("", url).strip("".join(map(chr, range(0x21))))
    if url[:5].lower() != "data:" or "," not in url:
        return None
    header, _, payload = url[5:].partition(",")
    media = header.split(";", 1)[0].strip().lower() or "text/plain"
    if header.lower().rstrip().endswith(";base64"):
        try:
            return media, base64.b64decode(unquote(payload) + "==", validate=False)
        except (ValueError, binascii.Error):
            return None
    return media, unquote_to_bytes(payload)


def _css(style: str | None) -> str:
    """An inline style as CSS reads it: comments dropped, escapes decoded."""
    if not style or ("\\" not in style and "/*" not in style):
        return style or ""

    def unescape(found: re.Match[str]) -> str:
        if found.group(2) is not None:
            return found.group(2)
        code = int(found.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return _CSS_ESCAPE.sub(unescape, _CSS_COMMENT.sub("", style))


def _hidden(attributes: dict[str, str | None]) -> bool:
    """Whether an element's attributes hide it: ``hidden``, or an inline style of
    ``display: none`` or a zero font size."""
    if "hidden" in attributes:
        return True
    style = _css(attributes.get("style"))
    return bool(style) and _HIDDEN_STYLE.search(style) is not None


def _shown_reversed(tag: str | None, attributes: dict[str, str | None]) -> bool:
    """Whether an element's letters are shown in reverse order: a ``<bdo dir=rtl>``, or an
    inline style that overrides the direction."""
    if tag == "bdo" and (attributes.get("dir") or "").lower() == "rtl":
        return True
    return "bidi-override" in _css(attributes.get("style")).lower()


def _described(node: LexborNode) -> list[str]:
    """The words an image, an input or a text box shows from its attributes."""
    attributes = node.attributes
    if node.tag == "img":
        return [text] if (text := attributes.get("alt")) else []
    if node.tag == "textarea":
        return [text] if (text := attributes.get("placeholder")) else []
    kind = (attributes.get("type") or "text").lower()
    shown = [attributes.get("placeholder")]
    if kind not in _VALUE_NOT_SHOWN:
        shown.append(attributes.get("value"))
    elif kind == "image":
        shown.append(attributes.get("alt"))
    return [text for text in shown if text]


def _embedded(nodes: list[LexborNode], depth: int, scripting: bool) -> list[str]:
    """The (marked) text of the documents these frames, objects, embeds, data: pictures,
    noscripts and shadow roots show."""
    found: list[str] = []
    if depth >= EMBEDDED_DEPTH:
        return found
    for node in nodes:
        if node.tag == "noscript":
            found.append(_marked(node.text(), depth + 1, scripting=False))
            continue
        if node.tag == "template":
            # Its content is not in the tree (it is the template's own fragment); its markup,
            # in a <div> for a <template>, is read as a document of its own.
            markup = node.html or ""
            found.append(_marked("<div" + markup[len("<template") :], depth + 1, scripting))
            continue
        attributes = node.attributes
        srcdoc = attributes.get("srcdoc") if node.tag == "iframe" else None
        if srcdoc:
            found.append(_marked(srcdoc, depth + 1))
            continue
        source = attributes.get(_SOURCE.get(node.tag or "", "src"))
        if node.tag == "image":  # in an svg: href, or the older xlink:href
            source = source or attributes.get("xlink:href")
        parsed = data_url(source or "")
        if parsed is None:
            continue
        media, data = parsed
        if media in PARSED_TYPES:
            found.append(_marked(data, depth + 1))
        elif media.startswith("text/"):
            found.append(data.decode("utf-8", "replace"))
    return found


def html_marked(html: str | bytes) -> str:
    """The readable text of an HTML document (title, body text, image descriptions, button
    labels and the documents it shows inside itself), with ``MARK`` wherever two pieces of
    the body's text meet: ``PhraseScorer.score`` reads each as a space or as nothing.

    Bytes are read as UTF-8 (what Lexbor parses; bytes that are not UTF-8 become U+FFFD).
    """
    return _marked(html, 0)


def html_readings(html: str | bytes) -> tuple[str, str]:
    """The readable text of an HTML document, with a space between every two pieces of the
    body's text, and with none."""
    marked = html_marked(html)
    return marked.replace(MARK, " "), marked.replace(MARK, "")


def html_parts(html: str | bytes) -> tuple[str, str]:
    """A piece of a page read in pieces (``proxy.content.stream``): the text of its body,
    which runs on from one piece to the next, and apart from it the rest ``html_marked``
    reads (title, descriptions, documents inside, words read apart), each with marks."""
    parts, body = _read(html, 0, True)
    return body or "", " ".join(parts)


def _marked(html: str | bytes, depth: int, scripting: bool = True) -> str:
    parts, body = _read(html, depth, scripting)
    return " ".join([*parts, body]) if body is not None else " ".join(parts)


def _read(html: str | bytes, depth: int, scripting: bool) -> tuple[list[str], str | None]:
    """What a document shows: its title, descriptions, documents inside and words read
    apart; and its body's text (None without a body), with marks."""
    # Parsed as a browser that runs scripts parses it (pupils' browsers do): a <noscript>'s
    # content is then text, not markup. Parsed the other way, "<noscript><textarea>" or
    # "<noscript><style>" swallowed the rest of the page, which a browser shows, into what is
    # not read. What a <noscript> holds, a browser with scripts turned off shows: it is read
    # as a document of its own, as such a browser parses it (``scripting=False``: a
    # <noscript> inside it is then markup, read with the rest).
    tree = LexborHTMLParser(html, scripting=scripting)
    title: list[str] = []
    described: list[str] = []
    embedding: list[LexborNode] = []
    # What is taken out of the body's text before it is read, in document order: True for
    # what a browser shows elsewhere or not at all, whose words are read apart (a hidden
    # element, a ruby annotation), False for what is not read at all.
    removed: dict[int, tuple[LexborNode, bool]] = {}
    seen: set[int] = set()
    for node in tree.css(_wanted(html)):
        if node.mem_id in seen:  # Lexbor returns a node once for each selector it matches
            continue
        seen.add(node.mem_id)
        tag = node.tag
        attributes = node.attributes
        if tag in _DROPPED or (tag == "noscript" and scripting):
            removed[node.mem_id] = (node, False)
        elif tag in _APART or _hidden(attributes):
            removed[node.mem_id] = (node, True)
        if tag == "noscript":
            if scripting:
                embedding.append(node)
        elif tag == "template":
            # A declarative shadow root: a browser shows what it holds in its host's place.
            if attributes.get("shadowrootmode"):
                embedding.append(node)
        elif tag == "title":
            # The document's title is the one in its head: a title element in the body is
            # read with the body, and reading it in front as well would count it twice.
            if not title and node.parent is not None and node.parent.tag == "head":
                title.append(node.text(strip=True))
        elif tag in ("img", "input", "textarea"):
            described.extend(_described(node))
            # An SVG picture in a data: URL draws its text: read as the document it is.
            if tag == "img" and (attributes.get("src") or "").lstrip()[:5].lower() == "data:":
                embedding.append(node)
        elif tag in _EMBEDDING:
            embedding.append(node)
        if _shown_reversed(tag, attributes):
            described.append(node.text(separator=MARK)[::-1])
    parts = [*title, *described, *_embedded(embedding, depth, scripting)]
    # Last first: a node nested in another (a script in an svg, a hidden word in a hidden
    # paragraph) goes before its ancestor, so its words are not read twice and no node is
    # removed after the subtree holding it was freed.
    for node, read_apart in reversed(removed.values()):
        if read_apart:
            parts.append(node.text(separator=MARK))
        node.decompose()
    body = tree.body
    return parts, body.text(separator=MARK) if body is not None else None


def html_text(html: str | bytes) -> str:
    """The readable text of an HTML document, a space between every two pieces of text."""
    return html_marked(html).replace(MARK, " ")


def page_marked(body: str, content_type: str) -> str:
    """The text to score for a body of this content type: an HTML page's (``html_marked``),
    or the body as it is."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in PARSED_TYPES:
        return html_marked(body)
    return body


def page_text(body: str, content_type: str) -> str:
    """The text of a body of this content type (HTML is parsed, the rest kept), with a space
    between every two pieces."""
    return page_marked(body, content_type).replace(MARK, " ")
