"""List formats: read list sources into an index builder.

Four formats, each read line by line into a ``ListSink`` (``IndexBuilder``
for the in-memory reference, ``CompiledBuilder`` for the compiled index):

``ut1``
    The UT1 / squidGuard layout: a directory, or a ``.tar.gz`` of one, with a
    folder per category holding ``domains`` and/or ``urls`` files; every
    category becomes list ``SOURCE/CATEGORY``. Other files (``expressions``,
    ``usage``) are ignored: regex lists are not supported.

    *Aliases*: UT1 ships some categories as symlinks to others (``porn ->
    adult``); a checkout without symlink support turns them into small files
    holding the target's name. Both kinds are read **once** and the category is
    **named by both names**: a hit on an ``adult`` entry reports ``ut1/adult``
    and ``ut1/porn``, and ``counts()`` lists both. A policy may then name
    either, and the index stores the entries once (a list-set holds both names).

    squidGuard strips a leading ``www``/``web``/``ftp`` (with digits) and ``.``
    from the *request*, never from a ``urls`` entry, so its ``example.com/x``
    covers ``www.example.com/x``; a path entry here matches the host and all
    its subdomains, which covers that already. A ``www.`` entry squidGuard
    matches only on that very host (through the unstripped URL); here the
    ``www.`` is dropped from ``urls`` entries, so it also covers the bare
    domain's page, which is the same page: broader, never narrower (none of
    the 12,582 path entries of the UT1 sample starts with ``www.``). In
    ``domains`` a ``www.`` entry is kept as listed; when its parent is listed
    too, the duplicate costs one extra hit, no more. A path entry without a
    trailing ``/`` also covers the page with an extension (``.../page``
    matches ``.../page.html``; ``index.path_matches`` says why).
``plain``
    One host or ``host/path`` per line.
``hosts``
    Hosts-file lines, ``0.0.0.0 host [host…]`` (any address first); ``localhost``
    and the like are skipped.
``iwf``
    One URL per line, or one hex SHA-256 of a canonical entry per line
    (see ``index.hash_entry``). Every IWF entry is stored **hashed**, also the
    ones given as plain URLs, so the compiled index never holds an IWF URL;
    a lookup hashes the candidate entries of the URL (each host suffix, and
    each path prefix on a segment boundary) instead. For a plain line the
    reader also hands over its host, which the compiled index keeps as a
    hash-keyed flag, so only lookups on those hosts pay for the hashing (about
    0.5 µs per candidate); a list with any hash-only line costs every lookup
    that (tens of µs for a long URL), since its hosts are unknown.

Everywhere: ``#`` comments and blank lines are skipped; entries go through
``normalise_entry`` (IDN to punycode, IPv4 literals, case, dots), except that
lines which are already canonical lower-case ASCII host names skip it (a test
checks that the shortcut agrees with ``normalise_entry`` on the sample).
Bad lines are counted and reported as ``FILE:LINE: reason``; a source with
more than ``max_bad`` bad lines is rejected whole rather than half-loaded.
"""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from blocklists.index import hash_entry
from blocklists.normalise import BadURL, normalise_entry

FORMATS = ("ut1", "plain", "hosts", "iwf")
DEFAULT_MAX_BAD = 1000
_REPORTED_BAD = 20  # bad lines kept verbatim in a report; the rest are only counted
_UT1_FILES = ("domains", "urls")

# An ASCII host that normalise_entry would return unchanged: lower-case LDH labels, the
# last one starting with a letter (so no IPv4 in odd notations), no punycode (which the
# normaliser checks). Skipping the normaliser for these makes compiling 3.4M entries fast.
_CANONICAL_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
).fullmatch
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}").fullmatch
_HOSTS_SKIP = frozenset(
    {"localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0", "127.0.0.1"}
)


class ListError(Exception):
    """A list source that cannot be used; the message is one line naming the file."""


class ListSink(Protocol):
    """Where readers put entries: ``IndexBuilder`` or ``CompiledBuilder``."""

    def declare(self, list_name: str) -> None: ...

    def add(self, list_name: str, entry: str) -> None: ...

    def add_many(self, list_name: str, entries: Iterable[str]) -> None: ...

    def add_hashed(self, list_name: str, digest: bytes, host: str | None = None) -> None: ...

    def alias(self, alias_name: str, list_name: str) -> None: ...


