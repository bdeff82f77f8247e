"""A body's content coding undone, in bounded pieces.

mitmproxy decodes a body whole (``Message.get_content``) with no bound on what
comes out: a 2 MiB gzip of one repeated byte is 2 GiB decoded, and a page that
content analysis holds would be decoded, parsed and folded at that size on the
request path, by every worker a pupil sends there. ``decoder`` gives an
incremental decoder whose output comes in pieces of about ``PIECE`` bytes, so
no chunk that decodes to far more (a bomb) sits in memory whole; a streamed
body is decoded with it piece by piece (``proxy.content.stream``), and
``decoded`` undoes a held body's coding with it, stopping once past ``limit``
bytes and saying the page is too large to check (``TooLarge``), which the
caller refuses: no page a browser is meant to read decodes to that. An encoding
it does not know, or data that is not what its encoding says (``Unreadable``),
is refused as well: scoring the still-encoded bytes would pass whatever they
hold.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]
import zstandard

# What one piece of a decoded body may be.
PIECE = 1 << 20


class Unreadable(ValueError):
    """The body's encoding is not one this reads, or its data is not what it says."""


class TooLarge(ValueError):
    """The body decodes to more than the bound."""


class Decoder(Protocol):
    def pieces(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` decodes to, in pieces of about ``PIECE`` bytes."""
        ...


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_tried = wbits != zlib.MAX_WBITS

    def pieces(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._inflate.decompress(data, PIECE)
        except zlib.error:
            if self._raw_tried:
                raise
            # "deflate" sent without its zlib wrapper, as some servers do (mitmproxy reads it).
            self._raw_tried = True
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inflate.decompress(data, PIECE)
        yield out
        while self._inflate.unconsumed_tail:
            yield self._inflate.decompress(self._inflate.unconsumed_tail, PIECE)


class _Brotli:
    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()

    def pieces(self, data: bytes) -> Iterator[bytes]:
        yield self._decoder.process(data, output_buffer_limit=PIECE)
        while not self._decoder.can_accept_more_data():
            yield self._decoder.process(b"", output_buffer_limit=PIECE)


class _Zstd:
    # A zstd block holds at most 128 KiB however little input it took, so input fed in
    # slices this small gives pieces of at most a few megabytes.
    SLICE = 256

    def __init__(self) -> None:
        self._decoder = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        out = bytearray()
        for start in range(0, len(data), self.SLICE):
            out += self._decoder.decompress(data[start : start + self.SLICE])
            if len(out) >= PIECE:
                yield bytes(out)
                out.clear()
        yield bytes(out)


def decoder(encoding: str | None) -> Decoder | None:
    """An incremental decoder for a content coding (gzip, deflate, br, zstd), None for none;
    ``Unreadable`` for one it does not know."""
    name = (encoding or "identity").strip().lower()
    if name in {"gzip", "x-gzip"}:
        return _Zlib(32 + zlib.MAX_WBITS)  # a gzip or zlib header, as mitmproxy reads it
    if name == "deflate":
        return _Zlib(zlib.MAX_WBITS)
    if name == "br":
        return _Brotli()
    if name == "zstd":
        return _Zstd()
    if name in {"identity", "none", ""}:
        return None
    raise Unreadable(f"content encoding {encoding!r} cannot be read")


def decoded(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` with its content coding undone, at most ``limit`` bytes of it; raises
    ``TooLarge`` past that and ``Unreadable`` for what cannot be decoded."""
    coding = decoder(encoding)
    if coding is None:
        if len(raw) > limit:
            raise TooLarge(f"the body is more than {limit // (1024 * 1024)} MiB")
        return raw
    out = bytearray()
    try:
        for piece in coding.pieces(raw):
            out += piece
            if len(out) > limit:
                raise TooLarge(f"the body decodes to more than {limit // (1024 * 1024)} MiB")
    except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
        name = (encoding or "").strip().lower()
        raise Unreadable(f"a {name} body that does not decode: {exc}") from exc
    return bytes(out)
