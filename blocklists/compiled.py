"""The compiled index: every list in one file, opened with mmap and shared by every worker.

Build it with ``CompiledBuilder`` (a ``ListSink``: the readers in ``formats``
feed it), ``write()`` it (temporary name, fsync, rename), and open it with
``CompiledIndex.open()``, which checks the header and checksum. It answers the
same ``Matcher`` protocol, with the same hits, as ``MemoryIndex``.

File layout (all integers little-endian)::

    header   "SGLIDX\\r\\n" u32 version, u32 meta_len, u64 body_len, u64 xxh3_64(body)
    body     meta (JSON: list names, list-sets, counts, sources, section offsets), padded to 8
             sections, each 8-aligned:
             host.keys    u64[n]  sorted xxh3_64 of each canonical host key
             host.dir     u32[2^b+1] host.dir[i] = first key whose top b bits are >= i
             host.vals    u32[n]  record number of each key
             host.filter  u8[2^f] slot = top f bits of a key's hash: 0 empty, a 7-bit
                          fingerprint | 0x80 for one key, 1 for several
             base.filter  the same for the last two labels of every key ("example.com")
             recs         u32[2*r] (list-set of the host entries or 0, path block + 1 or 0)
             paths        per host with path entries: u32 count, then (u32 set, u32 len, path)
             hash.*       keys/dir/vals for hashed (IWF) lists, keyed by the first 8 bytes
                          of the SHA-256; hash.digests holds the 32 bytes to confirm a hit

Why this structure: in CPython the cost of a lookup is the number of bytecodes
run per host suffix, not the memory layout, so the structure is the one that
ends a miss in the fewest Python operations while staying in one shared mapping.
Per suffix: one xxh3 call on a bytes slice, one byte read of the filter, one
compare (two thirds of the slots are empty). Only a filter pass (about 6%) reads
the sorted key table through its bucket directory. Before that, the base filter
ends a three-or-more-label host whose last two labels sit above no key after
one probe (1.6 probes per lookup instead of 2.3 on ../shared/traffic).
Measured with ``make bench`` (CPython 3.13 without PGO, one core, 135k lookups):

    structure, sample lists (661k entries)                     cold lookups/s
    sorted u64 keys + bucket directory                         ~750k
    + bit Bloom filter (5 int operations per test)             ~755k
    + byte fingerprint filter (2 operations)                   ~805k
    + base-domain filter                                       ~915k
    + path entries parsed once per host, matched by prefix     ~920k (path hosts 2x faster)
    Python dict walk (125-650 MB private per process, 1.5-10 s load)   ~0.9-1.3M
    marisa-trie prefixes() (peers/RESULTS.md, 1.1M entries)    ~375k

A binary search over sorted strings needs 22 Python-level steps per probe at
3.4M keys and was not pursued. At 3.4M keys the file is 66 MB (8 key + 2
directory + 4 value + about 4 filter bytes per key, plus the lists' path entries),
loads in a few ms (map + checksum), and stores no host strings: the entry a hit
reports is the suffix that was looked up. Two hosts share a 64-bit hash with
probability about n / 2^64 per probe (3.4M keys: 2e-13); two *entries* sharing
one is detected at compile time and fails the build.

A miss allocates no result: it returns the shared ``NO_HITS``. CPython still
makes the short-lived ``bytes`` of the host and the hash ``int`` (freed at once),
and the first lookup of a host stores its answer (``NO_HITS`` for a miss) in the
bounded per-process memo described on ``CompiledIndex``.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any, Literal

import xxhash

from blocklists.index import NO_HITS, Hit, hashed_hit_entry, path_prefixes

MAGIC = b"SGLIDX\r\n"
VERSION = 2  # 2: keys from UTS #46 IDN (t14-hosts; was IDNA2003): old indexes rebuild
_HEADER = struct.Struct("<8sIIQQ")
_PATH_ENTRY = struct.Struct("<II")
_xxh = xxhash.xxh3_64_intdigest
# Ends a memoised answer when the host (or a parent) has path entries: the answer then
# depends on the path. Compared by identity, never shown.
_PATHS = Hit("", "")
# Ends it when, besides, the host (or a parent) is the host of a hashed entry.
_HASHED = Hit("", "#")
_HASHED_FLAG = 1 << 31  # in a record's list-set field: hashed entries sit on this host
_PATH_MEMO = 4096  # hosts with path entries whose entries are kept parsed, per process
_Layout = tuple[tuple[tuple[Hit, ...], dict[str, tuple[Hit, ...]]], ...]


class IndexFormatError(Exception):
    """A compiled index file that cannot be used (missing, wrong version, corrupt)."""


def _bits_for(n: int) -> int:
    """Directory size: about two keys per bucket (consulted only when the filter passes)."""
    return max(4, n.bit_length() - 1)


def _filter_bits_for(n: int) -> int:
    """Filter slots: 2 to 4 per key, so about a third of the slots are taken."""
    return max(10, n.bit_length() + 1)


_MANY = 1  # a filter slot shared by several keys: always look in the table


def _filter(keys: list[int], bits: int) -> bytearray:
    """One byte per slot (the top ``bits`` of the hash): 0 empty, a 7-bit fingerprint
    with the high bit set when one key sits there, ``_MANY`` when several do."""
    slots = bytearray(1 << bits)
    shift = 64 - bits
    for k in keys:
        slot = k >> shift
        mark = k & 0x7F | 0x80
        old = slots[slot]
        # the same key twice (bases repeat) keeps its mark; two different keys give _MANY
        # unless their fingerprints agree, which still lets both through: no false negative
        slots[slot] = mark if old in (0, mark) else _MANY
    return slots


def _pad(buf: bytearray) -> None:
    buf.extend(b"\0" * (-len(buf) % 8))


def _table(keys: list[int]) -> tuple[array[int], array[int], int]:
    """Sorted keys (u64), bucket directory (u32) and bit count for a list of sorted keys."""
    bits = _bits_for(len(keys))
    shift = 64 - bits
    sizes = [0] * ((1 << bits) + 1)
    for k in keys:
        sizes[(k >> shift) + 1] += 1
    return array("Q", keys), array("I", accumulate(sizes)), bits


def _filters(keys: list[int], base_keys: list[int]) -> tuple[int, bytearray, int, bytearray]:
    """The key filter, and the "base" filter: the hashes of the last two labels of every
    key that has two or more, so that a host with no key under its base costs one probe,
    not one per label (measured on the traffic: 1.6 probes per lookup instead of 2.3)."""
    filter_bits = _filter_bits_for(len(keys))
    base_bits = _filter_bits_for(len(base_keys))
    return filter_bits, _filter(keys, filter_bits), base_bits, _filter(base_keys, base_bits)


class CompiledBuilder:
    """Collects entries (a ``ListSink``), then writes the compiled index file."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[list[str]] = []  # list id -> its name, then its aliases
        self._counts: dict[str, int] = {}
        self._hosts: dict[str, int] = {}  # canonical host -> bit mask of list ids
        self._paths: dict[str, dict[str, int]] = {}  # host -> path -> mask
        self._hashed: dict[bytes, int] = {}  # sha256 -> mask
        self._hashed_hosts: set[str] = set()  # hosts of hashed entries read as plain URLs
        self._opaque = 0  # hashed entries read as hashes: their hosts are unknown
        self.sources: dict[str, Any] = {}

    def declare(self, list_name: str) -> None:
        if list_name not in self._ids:
            self._ids[list_name] = len(self._names)
            self._names.append([list_name])
            self._counts[list_name] = 0

    def _bit(self, list_name: str) -> int:
        self.declare(list_name)
        return 1 << self._ids[list_name]

    def add(self, list_name: str, entry: str) -> None:
        bit = self._bit(list_name)
        slash = entry.find("/")
        if slash == -1:
            old = self._hosts.get(entry, 0)
            if old & bit:
                return
            self._hosts[entry] = old | bit
        else:
            paths = self._paths.setdefault(entry[:slash], {})
            path = entry[slash:]
            old = paths.get(path, 0)
            if old & bit:
                return
            paths[path] = old | bit
        self._counts[list_name] += 1

    def add_many(self, list_name: str, entries: Iterable[str]) -> None:
        """``add`` for a file's worth of entries; host entries in a tight loop."""
        bit = self._bit(list_name)
        hosts = self._hosts
        added = 0
        for entry in entries:
            if "/" in entry:
                self.add(list_name, entry)
                continue
            old = hosts.get(entry, 0)
            if not old & bit:
                hosts[entry] = old | bit
                added += 1
        self._counts[list_name] += added

    def add_hashed(self, list_name: str, digest: bytes, host: str | None = None) -> None:
        """Add a hashed entry; ``host`` when the reader knew it (a plain IWF line).

        While every hashed entry's host is known, the hosts go into the host table
        (as hashes, like every key) flagged "hashed entries here", and only lookups
        of those hosts hash their candidates. One entry known only by its hash
        (an opaque line) makes every lookup hash its candidates.
        """
        bit = self._bit(list_name)
        if host is None:
            self._opaque += 1
        else:
            self._hashed_hosts.add(host)
        old = self._hashed.get(digest, 0)
        if old & bit:
            return
        self._hashed[digest] = old | bit
        self._counts[list_name] += 1

    def alias(self, alias_name: str, list_name: str) -> None:
        self._names[self._ids[list_name]].append(alias_name)
        self._counts[alias_name] = self._counts[list_name]

    def counts(self) -> Mapping[str, int]:
        return self._counts

    def write(self, path: Path, *, started: float | None = None) -> None:
        """Write the index to ``path`` atomically (temporary file, fsync, rename).

        ``started`` is the ``perf_counter()`` when reading began, so the recorded
        compile time covers the whole build.
        """
        started = time.perf_counter() if started is None else started
        recs = _Records()
        flagged = self._hashed_hosts if not self._opaque else set()
        packed, bases, min_labels = _pack_hosts(self._hosts, self._paths, flagged, recs)
        packed.sort()
        keys = [v >> 32 for v in packed]
        for a, b in pairwise(keys):
            if a == b:
                raise IndexFormatError("two entries share a 64-bit hash; cannot compile")
        host_tab = _table(keys)
        filter_bits, slots, base_bits, base_slots = _filters(keys, bases)
        host_vals = array("I", [v & 0xFFFFFFFF for v in packed])
        del packed, keys, bases

        digests = sorted(self._hashed)
        hash_tab = _table([int.from_bytes(d[:8], "big") for d in digests])
        hash_vals = array("I", (recs.set_id(self._hashed[d]) for d in digests))

        sections: list[tuple[str, bytes | array[int]]] = [
            ("host.keys", host_tab[0]),
            ("host.dir", host_tab[1]),
            ("host.vals", host_vals),
            ("host.filter", bytes(slots)),
            ("base.filter", bytes(base_slots)),
            ("recs", array("I", recs.flat)),
            ("paths", bytes(recs.paths)),
            ("hash.keys", hash_tab[0]),
            ("hash.dir", hash_tab[1]),
            ("hash.vals", hash_vals),
            ("hash.digests", b"".join(digests)),
        ]
        meta: dict[str, Any] = {
            "version": VERSION,
            "hash": "xxh3_64",
            "built_at": time.time(),
            "lists": self._names,
            "sets": recs.set_lists,
            "counts": self._counts,
            "sources": self.sources,
            "min_labels": min_labels,
            "host_bits": host_tab[2],
            "hash_bits": hash_tab[2],
            "filter_bits": filter_bits,
            "base_bits": base_bits,
            "keys": len(host_tab[0]),
            "hashed": len(digests),
            "hashed_everywhere": self._opaque > 0,
        }
        _write_file(path, meta, sections, started)


