"""The charsets a browser may read a page in, so that the proxy reads the words it shows.

A page's bytes are only words in a charset, and a page may name any label it likes. A
browser follows the HTML and Encoding standards (WHATWG): a byte order mark first, then
the ``Content-Type`` header's charset if the label is one the Encoding Standard knows,
then a ``<meta>`` declaration within the first 1024 bytes (one naming UTF-16 reads as
UTF-8, ``x-user-defined`` as windows-1252), and otherwise UTF-8 or the locale's legacy
charset (windows-1252 in the UK). Python's codecs know labels no browser does (``cp037``,
``utf-7``, ``utf-32``) and read ``latin1`` as ISO-8859-1 where a browser reads
windows-1252; mitmproxy's ``infer_content_encoding`` takes a ``charset=`` from anywhere in
the page. Decoded that way, an adult page labelled ``cp037`` was gibberish to the proxy
and plain English to the pupil's browser. Labels are looked up with ``webencodings``
(the Encoding Standard's table).

Where the header does not decide, the ``<meta>`` that does is found by the browser's own
scan, which this module does not copy: comments, attributes and the order of several
declarations all play a part, and a copy that differs in any corner is a way round. So
every charset a label in the first 1024 bytes names is a candidate, with UTF-8, and
windows-1252 too when the bytes are not UTF-8: the page is read in each, and each phrase
counts as often as the reading that finds it most (``PhraseScorer.score_readings``).
Whichever one the browser picks, its words were read. A page names one charset (two with
an ``http-equiv``); one that names more than ``MOST_NAMED`` is refused as unreadable
rather than parsed once for each.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

import webencodings

UTF8: Final = webencodings.lookup("utf-8")
WINDOWS_1252: Final = webencodings.lookup("windows-1252")
# Where a browser looks for a <meta> charset, and how many other charsets the page may name
# there before it is refused (each is one more parse of the page).
PRESCAN_BYTES = 1024
MOST_NAMED = 3
_HEADER_CHARSET = re.compile(r"""(?i);\s*charset\s*=\s*["']?([^"';\s]+)""")
_NAMED = re.compile(rb"""(?i)(?:charset|encoding)\s*=\s*["']?\s*([a-z0-9_.:+-]{1,40})""")
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (b"\xfe\xff", "utf-16be"), (b"\xff\xfe", "utf-16le"))


class TooManyCharsets(ValueError):
    """A page whose first bytes name more charsets than any page needs."""


def header_encoding(content_type: str) -> webencodings.Encoding | None:
    """The encoding the ``Content-Type`` header's charset names, if the Encoding Standard
    knows its label (a browser ignores one it does not)."""
    found = _HEADER_CHARSET.search(content_type)
    return webencodings.lookup(found.group(1)) if found else None


def byte_order_mark(content: bytes) -> tuple[webencodings.Encoding, int] | None:
    """The encoding a byte order mark at the start names (it beats any label), and its
    length. The Encoding Standard knows three: UTF-8's, UTF-16's two."""
    for mark, label in _BOMS:
        if content.startswith(mark):
            return webencodings.lookup(label), len(mark)
    return None


def _is_utf8(content: bytes) -> bool:
    if content.isascii():
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def candidates(content: bytes, content_type: str) -> tuple[list[webencodings.Encoding], int]:
    """The encodings a browser may read ``content`` in, first the likeliest, and how many
    bytes of byte order mark to skip. Raises ``TooManyCharsets``."""
    marked = byte_order_mark(content)
    if marked is not None:
        return [marked[0]], marked[1]
    declared = header_encoding(content_type)
    if declared is not None:
        return [declared], 0
    found = [UTF8]
    for match in _NAMED.finditer(content[:PRESCAN_BYTES]):
        encoding = webencodings.lookup(match.group(1).decode("ascii"))
        if encoding is None:
            continue
        if encoding.name in ("utf-16le", "utf-16be"):  # named inside the page: read as UTF-8
            encoding = UTF8
        elif encoding.name == "x-user-defined":
            encoding = WINDOWS_1252
        if encoding not in found:
            found.append(encoding)
    if WINDOWS_1252 not in found and not _is_utf8(content):
        found.append(WINDOWS_1252)  # the legacy charset a UK browser falls back to
    if len(found) > 1 + MOST_NAMED:
        raise TooManyCharsets(f"its first bytes name {len(found) - 1} charsets")
    return found, 0


def decode(content: bytes, encoding: webencodings.Encoding) -> str:
    """``content`` in ``encoding``, bytes it cannot read as U+FFFD (the "replacement"
    encoding a few labels name reads as one U+FFFD, as a browser shows it)."""
    if encoding.name == "replacement":
        return "\ufffd" if content else ""
    return str(encoding.codec_info.decode(content, "replace")[0])


def stream_charset(content_type: str) -> str:
    """The charset a streamed body is read in: the one its header names, or UTF-8 (a stream is
    read before its first bytes are seen, so only the header can decide)."""
    encoding = header_encoding(content_type)
    return "utf-8" if encoding is None else encoding.name


def incremental_decoder(label: str) -> codecs.IncrementalDecoder:
    """A decoder for text arriving in pieces in the encoding ``label`` names (UTF-8 for a
    label the Encoding Standard does not know, and for the "replacement" encoding, which
    would read the whole stream as one U+FFFD: read rather than passed unread)."""
    encoding = webencodings.lookup(label) or UTF8
    if encoding.name == "replacement":
        encoding = UTF8
    decoder: codecs.IncrementalDecoder = encoding.codec_info.incrementaldecoder("replace")
    return decoder
