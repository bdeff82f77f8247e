"""The lookup interface every index keeps, and the in-memory index.

An index holds named lists (``ut1/adult``, ``iwf``, ``local/block``). Entries
are either a host, which matches that host and its subdomains on label
boundaries, or a host with a path, which matches URLs on that host or its
subdomains whose path starts with the entry's path on a segment boundary.
Hosts and paths given to ``match`` are already canonical (see ``normalise``).

The compiled, mmap-shared index of the lookup engine keeps this same
``Matcher`` protocol, so the policy never knows which one it talks to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Hit:
    """One list entry that matched: the list's name and the entry as listed."""

    list: str
    entry: str


NO_HITS: tuple[Hit, ...] = ()


class Matcher(Protocol):
    """What the decision needs from an index."""

    def match(self, host: str, path: str | None = None) -> tuple[Hit, ...]:
        """Every entry that matches; with ``path=None`` only host entries are consulted."""
        ...

    def has_paths(self, host: str) -> bool:
        """Whether any path entry sits on this host or a parent domain of it."""
        ...

    def counts(self) -> Mapping[str, int]:
        """Entries per list name."""
        ...


def host_suffixes(host: str) -> Iterator[str]:
    """``a.b.c`` → ``a.b.c``, ``b.c``, ``c``: the host and each parent on label boundaries."""
    yield host
    start = host.find(".")
    while start != -1:
        yield host[start + 1 :]
        start = host.find(".", start + 1)


# What may follow an entry's path in a path it matches: a new segment, a query or
# parameters, or a file extension. "." is there because UT1 / squidGuard lists write pages
# without their extension: squidGuard matches url entries as plain string prefixes, and in
# the UT1 sample 128 entries are listed both as ".../page" and ".../page.html" (static
# hosts serve both). A plain prefix would also let ".../it" (1,472 entries end in a
# segment of 3 characters or fewer) block ".../itinerary", so letters, digits, "-" and "_"
# still end no match. See README "Category lists".
_BOUNDARY = "/?#;."


def path_matches(entry_path: str, path: str) -> bool:
    """Whether ``path`` starts with ``entry_path`` on a segment or extension boundary.

    ``/dir/page`` matches ``/dir/page``, ``/dir/page/x``, ``/dir/page?q`` and
    ``/dir/page.html``, not ``/dir/pages`` or ``/dir/page2``.
    """
    if not path.startswith(entry_path):
        return False
    if len(path) == len(entry_path) or entry_path.endswith("/"):
        return True
    return path[len(entry_path)] in _BOUNDARY


def path_prefixes(path: str) -> Iterator[str]:
    """Every entry path that ``path_matches`` would accept for ``path``, shortest first.

    ``/a/b.html?q`` → ``/``, ``/a``, ``/a/``, ``/a/b``, ``/a/b.html``, ``/a/b.html?q``.
    A hashed list can only be matched by hashing each candidate, so this mirrors
    ``path_matches`` exactly.
    """
    end = len(path)
    for i in range(1, end):
        if path[i - 1] == "/" or path[i] in _BOUNDARY:
            yield path[:i]
    if end:
        yield path


def hash_entry(entry: str) -> bytes:
    """The SHA-256 of a canonical entry (``host`` or ``host/path``): what hashed lists hold."""
    return hashlib.sha256(entry.encode("utf-8")).digest()


def hashed_hit_entry(digest: bytes) -> str:
    """How a hashed entry is named in a ``Hit``: never the URL, only its hash."""
    return "sha256:" + digest.hex()


def split_entry(entry: str) -> tuple[str, str | None]:
    """``host/path`` → (host, "/path"); a bare host → (host, None)."""
    slash = entry.find("/")
    if slash == -1:
        return entry, None
    return entry[:slash], entry[slash:]


class MemoryIndex:
    """A dict-of-suffixes index: simple, and the reference the compiled one is checked against."""

    def __init__(
        self,
        hosts: Mapping[str, tuple[Hit, ...]],
        paths: Mapping[str, tuple[tuple[str, Hit], ...]],
        counts: Mapping[str, int],
        hashed: Mapping[bytes, tuple[Hit, ...]] | None = None,
    ) -> None:
        self._hosts = dict(hosts)
        self._paths = dict(paths)
        self._counts = dict(counts)
        self._hashed = dict(hashed or {})

    def match(self, host: str, path: str | None = None) -> tuple[Hit, ...]:
        found: tuple[Hit, ...] = NO_HITS
        for suffix in host_suffixes(host):
            hits = self._hosts.get(suffix)
            if hits is not None:
                found = found + hits
            if path is not None:
                entries = self._paths.get(suffix)
                if entries is not None:
                    found = found + tuple(hit for p, hit in entries if path_matches(p, path))
        if self._hashed:
            found = found + match_hashed(self._hashed.get, host, path)
        return found

    def has_paths(self, host: str) -> bool:
        return any(suffix in self._paths for suffix in host_suffixes(host))

    def counts(self) -> Mapping[str, int]:
        return self._counts