class _Records:
    """List-sets (distinct combinations of lists) and records (list-set, path block)."""

    def __init__(self) -> None:
        self.sets: dict[int, int] = {0: 0}
        self.set_lists: list[list[int]] = [[]]
        self.records: dict[tuple[int, int], int] = {}
        self.flat: list[int] = []
        self.paths = bytearray()

    def set_id(self, mask: int) -> int:
        found = self.sets.get(mask)
        if found is None:
            found = self.sets[mask] = len(self.set_lists)
            self.set_lists.append([i for i in range(mask.bit_length()) if mask >> i & 1])
        return found

    def record(self, host_set: int, path_block: int) -> int:
        key = (host_set, path_block)
        found = self.records.get(key)
        if found is None:
            found = self.records[key] = len(self.flat) // 2
            self.flat.extend(key)
        return found

    def path_block(self, paths: dict[str, int]) -> int:
        """Append a host's path entries; the block's offset + 1."""
        block = len(self.paths) + 1
        self.paths += struct.pack("<I", len(paths))
        for p, mask in paths.items():
            raw = p.encode()
            self.paths += _PATH_ENTRY.pack(self.set_id(mask), len(raw)) + raw
        _pad(self.paths)
        return block


def _pack_hosts(
    hosts: dict[str, int], paths: dict[str, dict[str, int]], flagged: set[str], recs: _Records
) -> tuple[list[int], list[int], int]:
    """(hash << 32 | record) per key, the hashes of the keys' bases (repeating), the
    fewest labels. Hosts in ``flagged`` get ``_HASHED_FLAG`` in their list-set field."""
    packed: list[int] = []
    bases: list[int] = []
    fewest_dots = 255
    rec_of_mask: dict[int, int] = {}  # hosts without path entries share a few records
    for host, mask in hosts.items():
        if host in paths:
            continue
        flag = host in flagged
        rec = rec_of_mask.get(mask * 2 + flag)
        if rec is None:
            rec = recs.record(recs.set_id(mask) | (_HASHED_FLAG if flag else 0), 0)
            rec_of_mask[mask * 2 + flag] = rec
        raw = host.encode()
        packed.append(_xxh(raw) << 32 | rec)
        dots = raw.count(b".")
        fewest_dots = min(fewest_dots, dots)
        if dots > 1:
            raw = raw[raw.rfind(b".", 0, raw.rfind(b".")) + 1 :]
        if dots:
            bases.append(_xxh(raw))
    others = [(h, hosts.get(h, 0), e) for h, e in paths.items()]
    others += [(h, 0, {}) for h in flagged if h not in hosts and h not in paths]
    for host, mask, entries in others:
        host_set = recs.set_id(mask) if mask else 0
        if host in flagged:
            host_set |= _HASHED_FLAG
        rec = recs.record(host_set, recs.path_block(entries) if entries else 0)
        packed.append(_xxh(host.encode()) << 32 | rec)
        fewest_dots = min(fewest_dots, host.count("."))
        if "." in host:
            bases.append(_xxh(_base(host)))
    return packed, bases, fewest_dots + 1 if packed else 1


