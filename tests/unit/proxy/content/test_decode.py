"""A held page's content coding undone within a bound: bombs and unreadable bodies refused."""

from __future__ import annotations

import gzip
import zlib

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from proxy.content.decode import TooLarge, Unreadable, decoded

PAGE = b"<p>" + b"The river flows past the old mill. " * 2000 + b"</p>"


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, PAGE),
        ("identity", PAGE),
        ("gzip", gzip.compress(PAGE)),
        ("x-gzip", gzip.compress(PAGE)),
        ("deflate", zlib.compress(PAGE)),
        ("deflate", _raw_deflate(PAGE)),  # what some servers send as deflate
        ("br", brotli.compress(PAGE)),
        ("zstd", zstandard.ZstdCompressor().compress(PAGE)),
        (" GZIP ", gzip.compress(PAGE)),
    ],
)
def test_every_coding_a_browser_asks_for_is_undone(encoding: str | None, body: bytes) -> None:
    assert decoded(body, encoding, len(PAGE)) == PAGE


BOMB = b"a" * (64 << 20)  # 64 MiB of one byte: a few kilobytes compressed


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(BOMB)),
        ("deflate", zlib.compress(BOMB)),
        ("br", brotli.compress(BOMB)),
        ("zstd", zstandard.ZstdCompressor().compress(BOMB)),
    ],
)
def test_a_body_that_decodes_past_the_bound_is_too_large(encoding: str, body: bytes) -> None:
    """Decoding stops at the bound, not at the end of the bomb."""
    assert len(body) < 1 << 20
    with pytest.raises(TooLarge, match="more than 1 MiB"):
        decoded(body, encoding, 1 << 20)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("compress", b"\x1f\x9d..."),
        ("dcb", b"..."),
        ("gzip", b"not gzip at all"),
        ("br", b"\xff" * 40),
    ],
)
def test_what_cannot_be_decoded_is_unreadable(encoding: str, body: bytes) -> None:
    """Scoring the still-encoded bytes would pass whatever they hold."""
    with pytest.raises(Unreadable):
        decoded(body, encoding, 1 << 20)