def match_hashed(
    lookup: Callable[[bytes], tuple[Hit, ...] | None], host: str, path: str | None
) -> tuple[Hit, ...]:
    """Hits of hashed lists: hash each candidate entry (host suffix, then its path prefixes)."""
    found: tuple[Hit, ...] = NO_HITS
    sha = hashlib.sha256
    for suffix in host_suffixes(host):
        hits = lookup(sha(suffix.encode()).digest())
        if hits is not None:
            found = found + hits
        if path is not None:
            for prefix in path_prefixes(path):
                hits = lookup(sha((suffix + prefix).encode()).digest())
                if hits is not None:
                    found = found + hits
    return found


class IndexBuilder:
    """Collect entries list by list, then ``freeze()`` into a ``MemoryIndex``."""

    def __init__(self) -> None:
        self._hosts: dict[str, dict[Hit, None]] = {}
        self._paths: dict[str, dict[tuple[str, Hit], None]] = {}
        self._hashed: dict[bytes, dict[Hit, None]] = {}
        self._counts: dict[str, int] = {}

    def declare(self, list_name: str) -> None:
        """Make a list known even when it turns out to hold no entries."""
        self._counts.setdefault(list_name, 0)

    def add(self, list_name: str, entry: str) -> None:
        """Add one canonical entry (``host`` or ``host/path``) to a list."""
        host, path = split_entry(entry)
        hit = Hit(list_name, entry)
        if path is None:
            bucket = self._hosts.setdefault(host, {})
            if hit in bucket:
                return
            bucket[hit] = None
        else:
            pbucket = self._paths.setdefault(host, {})
            if (path, hit) in pbucket:
                return
            pbucket[(path, hit)] = None
        self._counts[list_name] = self._counts.get(list_name, 0) + 1

    def add_all(self, list_name: str, entries: Iterable[str]) -> None:
        self.declare(list_name)
        for entry in entries:
            self.add(list_name, entry)

    def add_many(self, list_name: str, entries: Iterable[str]) -> None:
        """Add canonical entries to a list (the readers hand over a file at a time)."""
        self.add_all(list_name, entries)

    def add_hashed(self, list_name: str, digest: bytes, host: str | None = None) -> None:
        """Add the SHA-256 of a canonical entry (see ``hash_entry``) to a list."""
        hit = Hit(list_name, hashed_hit_entry(digest))
        bucket = self._hashed.setdefault(digest, {})
        if hit in bucket:
            return
        bucket[hit] = None
        self._counts[list_name] = self._counts.get(list_name, 0) + 1

    def alias(self, alias_name: str, list_name: str) -> None:
        """Make ``alias_name`` another name of ``list_name``: every entry hits under both."""
        for hosts in self._hosts.values():
            for hit in [h for h in hosts if h.list == list_name]:
                hosts[Hit(alias_name, hit.entry)] = None
        for paths in self._paths.values():
            for p, hit in [(p, h) for p, h in paths if h.list == list_name]:
                paths[(p, Hit(alias_name, hit.entry))] = None
        for hashed in self._hashed.values():
            for hit in [h for h in hashed if h.list == list_name]:
                hashed[Hit(alias_name, hit.entry)] = None
        self._counts[alias_name] = self._counts.get(list_name, 0)

    def freeze(self) -> MemoryIndex:
        return MemoryIndex(
            {h: tuple(b) for h, b in self._hosts.items()},
            {h: tuple(b) for h, b in self._paths.items()},
            self._counts,
            {d: tuple(b) for d, b in self._hashed.items()},
        )


class CombinedMatcher:
    """Several indexes answered as one (the compiled lists plus the school's local entries)."""

    def __init__(self, *parts: Matcher) -> None:
        self._parts = parts

    def match(self, host: str, path: str | None = None) -> tuple[Hit, ...]:
        found: tuple[Hit, ...] = NO_HITS
        for part in self._parts:
            hits = part.match(host, path)
            if hits:
                found = found + hits
        return found

    def has_paths(self, host: str) -> bool:
        return any(part.has_paths(host) for part in self._parts)

    def counts(self) -> Mapping[str, int]:
        merged: dict[str, int] = {}
        for part in self._parts:
            merged.update(part.counts())
        return merged
