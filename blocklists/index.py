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

from collections.abc import Iterable, Iterator, Mapping
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


def path_matches(entry_path: str, path: str) -> bool:
    """Whether ``path`` starts with ``entry_path`` on a path-segment boundary."""
    if not path.startswith(entry_path):
        return False
    if len(path) == len(entry_path) or entry_path.endswith("/"):
        return True
    return path[len(entry_path)] in "/?#;"


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
    ) -> None:
        self._hosts = dict(hosts)
        self._paths = dict(paths)
        self._counts = dict(counts)

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
        return found

    def has_paths(self, host: str) -> bool:
        return any(suffix in self._paths for suffix in host_suffixes(host))

    def counts(self) -> Mapping[str, int]:
        return self._counts


class IndexBuilder:
    """Collect entries list by list, then ``freeze()`` into a ``MemoryIndex``."""

    def __init__(self) -> None:
        self._hosts: dict[str, dict[Hit, None]] = {}
        self._paths: dict[str, dict[tuple[str, Hit], None]] = {}
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

    def freeze(self) -> MemoryIndex:
        return MemoryIndex(
            {h: tuple(b) for h, b in self._hosts.items()},
            {h: tuple(b) for h, b in self._paths.items()},
            self._counts,
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