def _write_file(
    path: Path,
    meta: dict[str, Any],
    sections: list[tuple[str, bytes | array[int]]],
    started: float,
) -> None:
    """Lay out the sections after the meta, checksum the body, write to a temporary name, rename."""
    offset = 0
    layout: dict[str, list[int]] = {}
    for name, data in sections:
        size = len(data) * (data.itemsize if isinstance(data, array) else 1)
        layout[name] = [offset, size]
        offset += size + (-size % 8)
    meta["sections"] = layout
    meta["compile_seconds"] = round(time.perf_counter() - started, 3)
    meta_raw = json.dumps(meta, separators=(",", ":")).encode()
    meta_raw += b" " * (-(len(meta_raw) + _HEADER.size) % 8)

    body = bytearray(meta_raw)
    for _, data in sections:
        body += data.tobytes() if isinstance(data, array) else data
        _pad(body)
    checksum = xxhash.xxh3_64_intdigest(body)
    header = _HEADER.pack(MAGIC, VERSION, len(meta_raw), len(body), checksum)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            out.write(header)
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata of an index file without mapping or checking its body."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                raise IndexFormatError(f"{path}: too short to be an index")
            magic, version, meta_len, _, _ = _HEADER.unpack(head)
            if magic != MAGIC or version != VERSION:
                raise IndexFormatError(f"{path}: not a version {VERSION} Schoolgate index")
            meta: dict[str, Any] = json.loads(f.read(meta_len))
            return meta
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: cannot read index: {exc}") from None


