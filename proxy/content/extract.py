"""The words a reader sees on a page: HTML to text, with a fast parser.

selectolax (the Lexbor engine, C) parses about 100 MB/s here; scripts,
styles, templates and the like are dropped, since they are not what the
reader reads (and a site's JavaScript is full of words like "execute" and
"kill"). The title and the image descriptions (``alt``) are kept: a page
that is nothing but pictures says what they are there. A body that is
already text (``text/plain``, a JSON answer) is scored as it is.
"""

from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser

# One selector, so the tree is walked once (strip_tags walks it once per tag name: about a
# third of the extraction time on a 100 KB page, bench.content).
_NOT_READ = "script, style, noscript, template, svg, head"


def html_text(html: str | bytes) -> str:
    """The readable text of an HTML document: title, body text and image descriptions.

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
    if body is not None:
        parts.append(body.text(separator=" "))
    return " ".join(parts)


def page_text(body: str, content_type: str) -> str:
    """The text to score for a body of this content type (HTML is parsed, the rest kept)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in {"text/html", "application/xhtml+xml"}:
        return html_text(body)
    return body
