"""The words a reader sees on a page: HTML to text, with a fast parser.

selectolax (the Lexbor engine, C) parses about 100 MB/s here; scripts,
styles, templates and the like are dropped, since they are not what the
reader reads (and a site's JavaScript is full of words like "execute" and
"kill"). The title and the image descriptions (``alt``) are kept: a page
that is nothing but pictures says what they are there. A body that is
already text (``text/plain``, a JSON answer) is scored as it is.

The text is read two ways (``html_readings``), because markup alone cannot say
where a reader sees a space: with a space between every two pieces of text (a
paragraph's end parts its last word from the next paragraph's first), and with
none (``p<b>o</b>rn``, ``p<i></i>orn``, ``p<!---->orn`` or an element the
parser drops, ``p</x>orn``, all show "porn" in a browser). A phrase counts as
often as the reading that finds it most often (``PhraseScorer.score_readings``):
a page cannot hide its words from one reading without showing them to the other,
short of style sheets that move text about (a block made inline, a space made
with a margin), which no reading of the markup follows.
"""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser

# One selector, so the tree is walked once (strip_tags walks it once per tag name: about a
# third of the extraction time on a 100 KB page, bench.content).
_NOT_READ = "script, style, noscript, template, svg, head"


def html_readings(html: str | bytes) -> tuple[str, str]:
    """The readable text of an HTML document (title, body text and image descriptions), read
    with a space between every two pieces of the body's text, and with none.

    Bytes are read as UTF-8 (what Lexbor parses; bytes that are not UTF-8 become U+FFFD).
    """
    tree = LexborHTMLParser(html)
    # The document's title is the one in its head: a title element in the body is read with
    # the body, and reading it in front as well would count its words twice.
    title = tree.css_first("head > title")
    parts = [title.text(strip=True)] if title is not None else []
    parts.extend(alt for node in tree.css("img[alt]") if (alt := node.attributes.get("alt")))
    # Last first: a node nested in another (a script in an svg) goes before its ancestor, so
    # no node is removed after the subtree holding it was freed.
    for node in reversed(tree.css(_NOT_READ)):
        node.decompose()
    body = tree.body
    if body is None:
        text = " ".join(parts)
        return text, text
    return (
        " ".join([*parts, body.text(separator=" ")]),
        " ".join([*parts, body.text(separator="")]),
    )


def html_text(html: str | bytes) -> str:
    """The readable text of an HTML document, a space between every two pieces of text."""
    return html_readings(html)[0]


def page_readings(body: str, content_type: str) -> tuple[str, ...]:
    """The text to score for a body of this content type: an HTML page's two readings, or
    the body as it is."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in {"text/html", "application/xhtml+xml"}:
        return html_readings(body)
    return (body,)


def page_text(body: str, content_type: str) -> str:
    """The text to score for a body of this content type (HTML is parsed, the rest kept)."""
    return page_readings(body, content_type)[0]