@dataclass
class SourceReport:
    """What reading one source found: lines accepted per list, bad lines, aliases."""

    name: str
    entries: dict[str, int] = field(default_factory=dict)
    bad_lines: list[str] = field(default_factory=list)
    bad_count: int = 0
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Entries read, not counting aliases twice."""
        return sum(n for name, n in self.entries.items() if name not in self.aliases)


def canonical_entry(line: str) -> str:
    """The canonical form of one list line; raises ``BadURL``."""
    if _CANONICAL_HOST(line) and "xn--" not in line:
        return line
    return normalise_entry(line)


class _Reader:
    """Reads files of one source, counting bad lines against the source's bound."""

    def __init__(self, report: SourceReport, sink: ListSink, max_bad: int) -> None:
        self.report = report
        self.sink = sink
        self.max_bad = max_bad

    def bad(self, where: str, number: int, reason: str) -> None:
        self.report.bad_count += 1
        if len(self.report.bad_lines) < _REPORTED_BAD:
            self.report.bad_lines.append(f"{where}:{number}: {reason}")
        if self.report.bad_count > self.max_bad:
            raise ListError(
                f"{where}:{number}: more than {self.max_bad} bad lines in source "
                f"{self.report.name!r}; rejected"
            )

    def lines(self, handle: IO[bytes], where: str) -> Iterator[tuple[int, str]]:
        data = handle.read()
        try:
            # one decode per file: per-line decoding was a fifth of compiling 3.4M entries
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = []
            for number, raw in enumerate(data.split(b"\n"), 1):
                try:
                    lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    self.bad(where, number, "not UTF-8")
                    lines.append("")
        for number, raw_line in enumerate(lines, 1):
            line = raw_line.strip()
            if line and line[0] != "#":
                yield number, line

    def entries(self, handle: IO[bytes], where: str, list_name: str, *, urls: bool) -> None:
        batch: list[str] = []
        add = batch.append
        canonical = _CANONICAL_HOST
        for number, line in self.lines(handle, where):
            if canonical(line) and "xn--" not in line:
                add(line)  # the common case, kept short: 3.4M lines must compile in seconds
                continue
            if " " in line or "\t" in line:
                self.bad(where, number, "spaces in an entry")
                continue
            try:
                entry = normalise_entry(line)
            except BadURL as exc:
                self.bad(where, number, str(exc) or "not a host or URL")
                continue
            if urls and entry.startswith("www.") and "/" in entry:
                entry = entry[4:]
            add(entry)
        self.sink.add_many(list_name, batch)
        self.report.entries[list_name] = self.report.entries.get(list_name, 0) + len(batch)

    def hosts_file(self, handle: IO[bytes], where: str, list_name: str) -> None:
        count = 0
        for number, line in self.lines(handle, where):
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                self.bad(where, number, "expected 'ADDRESS HOST…'")
                continue
            for name in fields[1:]:
                if name.lower() in _HOSTS_SKIP:
                    continue
                try:
                    entry = canonical_entry(name)
                except BadURL as exc:
                    self.bad(where, number, str(exc) or "not a host")
                    continue
                if "/" in entry:
                    self.bad(where, number, "a hosts file names hosts, not URLs")
                    continue
                self.sink.add(list_name, entry)
                count += 1
        self.report.entries[list_name] = self.report.entries.get(list_name, 0) + count

    def iwf(self, handle: IO[bytes], where: str, list_name: str) -> None:
        count = 0
        for number, line in self.lines(handle, where):
            host = None
            if _HEX_SHA256(line):
                digest = bytes.fromhex(line)
            else:
                try:
                    entry = canonical_entry(line)
                except BadURL as exc:
                    # the reason may quote the URL: an IWF report must not
                    self.bad(where, number, f"not a URL or SHA-256 ({type(exc).__name__})")
                    continue
                digest = hash_entry(entry)
                host = entry.split("/", 1)[0]
            self.sink.add_hashed(list_name, digest, host)
            count += 1
        self.report.entries[list_name] = self.report.entries.get(list_name, 0) + count


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ListError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_source(
    fmt: str, path: Path, source: str, sink: ListSink, *, max_bad: int = DEFAULT_MAX_BAD
) -> SourceReport:
    """Read one source of format ``fmt`` at ``path`` into ``sink``; raises ``ListError``."""
    if fmt == "ut1":
        if path.is_file() and tarfile.is_tarfile(path):
            return read_ut1_tar(path, source, sink, max_bad=max_bad)
        return read_ut1(path, source, sink, max_bad=max_bad)
    if fmt not in FORMATS:
        raise ListError(f"source {source!r}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if not path.is_file():
        raise ListError(f"{path}: list source {source!r} not found")
    report = SourceReport(source)
    reader = _Reader(report, sink, max_bad)
    sink.declare(source)
    report.entries[source] = 0
    with _open(path) as handle:
        if fmt == "plain":
            reader.entries(handle, str(path), source, urls=False)
        elif fmt == "hosts":
            reader.hosts_file(handle, str(path), source)
        else:
            reader.iwf(handle, str(path), source)
    return report


def _alias_target(entry: Path, root: Path) -> str | None:
    """The category an alias entry (a symlink, or a file naming a sibling) points to."""
    if entry.is_symlink():
        target = Path(os.path.realpath(entry))
        if target.parent == Path(os.path.realpath(root)) and target.is_dir():
            return target.name
        return None
    if entry.is_file() and entry.stat().st_size < 256:
        name = entry.read_text("utf-8", "replace").strip()
        if name and "/" not in name and (root / name).is_dir():
            return name
    return None


def read_ut1(
    root: Path, source: str, sink: ListSink, *, max_bad: int = DEFAULT_MAX_BAD
) -> SourceReport:
    """Read a UT1 / squidGuard tree: every category folder becomes list ``SOURCE/CATEGORY``."""
    if not root.is_dir():
        raise ListError(f"{root}: list source {source!r} is not a directory")
    report = SourceReport(source)
    reader = _Reader(report, sink, max_bad)
    aliases: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        target = _alias_target(entry, root)
        if target is not None:
            aliases[entry.name] = target
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue  # links out of the tree are not followed
        list_name = f"{source}/{entry.name}"
        sink.declare(list_name)
        report.entries.setdefault(list_name, 0)
        for kind in _UT1_FILES:
            file = entry / kind
            if file.is_file():
                with _open(file) as handle:
                    reader.entries(handle, str(file), list_name, urls=kind == "urls")
    _apply_aliases(report, sink, source, aliases)
    return report


def _apply_aliases(
    report: SourceReport, sink: ListSink, source: str, aliases: dict[str, str]
) -> None:
    for alias, first in sorted(aliases.items()):
        # an alias of an alias resolves to the folder it finally names
        target, seen = first, {alias}
        while target in aliases and target not in seen:
            seen.add(target)
            target = aliases[target]
        target_name = f"{source}/{target}"
        if target_name not in report.entries:
            continue
        alias_name = f"{source}/{alias}"
        sink.alias(alias_name, target_name)
        report.aliases[alias_name] = target_name
        report.entries[alias_name] = report.entries[target_name]


def read_ut1_tar(
    archive: Path, source: str, sink: ListSink, *, max_bad: int = DEFAULT_MAX_BAD
) -> SourceReport:
    """Read a UT1 tree straight from a ``.tar.gz`` (UT1 ships ``blacklists.tar.gz``).

    The category folders are the ones holding ``domains`` or ``urls`` files, wherever
    the archive roots them; symlinked folders become aliases. A truncated or corrupt
    archive raises ``ListError``.
    """
    report = SourceReport(source)
    reader = _Reader(report, sink, max_bad)
    aliases: dict[str, str] = {}
    declared: set[str] = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("/").split("/")
                if member.issym() and len(parts) >= 2:
                    target = member.linkname.rstrip("/")
                    if "/" not in target:
                        aliases[parts[-1]] = target
                    continue
                if not member.isfile() or parts[-1] not in _UT1_FILES or len(parts) < 2:
                    continue
                category = parts[-2]
                list_name = f"{source}/{category}"
                if list_name not in declared:
                    declared.add(list_name)
                    sink.declare(list_name)
                    report.entries.setdefault(list_name, 0)
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                where = f"{archive}!{member.name}"
                reader.entries(handle, where, list_name, urls=parts[-1] == "urls")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ListError(f"{archive}: not a readable tar archive (truncated?): {exc}") from None
    if not declared:
        raise ListError(f"{archive}: no category folders with domains or urls files")
    _apply_aliases(report, sink, source, aliases)
    return report
