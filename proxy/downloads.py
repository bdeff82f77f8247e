"""Downloads by what they are: magic bytes, content type and file name, and a size cap.

Pure functions, no mitmproxy. ``check_headers`` decides what the response
headers alone can (a ``Content-Length`` over the limit, a blocked content
type, a blocked file name in ``Content-Disposition`` or the URL);
``check_body`` looks at the first bytes, so an ``.exe`` renamed ``.txt`` and
served as ``text/plain`` is still an executable. ``StreamGuard`` does both
for a body that is streamed: it holds back the first bytes until it can
sniff them and keeps a running count for bodies with no length (chunked).

Kinds: ``executable`` (Windows PE, ELF, Mach-O, Java), ``installer`` (MSI,
MSIX/AppX, DMG, macOS pkg, deb, rpm, APK, browser extensions), ``script``
(``#!`` scripts, batch, PowerShell, VBScript, HTA) and ``archive`` (zip,
7z, rar, tar, gzip, bzip2, xz, zstd, cab, iso). Office documents and
e-books are zip files but not archives.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Literal
from urllib.parse import unquote

Kind = Literal["executable", "installer", "script", "archive"]
KINDS: tuple[Kind, ...] = ("executable", "installer", "script", "archive")
SNIFF_BYTES = 512  # enough for every signature below (tar's "ustar" sits at offset 257)

_EXTENSIONS: dict[Kind, frozenset[str]] = {
    "executable": frozenset(
        [
            "exe",
            "dll",
            "scr",
            "com",
            "pif",
            "cpl",
            "msc",
            "gadget",
            "jar",
            "lnk",
            "elf",
            "appimage",
            "run",
            "out",
        ]
    ),
    "installer": frozenset(
        [
            "msi",
            "msp",
            "msix",
            "msixbundle",
            "appx",
            "appxbundle",
            "appinstaller",
            "dmg",
            "pkg",
            "mpkg",
            "deb",
            "rpm",
            "apk",
            "xapk",
            "aab",
            "ipa",
            "crx",
            "xpi",
            "snap",
            "flatpakref",
        ]
    ),
    "script": frozenset(
        [
            "bat",
            "cmd",
            "ps1",
            "psm1",
            "psd1",
            "vbs",
            "vbe",
            "jse",
            "wsf",
            "wsh",
            "hta",
            "sh",
            "bash",
            "zsh",
            "csh",
            "command",
            "scpt",
            "applescript",
            "reg",
        ]
    ),
    "archive": frozenset(
        [
            "zip",
            "7z",
            "rar",
            "tar",
            "gz",
            "tgz",
            "bz2",
            "tbz",
            "tbz2",
            "xz",
            "txz",
            "zst",
            "tzst",
            "lz",
            "lzma",
            "z",
            "cab",
            "iso",
            "img",
            "arj",
            "lzh",
            "ace",
        ]
    ),
}
_CONTENT_TYPES: dict[Kind, frozenset[str]] = {
    "executable": frozenset(
        {
            "application/x-msdownload",
            "application/x-msdos-program",
            "application/x-dosexec",
            "application/vnd.microsoft.portable-executable",
            "application/x-executable",
            "application/x-elf",
            "application/x-mach-binary",
            "application/java-archive",
            "application/x-java-archive",
        }
    ),
    "installer": frozenset(
        {
            "application/x-msi",
            "application/x-ms-installer",
            "application/x-ole-storage",
            "application/msix",
            "application/appx",
            "application/x-apple-diskimage",
            "application/vnd.apple.installer+xml",
            "application/x-newton-compatible-pkg",
            "application/x-debian-package",
            "application/vnd.debian.binary-package",
            "application/x-rpm",
            "application/x-redhat-package-manager",
            "application/vnd.android.package-archive",
            "application/x-chrome-extension",
            "application/x-xpinstall",
        }
    ),
    "script": frozenset(
        {
            "application/x-sh",
            "application/x-shellscript",
            "text/x-shellscript",
            "text/x-sh",
            "application/x-csh",
            "application/bat",
            "application/x-bat",
            "application/x-msdos-batch",
            "text/vbscript",
            "application/x-vbscript",
            "application/hta",
            "application/x-powershell",
        }
    ),
    "archive": frozenset(
        {
            "application/zip",
            "application/x-zip-compressed",
            "application/x-7z-compressed",
            "application/x-rar-compressed",
            "application/vnd.rar",
            "application/x-tar",
            "application/gzip",
            "application/x-gzip",
            "application/x-bzip2",
            "application/x-xz",
            "application/zstd",
            "application/vnd.ms-cab-compressed",
            "application/x-iso9660-image",
        }
    ),
}
# Zip containers that are documents, not archives (by file name).
_ZIP_DOCUMENTS = frozenset(
    ["docx", "xlsx", "pptx", "odt", "ods", "odp", "odg", "epub", "pages", "numbers", "key"]
)
_ZIP_INSTALLERS = frozenset(
    ["apk", "xapk", "aab", "ipa", "msix", "msixbundle", "appx", "appxbundle", "crx", "xpi"]
)

_MAGIC: tuple[tuple[int, bytes, Kind, str], ...] = (
    (0, b"MZ", "executable", "Windows executable"),
    (0, b"\x7fELF", "executable", "Linux executable (ELF)"),
    (0, b"\xfe\xed\xfa\xce", "executable", "macOS executable (Mach-O)"),
    (0, b"\xfe\xed\xfa\xcf", "executable", "macOS executable (Mach-O)"),
    (0, b"\xce\xfa\xed\xfe", "executable", "macOS executable (Mach-O)"),
    (0, b"\xcf\xfa\xed\xfe", "executable", "macOS executable (Mach-O)"),
    (0, b"\xca\xfe\xba\xbe", "executable", "macOS universal binary or Java class"),
    (0, b"#!", "script", "script (#!)"),
    (0, b"xar!", "installer", "macOS installer package"),
    (0, b"!<arch>\ndebian", "installer", "Debian package"),
    (0, b"\xed\xab\xee\xdb", "installer", "RPM package"),
    (0, b"Rar!\x1a\x07", "archive", "RAR archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "archive", "7-Zip archive"),
    (0, b"\x1f\x8b", "archive", "gzip archive"),
    (0, b"BZh", "archive", "bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "archive", "xz archive"),
    (0, b"\x28\xb5\x2f\xfd", "archive", "zstd archive"),
    (0, b"MSCF", "archive", "Windows cabinet archive"),
    (257, b"ustar", "archive", "tar archive"),
)
_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True, slots=True)
class Rules:
    """One group's download rules: kinds to block and the largest size allowed."""

    kinds: frozenset[Kind]
    max_bytes: int | None

    @property
    def active(self) -> bool:
        return bool(self.kinds) or self.max_bytes is not None

    @classmethod
    def of(cls, kinds: Iterable[str], max_mb: float | None) -> Rules:
        chosen = frozenset(k for k in KINDS if k in set(kinds))
        return cls(chosen, None if max_mb is None else int(max_mb * 1024 * 1024))


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a download is blocked: its kind (or ``too_large``) and what was seen."""

    kind: Kind | Literal["too_large"]
    what: str

    def describe(self) -> str:
        if self.kind == "too_large":
            return f"download too large: {self.what}"
        return f"download blocked ({self.kind}): {self.what}"


def extension_of(name: str | None) -> str:
    if not name:
        return ""
    base = name.rsplit("/", 1)[-1].strip().strip('"').rstrip(". ")
    return base.rpartition(".")[2].lower() if "." in base else ""


def filename_of(content_disposition: str | None, path: str) -> str:
    """The file name a browser would save: ``Content-Disposition`` first, else the URL path."""
    if content_disposition:
        msg = Message()
        msg["content-disposition"] = content_disposition
        name = msg.get_filename()
        if name:
            return name
    return unquote(path.split("?", 1)[0].rsplit("/", 1)[-1])


def kind_of_name(name: str) -> Kind | None:
    ext = extension_of(name)
    for kind in KINDS:
        if ext in _EXTENSIONS[kind]:
            return kind
    return None


def kind_of_content_type(content_type: str | None) -> Kind | None:
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    for kind in KINDS:
        if mime in _CONTENT_TYPES[kind]:
            return kind
    return None


def sniff(head: bytes, name: str = "") -> tuple[Kind, str] | None:
    """What the first bytes of a body say it is, if it is one of the kinds."""
    for offset, magic, kind, what in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind, what
    ext = extension_of(name)
    if head.startswith(_ZIP):
        if ext in _ZIP_DOCUMENTS:
            return None
        if ext in _ZIP_INSTALLERS:
            return "installer", f"installer package (.{ext})"
        if ext == "jar":
            return "executable", "Java program (.jar)"
        return "archive", "zip archive"
    if head.startswith(_OLE) and ext in ("msi", "msp"):
        return "installer", "Windows installer (MSI)"
    return None


def check_headers(
    rules: Rules,
    *,
    content_type: str | None,
    content_disposition: str | None,
    path: str,
    content_length: int | None,
) -> Verdict | None:
    """A block decided from the response headers alone, or None."""
    if (
        rules.max_bytes is not None
        and content_length is not None
        and (content_length > rules.max_bytes)
    ):
        return Verdict("too_large", f"{_mb(content_length)} is over {_mb(rules.max_bytes)}")
    kind = kind_of_content_type(content_type)
    if kind in rules.kinds:
        return Verdict(kind, f"content type {content_type}")
    name = filename_of(content_disposition, path)
    kind = kind_of_name(name)
    if kind in rules.kinds:
        return Verdict(kind, f"file name {name}")
    return None


def check_body(rules: Rules, head: bytes, name: str) -> Verdict | None:
    """A block decided from the first bytes of the (decoded) body, or None."""
    found = sniff(head, name)
    if found is not None and found[0] in rules.kinds:
        return Verdict(found[0], found[1])
    return None


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


class StreamGuard:
    """Sniffs and counts a streamed body; ``feed`` returns the bytes that may go on.

    It holds back the first ``SNIFF_BYTES`` (decoded if the body is gzip or
    deflate encoded) until it can tell what the body is. Once it blocks, it
    passes nothing more and calls ``on_block`` once with the verdict.
    """

    def __init__(
        self,
        rules: Rules,
        name: str,
        encoding: str | None,
        on_block: Callable[[Verdict], None],
    ) -> None:
        self.rules = rules
        self.name = name
        self.on_block = on_block
        self.count = 0
        self.verdict: Verdict | None = None
        self._held = bytearray()
        self._head = bytearray()
        self._sniffed = not rules.kinds
        encoding = (encoding or "identity").strip().lower()
        self._decoder: zlib._Decompress | None = None
        self._unsniffable = False
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding != "identity":
            self._unsniffable = True

    def _block(self, verdict: Verdict) -> list[bytes]:
        self.verdict = verdict
        self._held.clear()
        self.on_block(verdict)
        return []

    def _sniff(self, final: bool) -> Verdict | Literal["wait"] | None:
        if self._unsniffable:
            # The request allowed only gzip and deflate; a body we cannot decode cannot be checked.
            kind = sorted(self.rules.kinds)[0]
            return Verdict(kind, "a body in an encoding the filter cannot check")
        if len(self._head) < SNIFF_BYTES and not final:
            return "wait"
        return check_body(self.rules, bytes(self._head[:SNIFF_BYTES]), self.name)

    def feed(self, data: bytes) -> list[bytes]:
        """One chunk in (``b""`` at the end of the body), the chunks to forward out."""
        if self.verdict is not None:
            return []
        final = data == b""
        self.count += len(data)
        if self.rules.max_bytes is not None and self.count > self.rules.max_bytes:
            return self._block(
                Verdict("too_large", f"over {_mb(self.rules.max_bytes)} (counted while streaming)")
            )
        if self._sniffed:
            return [data] if data else []
        self._held += data
        if self._decoder is not None:
            need = SNIFF_BYTES - len(self._head)
            try:
                tail = self._decoder.unconsumed_tail
                self._head += self._decoder.decompress(tail + data, need)
            except zlib.error:
                self._unsniffable = True
        else:
            self._head += data
        outcome = self._sniff(final)
        if outcome == "wait":
            return []
        if outcome is not None:
            return self._block(outcome)
        self._sniffed = True
        out = bytes(self._held)
        self._held.clear()
        return [out] if out else []
