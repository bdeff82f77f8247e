"""Downloads by what they are: magic bytes, content types, names, sizes and streamed bodies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from proxy.downloads import (
    SNIFF_BYTES,
    Rules,
    StreamGuard,
    Verdict,
    check_body,
    check_headers,
    filename_of,
    sniff,
)

PE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 600
ALL = Rules.of(["executable", "installer", "script", "archive"], 1)


@pytest.mark.parametrize(
    ("head", "name", "kind"),
    [
        (PE, "", "executable"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 100, "", "executable"),
        (b"\xcf\xfa\xed\xfe" + b"\x00" * 100, "", "executable"),
        (b"#!/bin/sh\nrm -rf /\n", "", "script"),
        (b"PK\x03\x04" + b"\x00" * 100, "files.zip", "archive"),
        (b"PK\x03\x04" + b"\x00" * 100, "", "archive"),
        (b"PK\x03\x04" + b"\x00" * 100, "app.apk", "installer"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "setup.msi", "installer"),
        (b"Rar!\x1a\x07\x00", "", "archive"),
        (b"7z\xbc\xaf\x27\x1c\x00", "", "archive"),
        (b"\x00" * 257 + b"ustar\x0000", "", "archive"),
        (b"xar!\x00\x1c", "", "installer"),
    ],
)
def test_magic_bytes_say_what_a_file_is(head: bytes, name: str, kind: str) -> None:
    """The first bytes name the kind whatever the file is called."""
    found = sniff(head, name)
    assert found is not None
    assert found[0] == kind


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"<!doctype html><html>", ""),
        (b"%PDF-1.7", "worksheet.pdf"),
        (b"PK\x03\x04" + b"\x00" * 100, "essay.docx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old.doc"),
        (b"\x89PNG\r\n\x1a\n", "diagram.png"),
    ],
)
def test_documents_are_not_mistaken_for_programs(head: bytes, name: str) -> None:
    """Pages, PDFs, Office files and images are none of the blocked kinds."""
    assert sniff(head, name) is None


def test_a_renamed_executable_is_still_an_executable() -> None:
    """An .exe called notes.txt and served as text/plain is blocked by its bytes."""
    rules = Rules.of(["executable"], None)
    assert (
        check_headers(
            rules,
            content_type="text/plain",
            content_disposition=None,
            path="/notes.txt",
            content_length=len(PE),
        )
        is None
    )
    verdict = check_body(rules, PE[:SNIFF_BYTES], "notes.txt")
    assert verdict == Verdict("executable", "Windows executable")


@pytest.mark.parametrize(
    ("content_type", "disposition", "path", "kind"),
    [
        ("application/x-msdownload", None, "/download", "executable"),
        ("application/octet-stream", 'attachment; filename="setup.EXE"', "/get?id=1", "executable"),
        ("application/octet-stream", "attachment; filename*=UTF-8''tool%2Eps1", "/x", "script"),
        ("application/octet-stream", None, "/files/game.msi", "installer"),
        ("application/zip; charset=binary", None, "/a", "archive"),
        (None, None, "/dl/hack.bat", "script"),
    ],
)
def test_headers_decide_when_they_can(content_type, disposition, path, kind) -> None:
    """A blocked content type or file name blocks before any body arrives."""
    verdict = check_headers(
        ALL,
        content_type=content_type,
        content_disposition=disposition,
        path=path,
        content_length=10,
    )
    assert verdict is not None
    assert verdict.kind == kind


def test_only_the_kinds_asked_for_are_blocked() -> None:
    """A group that blocks executables only may download a zip."""
    rules = Rules.of(["executable"], None)
    assert check_body(rules, b"PK\x03\x04" + b"\x00" * 40, "a.zip") is None
    assert (
        check_headers(
            rules,
            content_type="application/zip",
            content_disposition=None,
            path="/a.zip",
            content_length=None,
        )
        is None
    )


def test_content_length_over_the_limit_is_blocked() -> None:
    """A declared size over max_mb is blocked from the headers alone."""
    rules = Rules.of([], 1)
    verdict = check_headers(
        rules,
        content_type="video/mp4",
        content_disposition=None,
        path="/v.mp4",
        content_length=1024 * 1024 + 1,
    )
    assert verdict is not None
    assert verdict.kind == "too_large"
    assert (
        check_headers(
            rules,
            content_type="video/mp4",
            content_disposition=None,
            path="/v.mp4",
            content_length=1024 * 1024,
        )
        is None
    )


def test_filename_comes_from_disposition_then_path() -> None:
    """Content-Disposition names the file; otherwise the last path segment does."""
    assert filename_of('attachment; filename="a b.exe"', "/x/y.txt") == "a b.exe"
    assert filename_of(None, "/x/setup%2Eexe?v=1") == "setup.exe"


def _stream(guard: StreamGuard, chunks: list[bytes]) -> bytes:
    out = b""
    for chunk in [*chunks, b""]:
        out += b"".join(guard.feed(chunk))
    return out


def test_stream_guard_passes_a_harmless_body_whole() -> None:
    """A page split in small chunks comes out unchanged once it has been sniffed."""
    body = b"<html>" + b"x" * 2000 + b"</html>"
    guard = StreamGuard(ALL, "", None, lambda v: None)
    assert _stream(guard, [body[i : i + 100] for i in range(0, len(body), 100)]) == body
    assert guard.verdict is None


def test_stream_guard_holds_back_and_blocks_an_executable() -> None:
    """Not one byte of a streamed executable is forwarded, and the block is reported once."""
    seen: list[Verdict] = []
    guard = StreamGuard(ALL, "", None, seen.append)
    assert _stream(guard, [PE[:10], PE[10:300], PE[300:], b"more"]) == b""
    assert [v.kind for v in seen] == ["executable"]


def test_stream_guard_sniffs_through_gzip() -> None:
    """A gzip-encoded executable is recognised by its decoded bytes."""
    seen: list[Verdict] = []
    guard = StreamGuard(ALL, "", "gzip", seen.append)
    assert _stream(guard, [gzip.compress(PE)]) == b""
    assert [v.kind for v in seen] == ["executable"]
    deflated = zlib.compress(b"<html>hello</html>")
    guard = StreamGuard(ALL, "", "deflate", lambda v: None)
    assert _stream(guard, [deflated[:5], deflated[5:]]) == deflated


def test_stream_guard_counts_chunked_bodies() -> None:
    """A body with no length is cut as soon as the running count passes max_mb."""
    seen: list[Verdict] = []
    guard = StreamGuard(Rules.of([], 1), "", None, seen.append)
    chunk = b"a" * (256 * 1024)
    out = b"".join(b"".join(guard.feed(chunk)) for _ in range(4))
    assert len(out) == 4 * len(chunk)
    assert guard.feed(b"a") == []
    assert [v.kind for v in seen] == ["too_large"]


def test_stream_guard_refuses_what_it_cannot_decode() -> None:
    """A body in an encoding the filter did not ask for cannot be checked, so it is blocked."""
    seen: list[Verdict] = []
    guard = StreamGuard(ALL, "", "br", seen.append)
    assert _stream(guard, [b"\x0b\x02\x80hello"]) == b""
    assert len(seen) == 1
