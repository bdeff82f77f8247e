"""The compiled index: every list in one file, opened with mmap and shared by every worker.

Build it with ``CompiledBuilder`` (a ``ListSink``: the readers in ``formats``
feed it), ``write()`` it (temporary name, fsync, rename), and open it with
``CompiledIndex.open()``, which checks the header and checksum. It answers the
same ``Matcher`` protocol, with the same hits, as ``MemoryIndex``. The proxy
opens it with ``open_private()`` instead (see "On disk" below).

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

On disk, and why the proxy maps a private snapshot: only the compiler writes an
index, and always under a new name (temporary file, fsync, rename, fsync of the
folder), so a mapping never sees its file change. Anyone else writing the live
``lists.idx`` in place (a stray write, ``truncate``, ``cp other.idx lists.idx``,
which truncates and rewrites the *same inode*) used to reach every worker's
mapping: zeroed filters let adult and gambling through, and a truncated file
killed the workers with SIGBUS on the next lookup. Options weighed:

* catch SIGBUS: CPython cannot resume after a fault in a memoryview read; no.
* ``MAP_PRIVATE``: pages not yet copied still show the file's changes, and a
  truncation is still SIGBUS; no.
* read it into private anonymous memory after verifying: immune to anything done
  to any file, but one copy per worker (the full-size index is 66 MB: 264 MB with
  four workers), against the README's promise of one shared copy.
* a hard link in a private folder: the same inode, so ``cp`` still reaches it; no.
* chosen: ``open_private()`` copies the verified ``lists.idx`` (kernel
  ``copy_file_range``) to ``mapped/CHECKSUM-SIZE.idx`` (0400, folder 0700),
  checks the copy, and maps that; the first process copies, the workers find it
  by name and map the same file, so the pages stay shared. Nothing but this
  module writes there, so no change to ``lists.idx`` reaches a mapping, and the
  live file is verified (``verify_file``, by ``read()``, never mapped) at every
  open: a damaged one is compiled again from the sources (``proxy.lists``).
  If the folder cannot be used (permissions, a full disk) the index is read into
  private memory instead, with the same checks.

What is left: someone who writes the snapshot itself (root, in the private folder,
after a chmod). ``verify()`` on the reload timer catches that (size through the
mapping's descriptor first, so a truncated file is not read; then header and
checksum) and the index *fails closed*: every lookup raises, the filter blocks,
until a good index is swapped in. Between the write and the next check (at most
``schoolgate_reload_ms``, 2 s by default) a host looked up for the first time may
miss; a truncation in that window can still SIGBUS a worker, which the
supervisor restarts. Measured by ``bench_opening`` (part of ``make bench``, here run
alone for both list sets) in one run on a shared 2-core VM loaded by other builds
(ratios within a row group matter, not absolutes):

    way to open (fresh process)   load, min of 3          cold lookups/s   PSS, 2 processes
    sample lists, 14.5 MB index
      lists.idx mapped (before)     1.1 ms                 102k             +6.9 / +6.9 MB
      private snapshot              60 ms first, 30 next   129k             +7.0 / +7.1 MB
      copy in private memory        58 ms                  115k             +13.8 / +13.8 MB
    full-size (3.4M entries), 66.4 MB index
      lists.idx mapped (before)     8.9 ms                 328k             +31.7 / +31.7 MB
      private snapshot              85 ms first, 44 next   239k             +31.6 / +31.6 MB
      copy in private memory        87 ms                  296k             +63.5 / +63.5 MB
    verify() on the reload timer: 0.6 ms (sample), 3.5 ms (full size), every 2 s by default

The lookups run the same code over the same kind of mapping in all three; their
spread is the load on the VM (the same code moved by up to 3x between this run and
a whole ``make bench`` run just before it). Load time grows from one checksum pass
to three (the live file by ``read()``, the copy, the mapping) plus a kernel copy
for the first process: still well under the second DESIGN.md allows, paid at start
and per reload, not per request. The snapshot keeps the sharing (each of two
processes is charged half the mapping); a copy per worker doubles the memory. The
checksum on the reload timer runs on the event loop: 3.5 ms every 2 s at full size
(xxhash releases the GIL, so moving ``index_stamp`` into a thread would take it
off).

A miss allocates no result: it returns the shared ``NO_HITS``. CPython still
makes the short-lived ``bytes`` of the host and the hash ``int`` (freed at once),
and the first lookup of a host stores its answer (``NO_HITS`` for a miss) in the
bounded per-process memo described on ``CompiledIndex``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import shutil
import struct
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any, Literal

import xxhash

from blocklists.index import NO_HITS, Hit, hashed_hit_entry, host_suffixes, path_prefixes

log = logging.getLogger(__name__)
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


def read_header(path: Path) -> tuple[int, int]:
    """(checksum, whole file size) from an index file's header, read without mapping it."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEADER.size)
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read index: {exc}") from None
    if len(head) < _HEADER.size:
        raise IndexFormatError(f"{path}: too short to be an index")
    magic, version, _, body_len, checksum = _HEADER.unpack(head)
    if magic != MAGIC or version != VERSION:
        raise IndexFormatError(f"{path}: not a version {VERSION} Schoolgate index")
    return checksum, _HEADER.size + body_len


