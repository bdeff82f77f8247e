"""A held page's content coding undone, within a bound.

mitmproxy decodes a body whole (``Message.get_content``) with no bound on what
comes out: a 2 MiB gzip of one repeated byte is 2 GiB decoded, and a page that
content analysis holds would be decoded, parsed and folded at that size on the
request path, by every worker a pupil sends there. ``decoded`` stops at
``limit`` bytes of output instead and says the page is too large to check
(``TooLarge``), which the caller refuses: no page a browser is meant to read
decodes to that. An encoding it does not know (``Unreadable``), or data that is
not what its encoding says, is refused as well: scoring the still-encoded bytes
would pass whatever they hold.
"""

from __future__ import annotations

import zlib

import brotli  # type: ignore[import-untyped]
import zstandard


class Unreadable(ValueError):
    """The body's encoding is not one this reads, or its data is not what it says."""


class TooLarge(ValueError):
    """The body decodes to more than the bound."""


def decoded(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` with its content coding (gzip, deflate, br, zstd or none) undone, at most
    ``limit`` bytes of it; raises ``TooLarge`` past that and ``Unreadable`` for what cannot
    be decoded."""
    name = (encoding or "identity").strip().lower()
    try:
        if name in {"identity", "none", ""}:
            out = raw
        elif name in {"gzip", "x-gzip"}:
            out = zlib.decompressobj(32 + zlib.MAX_WBITS).decompress(raw, limit + 1)
        elif name == "deflate":
            out = _deflate(raw, limit)
        elif name == "br":
            out = brotli.Decompressor().process(raw, output_buffer_limit=limit + 1)
        elif name == "zstd":
            out = _zstd(raw, limit)
        else:
            raise Unreadable(f"content encoding {encoding!r} cannot be read")
    except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
        raise Unreadable(f"a {name} body that does not decode: {exc}") from exc
    if len(out) > limit:
        raise TooLarge(f"the body decodes to more than {limit // (1024 * 1024)} MiB")
    return bytes(out)


def _deflate(raw: bytes, limit: int) -> bytes:
    """zlib-wrapped deflate, or the raw deflate some servers send (as mitmproxy reads it)."""
    try:
        return zlib.decompressobj().decompress(raw, limit + 1)
    except zlib.error:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, limit + 1)


def _zstd(raw: bytes, limit: int) -> bytes:
    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as reader:
        while len(out) <= limit:
            piece = reader.read(limit + 1 - len(out))
            if not piece:
                break
            out += piece
    return bytes(out)