class _Table:
    """Sorted u64 keys with a bucket directory, over the mapped file."""

    __slots__ = ("dir", "keys", "shift", "vals")

    def __init__(self, body: memoryview, layout: dict[str, list[int]], prefix: str, bits: int):
        def view(name: str, fmt: Literal["Q", "I"]) -> memoryview[int]:
            off, size = layout[f"{prefix}.{name}"]
            return body[off : off + size].cast(fmt)

        self.keys = view("keys", "Q")
        self.dir = view("dir", "I")
        self.vals = view("vals", "I")
        self.shift = 64 - bits


class CompiledIndex:
    """A compiled index file, mapped read-only; a ``Matcher``.

    ``cache_size`` bounds a per-process memo of host -> host hits (cleared when full,
    and new with every index, so a swap never serves stale answers). Real traffic
    repeats a few thousand hosts, so most lookups end there; ``cache_size=0`` turns
    it off (the bench reports both).
    """

    def __init__(self, path: Path, *, verify: bool = True, cache_size: int = 16384) -> None:
        started = time.perf_counter()
        self.path = path
        try:
            with path.open("rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self.stat = os.fstat(f.fileno())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path}: cannot open index: {exc}") from None
        if len(self._mm) < _HEADER.size:
            raise IndexFormatError(f"{path}: too short to be an index")
        magic, version, meta_len, body_len, checksum = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC:
            raise IndexFormatError(f"{path}: not a Schoolgate index")
        if version != VERSION:
            raise IndexFormatError(f"{path}: index version {version}, expected {VERSION}")
        if len(self._mm) != _HEADER.size + body_len:
            raise IndexFormatError(f"{path}: truncated index ({len(self._mm)} bytes)")
        whole = memoryview(self._mm)
        meta_view = whole[_HEADER.size : _HEADER.size + meta_len]
        if verify and xxhash.xxh3_64_intdigest(whole[_HEADER.size :]) != checksum:
            raise IndexFormatError(f"{path}: checksum mismatch; the index is corrupt")
        meta: dict[str, Any] = json.loads(bytes(meta_view))
        self.meta = meta
        body = whole[_HEADER.size + meta_len :]
        layout: dict[str, list[int]] = meta["sections"]
        self._host = _Table(body, layout, "host", meta["host_bits"])
        self._hash = _Table(body, layout, "hash", meta["hash_bits"])

        def section(name: str) -> memoryview:
            off, size = layout[name]
            return body[off : off + size]

        self._filter = section("host.filter")
        self._filter_shift = 64 - meta["filter_bits"]
        self._base = section("base.filter")
        self._base_shift = 64 - meta["base_bits"]
        self._recs = section("recs").cast("I")
        self._paths = section("paths")
        self._digests = section("hash.digests")
        # hash every lookup's candidates only if some hashed entry's host is unknown;
        # otherwise only for hosts flagged in the host table
        self._hash_always = meta["hashed"] > 0 and meta.get("hashed_everywhere", True)
        self._min_labels: int = meta["min_labels"]
        self._hot = (
            self._filter,
            self._filter_shift,
            self._min_labels,
            self._base,
            self._base_shift,
        )
        self._counts: dict[str, int] = meta["counts"]
        names: list[tuple[str, ...]] = [tuple(n) for n in meta["lists"]]
        self._set_names: list[tuple[str, ...]] = [
            tuple(name for i in ids for name in names[i]) for ids in meta["sets"]
        ]
        self._cache: dict[str, tuple[Hit, ...]] = {}
        self._old: dict[str, tuple[Hit, ...]] = {}
        self._path_memo: dict[str, _Layout] = {}
        self._cache_size = cache_size
        self.load_seconds = time.perf_counter() - started

    @classmethod
    def open(cls, path: Path, *, verify: bool = True, cache_size: int = 16384) -> CompiledIndex:
        return cls(path, verify=verify, cache_size=cache_size)

    # -- the hot path -----------------------------------------------------------------

    def match(self, host: str, path: str | None = None) -> tuple[Hit, ...]:
        found = self._cache.get(host)
        if found is None:
            found = self._old.get(host)
            if found is None:
                found = self._host_hits(host)
            if self._cache_size:
                # two generations, a cheap LRU: when the young one is full it becomes the
                # old one; a host found in the old one moves back to the young one
                if len(self._cache) >= self._cache_size:
                    self._old = self._cache
                    self._cache = {}
                self._cache[host] = found
        if found:
            last = found[-1]
            if last is _PATHS:
                found = found[:-1] if path is None else self._path_hits(host, path)
            elif last is _HASHED:
                found = found[:-1] if path is None else self._path_hits(host, path)
                found = found + self._match_hashed(host, path)
        if self._hash_always:
            hashed = self._match_hashed(host, path)
            if hashed:
                found = found + hashed
        return found

    def _host_hits(self, host: str) -> tuple[Hit, ...]:
        """Hits of host entries on every suffix, ending with ``_PATHS`` if any has paths."""
        raw = host.encode()
        slots, shift, min_labels, base, base_shift = self._hot  # one attribute load, not five
        found = NO_HITS
        has_paths = has_hashed = False
        start = 0
        # suffixes with fewer labels than the shortest key cannot match ("com")
        todo = raw.count(b".") + 2 - min_labels
        if todo > 1 and min_labels > 1:
            # three labels or more: if no key sits under the last two, stop here
            second = raw.rfind(b".", 0, raw.rfind(b"."))
            h = _xxh(raw[second + 1 :])
            v = base[h >> base_shift]
            if not v or (v != _MANY and v != h & 0x7F | 0x80):
                return NO_HITS
        while todo > 0:
            h = _xxh(raw[start:]) if start else _xxh(raw)
            v = slots[h >> shift]
            if v and (v == _MANY or v == h & 0x7F | 0x80):
                i = self._find(self._host, h)
                if i >= 0:
                    rec = self._host.vals[i]
                    host_set = self._recs[2 * rec]
                    if host_set & _HASHED_FLAG:
                        has_hashed = True
                        host_set ^= _HASHED_FLAG
                    if host_set:
                        suffix = raw[start:].decode()
                        found = found + tuple(
                            Hit(name, suffix) for name in self._set_names[host_set]
                        )
                    if self._recs[2 * rec + 1]:
                        has_paths = True
            todo -= 1
            start = raw.find(b".", start) + 1
        if has_hashed:
            return (*found, _HASHED)
        return (*found, _PATHS) if has_paths else found

    def _path_hits(self, host: str, path: str) -> tuple[Hit, ...]:
        """Host and path hits, suffix by suffix; path hits shortest entry first."""
        layout = self._path_memo.get(host)
        if layout is None:
            layout = self._path_layout(host)
            if len(self._path_memo) >= _PATH_MEMO:
                self._path_memo.clear()
            self._path_memo[host] = layout
        found = NO_HITS
        prefixes: tuple[str, ...] | None = None
        for host_hits, table in layout:
            if host_hits:
                found = found + host_hits
            if table:
                if prefixes is None:
                    prefixes = tuple(path_prefixes(path))
                for prefix in prefixes:
                    hits = table.get(prefix)
                    if hits is not None:
                        found = found + hits
        return found

    def _path_layout(self, host: str) -> _Layout:
        """Per suffix that is a key: its host hits and its path entries by path."""
        layout = []
        raw = host.encode()
        start = 0
        while True:
            i = self._find(self._host, _xxh(raw[start:]))
            if i >= 0:
                suffix = raw[start:].decode()
                rec = self._host.vals[i]
                host_set = self._recs[2 * rec] & ~_HASHED_FLAG
                block = self._recs[2 * rec + 1]
                host_hits = tuple(Hit(name, suffix) for name in self._set_names[host_set])
                table: dict[str, tuple[Hit, ...]] = {}
                if block:
                    for entry_set, entry_path in self._path_entries(block - 1):
                        entry = suffix + entry_path
                        table[entry_path] = table.get(entry_path, NO_HITS) + tuple(
                            Hit(name, entry) for name in self._set_names[entry_set]
                        )
                layout.append((host_hits, table))
            start = raw.find(b".", start) + 1
            if not start:
                return tuple(layout)

    def _find(self, tab: _Table, h: int) -> int:
        bucket = h >> tab.shift
        keys = tab.keys
        for i in range(tab.dir[bucket], tab.dir[bucket + 1]):
            k = keys[i]
            if k >= h:
                return i if k == h else -1
        return -1

    def _path_entries(self, offset: int) -> Iterator[tuple[int, str]]:
        (count,) = struct.unpack_from("<I", self._paths, offset)
        offset += 4
        for _ in range(count):
            entry_set, size = _PATH_ENTRY.unpack_from(self._paths, offset)
            offset += _PATH_ENTRY.size
            yield entry_set, bytes(self._paths[offset : offset + size]).decode()
            offset += size

    def _match_hashed(self, host: str, path: str | None) -> tuple[Hit, ...]:
        """Hash each candidate entry: every host suffix, alone and with each path prefix."""
        found = NO_HITS
        chunks: list[bytes] = []
        if path is not None:
            # the path cut at each prefix path_prefixes() yields: hashing is incremental
            end = 0
            for prefix in path_prefixes(path):
                chunks.append(prefix[end:].encode())
                end = len(prefix)
        for suffix in _suffixes(host):
            running = hashlib.sha256(suffix.encode())
            digest = running.digest()
            for chunk in (b"", *chunks):
                if chunk:
                    running.update(chunk)
                    digest = running.digest()
                i = self._find(self._hash, int.from_bytes(digest[:8], "big"))
                if i >= 0 and self._digests[32 * i : 32 * i + 32] == digest:
                    entry = hashed_hit_entry(digest)
                    found = found + tuple(
                        Hit(name, entry) for name in self._set_names[self._hash.vals[i]]
                    )
        return found

    def has_paths(self, host: str) -> bool:
        found = self._cache.get(host)
        if found is None:
            found = self._old.get(host)
        if found is None:
            found = self._host_hits(host)
        if not found or found[-1] is not _HASHED:
            return bool(found) and found[-1] is _PATHS
        return any(table for _, table in self._path_layout(host))

    def counts(self) -> Mapping[str, int]:
        return self._counts

    # -- facts for stats ----------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._mm)

    def aliases(self) -> dict[str, str]:
        """Alias name -> the list it names."""
        return {alias: names[0] for names in self.meta["lists"] for alias in names[1:]}


def _base(host: str) -> bytes:
    """The last two labels: ``a.b.example.com`` -> ``example.com``."""
    return ".".join(host.rsplit(".", 2)[-2:]).encode()


def _suffixes(host: str) -> Iterator[str]:
    yield host
    start = host.find(".")
    while start != -1:
        yield host[start + 1 :]
        start = host.find(".", start + 1)