def verify_file(path: Path) -> tuple[int, int]:
    """(checksum, size) of an index file whose body matches its checksum; read with
    ``read()``, never mapped, so a file truncated meanwhile is an error, not SIGBUS."""
    checksum, size = read_header(path)
    digest = xxhash.xxh3_64()
    buf = bytearray(_READ_CHUNK)  # one buffer reused: fresh bytes per read cost 10x more
    view = memoryview(buf)
    try:
        with path.open("rb", buffering=0) as f:
            f.seek(_HEADER.size)
            left = size - _HEADER.size
            while left > 0:
                got = f.readinto(view[: min(left, _READ_CHUNK)])
                if not got:
                    raise IndexFormatError(f"{path}: truncated index")
                digest.update(view[:got])
                left -= got
            if f.read(1):
                raise IndexFormatError(f"{path}: longer than its header says")
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read index: {exc}") from None
    if digest.intdigest() != checksum:
        raise IndexFormatError(f"{path}: checksum mismatch; the index is corrupt")
    return checksum, size


_READ_CHUNK = 1 << 22
SNAPSHOT_MODE = 0o400  # nobody writes a snapshot in place, not even the service user
_STALE_TMP_S = 60.0


def open_private(path: Path, private_dir: Path, *, cache_size: int = 16384) -> CompiledIndex:
    """Open the index at ``path`` through a verified snapshot in ``private_dir``.

    The snapshot is a copy of ``path`` named by its checksum (``CHECKSUM-SIZE.idx``,
    mode 0400, in a 0700 folder): the first process copies and verifies it, the
    others (the workers) map the same file, so the pages stay shared. What happens
    to ``path`` afterwards (written in place, truncated, ``cp`` over it) never
    reaches a mapping. When the folder cannot be used (permissions, a full disk),
    the index is read into private memory instead, with the same checks.
    ``path`` itself is verified every time (a snapshot named after its header would
    hide a body damaged since); ``IndexFormatError`` when it is not a good index.
    """
    for _ in range(3):  # the live file may be replaced between reading it and copying it
        checksum, size = verify_file(path)
        snap = private_dir / f"{checksum:016x}-{size}.idx"
        try:
            index = _open_snapshot(path, snap, checksum, cache_size)
        except _Retry:
            continue
        except OSError as exc:
            log.warning("lists: cannot use %s (%s); reading the index into memory", snap, exc)
            return CompiledIndex(path, cache_size=cache_size, copy=True)
        _remove_other_snapshots(private_dir, snap)
        return index
    raise IndexFormatError(f"{path}: changed three times while being opened")


class _Retry(Exception):
    """The live file changed while being copied: start again from its header."""


def _open_snapshot(path: Path, snap: Path, checksum: int, cache_size: int) -> CompiledIndex:
    """Map ``snap`` (made from ``path`` if missing or not intact)."""
    try:
        index = CompiledIndex(snap, cache_size=cache_size)
        if index.checksum == checksum:
            return index
        problem = "not the index its name says"
    except IndexFormatError as exc:
        problem = str(exc) if snap.exists() else ""
    if problem:
        log.warning("lists: snapshot %s: %s; copying the index again", snap, problem)
        snap.unlink(missing_ok=True)
    snap.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(snap.parent, 0o700)
    tmp = snap.with_name(f".{snap.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(path, tmp)  # copy_file_range: in the kernel, no user-space pass
        os.chmod(tmp, SNAPSHOT_MODE)
        try:
            if read_header(tmp)[0] != checksum:
                raise _Retry
            CompiledIndex(tmp, cache_size=0)  # checks what was copied, before it is named
        except IndexFormatError:
            raise _Retry from None
        with contextlib.suppress(FileExistsError):
            os.link(tmp, snap)  # only if absent: two workers never map different copies
        # mapped by its own name (so /proc/PID/maps names it), and checked again
        try:
            return CompiledIndex(snap, cache_size=cache_size)
        except IndexFormatError:
            if snap.exists():
                raise
            raise _Retry from None  # removed meanwhile by a process opening a newer index
    finally:
        tmp.unlink(missing_ok=True)


def _remove_other_snapshots(private_dir: Path, keep: Path) -> None:
    """Unlink older snapshots (a process still mapping one keeps its pages until it swaps)."""
    now = time.time()
    try:
        entries = list(os.scandir(private_dir))
    except OSError:
        return
    for entry in entries:
        try:
            old = entry.name.endswith(".idx") and entry.name != keep.name
            # a temporary file is another process's copy in the making, unless abandoned
            if old or (entry.name.endswith(".tmp") and now - entry.stat().st_mtime > _STALE_TMP_S):
                os.unlink(entry.path)
        except OSError:
            continue


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


def _map(path: Path, copy: bool) -> tuple[mmap.mmap, os.stat_result]:
    """``path`` opened O_RDONLY and mapped ACCESS_READ, or read into anonymous memory."""
    try:
        with path.open("rb") as f:
            stat = os.fstat(f.fileno())
            if stat.st_size < _HEADER.size:
                raise IndexFormatError(f"{path}: too short to be an index")
            if not copy:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), stat
            mm = mmap.mmap(-1, stat.st_size)
            if f.readinto(mm) != stat.st_size:
                raise IndexFormatError(f"{path}: truncated while being read")
            return mm, stat
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: cannot open index: {exc}") from None


class CompiledIndex:
    """A compiled index file, mapped read-only; a ``Matcher``.

    ``cache_size`` bounds a per-process memo of host -> host hits (cleared when full,
    and new with every index, so a swap never serves stale answers). Real traffic
    repeats a few thousand hosts, so most lookups end there; ``cache_size=0`` turns
    it off (the bench reports both).
    """

    def __init__(
        self,
        path: Path,
        *,
        verify: bool = True,
        cache_size: int = 16384,
        copy: bool = False,
    ) -> None:
        """Map ``path`` read-only (``copy``: read it into private anonymous memory)."""
        started = time.perf_counter()
        self.path = path
        self.copied = copy
        self.closed_reason = ""  # why verify() found the mapping changed under it
        self._mm, self.stat = _map(path, copy)
        magic, version, meta_len, body_len, checksum = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC:
            raise IndexFormatError(f"{path}: not a Schoolgate index")
        if version != VERSION:
            raise IndexFormatError(f"{path}: index version {version}, expected {VERSION}")
        if len(self._mm) != _HEADER.size + body_len:
            raise IndexFormatError(f"{path}: truncated index ({len(self._mm)} bytes)")
        self.checksum: int = checksum
        self._header = bytes(self._mm[: _HEADER.size])
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
    def open(
        cls, path: Path, *, verify: bool = True, cache_size: int = 16384, copy: bool = False
    ) -> CompiledIndex:
        return cls(path, verify=verify, cache_size=cache_size, copy=copy)

    # -- checking the mapping under a running proxy ---------------------------------------

    def verify(self) -> bool:
        """Whether the mapped bytes are still the ones checked at open (size, header, checksum).

        Only a file changed in place can fail this (the compiler always renames a new
        one). On failure the index *fails closed* for good: ``match`` raises
        ``IndexFormatError``, which the filter turns into a block, until the proxy
        swaps in a good index. The size is checked first, through the mapping's own
        descriptor, so a truncated file is not read (reading past its end is SIGBUS).
        """
        if self.closed_reason:
            return False
        reason = ""
        try:
            if not self.copied and self._mm.size() != len(self._mm):
                reason = f"size changed to {self._mm.size()} bytes"
        except OSError as exc:
            reason = f"cannot stat: {exc}"
        if not reason and self._mm[: _HEADER.size] != self._header:
            reason = "header changed"
        if not reason:
            body = memoryview(self._mm)[_HEADER.size :]
            if xxhash.xxh3_64_intdigest(body) != self.checksum:
                reason = "checksum mismatch"
            body.release()
        if reason:
            self.fail_closed(f"{self.path}: changed in place while mapped ({reason})")
            return False
        return True

    def fail_closed(self, reason: str) -> None:
        """From now on every lookup raises ``IndexFormatError`` (the filter blocks)."""
        self.closed_reason = reason

        def closed(*_: object) -> Any:
            raise IndexFormatError(reason)

        # instance attributes shadow the methods: the hot path pays nothing for the check
        self.match = closed  # type: ignore[method-assign,assignment]
        self.has_paths = closed  # type: ignore[method-assign,assignment]
        self._cache.clear()
        self._old.clear()
        self._path_memo.clear()

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
        for suffix in host_suffixes(host):
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
