"""An index of the access log by person, so a month of one pupil's history is read, not scanned.

A month at a busy school is 150,000,000 lines (60 GB); finding one pupil's few
thousand lines a day by scanning takes minutes. For each log file this keeps a
private index (``DATA_DIR/index/DEV-INODE.idx``, mode 0600, beside the log) mapping
a keyed hash of each person (a user name, or ``ip:ADDRESS`` for nobody signed in:
the subjects of ``timeline.matches``) to the byte offsets of their lines. The
reader seeks to those offsets only, decodes those lines, and keeps those
``timeline.matches`` accepts in the window, so the index can only narrow what is
read, never add to what is shown.

The index is named by the log file's device and inode, not its name, so
logrotate's renames (``access.log`` to ``access.log.1`` …) keep it, and a file
rewritten by ``purge`` (a new inode) or deleted by it leaves its index orphaned:
``prune`` (called by ``purge``) deletes every index whose file is gone. An index
records the file's size and mtime when it was made and a CRC of the last bytes it
covered; a file that shrank, changed in place or no longer matches is indexed
again, never trusted. A file that grew (the live log) has only its new whole lines
indexed, from where the index got to.

Names are keyed hashes (HMAC-SHA256 under the install's key, truncated), so the
index alone does not list who browsed. Building reads each line once: the person is
taken from the line's bytes when the writer's ``"user": `` and ``"client_ip": ``
are there with plain values (a line may be indexed under more than one key, e.g. a
nested ``"user"``: more is harmless, the reader filters), and by decoding the line
as JSON otherwise.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import os
import re
import threading
import zlib
from array import array
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from proxy.incidents import timeline

MAGIC = b"SGIDX1\n"
INDEX_DIR = "index"
HASH_BYTES = 12
BLOCK = 8 << 20
READ = 1024  # bytes read for one line first (the proxy's are about 400)
TAIL = 4096  # bytes before the indexed end whose CRC says the file was not rewritten

USER = re.compile(rb'"user": (null|"([^"\\\n]*)")')
CLIENT_IP = re.compile(rb'"client_ip": (null|"([^"\\\n]*)")')


def index_dir(access_log: Path) -> Path:
    return access_log.parent / INDEX_DIR


def index_path(access_log: Path, st: os.stat_result) -> Path:
    return index_dir(access_log) / f"{st.st_dev}-{st.st_ino}.idx"


def key_hash(key: bytes, subject: str) -> str:
    return hmac.new(key, subject.encode("utf-8"), hashlib.sha256).digest()[:HASH_BYTES].hex()


def _fingerprint(key: bytes) -> str:
    return hmac.new(key, b"schoolgate log index", hashlib.sha256).hexdigest()[:16]


def subjects_of(raw: bytes) -> list[str]:
    """Every subject this line may belong to (a superset of the one it does)."""
    users = USER.findall(raw)
    if users and len(users) == raw.count(b'"user": '):
        ips = CLIENT_IP.findall(raw)
        if len(ips) == raw.count(b'"client_ip": '):
            out = [u.decode("utf-8", "replace") for _, u in users if u]
            if any(not u for _, u in users):  # nobody signed in: the address is the subject
                out += ["ip:" + ip.decode("utf-8", "replace") for _, ip in ips if ip]
            return out
    data = timeline._parse(raw)  # an escape, a number, another layout: decode it
    if data is None:
        return []
    user = data.get("user")
    if user:
        return [user] if isinstance(user, str) else []
    ip = data.get("client_ip")
    return [f"ip:{ip}"] if isinstance(ip, str) else []


class Index:
    """One log file's offsets by keyed person, covering ``[0, end)`` of the file."""

    def __init__(self, fingerprint: str, wide: bool) -> None:
        self.fingerprint = fingerprint
        self.wide = wide
        self.end = 0
        self.offsets: dict[str, array[int]] = {}

    def add(self, fd: int, begin: int, stop: int, key: bytes) -> None:
        """Index the whole lines in ``[begin, stop)`` (``begin`` at a line start), read in
        blocks (not mapped: a map's pages would count against the process)."""
        offsets = self.offsets
        code = "Q" if self.wide else "I"
        known: dict[str, str] = {}
        at = begin
        while at < stop:
            block = os.pread(fd, min(stop - at, BLOCK), at)
            cut = block.rfind(b"\n") + 1
            while not cut and at + len(block) < stop:  # a line longer than a block
                block += os.pread(fd, min(stop - at - len(block), BLOCK), at + len(block))
                cut = block.rfind(b"\n") + 1
            if not cut:
                break  # a torn last line: indexed once it is whole
            pos = at
            for raw in block[:cut].split(b"\n")[:-1]:
                for subject in subjects_of(raw):
                    h = known.get(subject)
                    if h is None:
                        h = known[subject] = key_hash(key, subject)
                    got = offsets.get(h)
                    if got is None:
                        got = offsets[h] = array(code)
                    if not got or got[-1] != pos:
                        got.append(pos)
                pos += len(raw) + 1
            at += cut
        self.end = at


def _tail_crc(fd: int, end: int) -> int:
    start = max(0, end - TAIL)
    return zlib.crc32(os.pread(fd, end - start, start))


def _write(path: Path, index: Index, st: os.stat_result, crc: int) -> None:
    keys = sorted(index.offsets)
    table = {}
    n = 0
    for h in keys:
        table[h] = [n, len(index.offsets[h])]
        n += len(index.offsets[h])
    header = json.dumps(
        {
            "key": index.fingerprint,
            "wide": index.wide,
            "end": index.end,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "crc": crc,
            "table": table,
        }
    ).encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(MAGIC + header + b"\n")
        for h in keys:
            index.offsets[h].tofile(out)
    tmp.replace(path)


def _header(path: Path) -> tuple[dict[str, object], int] | None:
    """The index's header and where its offsets start, or None if it is not one of ours."""
    try:
        with path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            raw = f.readline()
            head = json.loads(raw)
            return (head, len(MAGIC) + len(raw)) if isinstance(head, dict) else None
    except (OSError, ValueError):
        return None


def _valid(head: dict[str, object], st: os.stat_result, fp: str, fd: int) -> bool:
    end = head.get("end")
    if head.get("key") != fp or not isinstance(end, int) or st.st_size < end:
        return False
    if st.st_size == head.get("size") and st.st_mtime_ns != head.get("mtime_ns"):
        return False  # the same size but written since: changed in place
    return _tail_crc(fd, end) == head.get("crc")


def _load(path: Path, head: dict[str, object], start: int) -> Index:
    index = Index(str(head["key"]), bool(head["wide"]))
    index.end = int(head["end"])  # type: ignore[call-overload]
    code = "Q" if index.wide else "I"
    with path.open("rb") as f:
        f.seek(start)
        for h, (_, count) in sorted(head["table"].items(), key=lambda kv: kv[1][0]):  # type: ignore[attr-defined]
            got = array(code)
            got.fromfile(f, count)
            index.offsets[h] = got
    return index


def _offsets_of(path: Path, head: dict[str, object], start: int, h: str) -> array[int]:
    code = "Q" if head["wide"] else "I"
    got = array(code)
    where = head["table"].get(h)  # type: ignore[attr-defined]
    if where:
        with path.open("rb") as f:
            f.seek(start + where[0] * got.itemsize)
            got.fromfile(f, where[1])
    return got


def offsets(log: Path, subject: str, key: bytes) -> tuple[array[int], BinaryIO | None]:
    """The offsets of the subject's lines in one log file (indexing it first if need be),
    and the file open for reading them; (empty, None) if the file is empty or gone."""
    try:
        f = log.open("rb")
    except FileNotFoundError:
        return array("Q"), None
    st = os.fstat(f.fileno())
    if st.st_size == 0:
        f.close()
        return array("Q"), None
    try:
        return _offsets(log, subject, key, f.fileno(), st), f
    except BaseException:
        f.close()
        raise


def _offsets(log: Path, subject: str, key: bytes, fd: int, st: os.stat_result) -> array[int]:
    fp = _fingerprint(key)
    where = index_path(log, st)
    h = key_hash(key, subject)
    found = _header(where)
    valid = found is not None and _valid(found[0], st, fp, fd)
    if found is not None and valid and found[0]["end"] == st.st_size:
        return _offsets_of(where, found[0], found[1], h)
    if found is not None and valid and (st.st_size < 1 << 32 or found[0]["wide"]):
        index = _load(where, *found)  # the file grew: index only what is new
    else:
        index = Index(fp, st.st_size >= 1 << 32)
    was = index.end if valid else -1
    index.add(fd, index.end, st.st_size, key)
    if index.end != was:  # nothing new but a torn last line: the index stands
        _write(where, index, st, _tail_crc(fd, index.end))
    return index.offsets.get(h, array("Q"))


def build(log: Path, key: bytes) -> None:
    """Index one file now (the daily housekeeping, the bench), as a first query would."""
    offsets(log, "", key)


def activity(
    access_log: Path, subject: str, since: datetime, until: datetime, key: bytes
) -> Iterator[timeline.LogLine]:
    """``timeline.activity`` read through the index: the same lines, in the same order."""
    for path in timeline.log_files(access_log):
        got, f = offsets(path, subject, key)
        if f is None:
            continue
        with f:
            # Only the offsets in the window (found by the timeline's binary search).
            size = os.fstat(f.fileno()).st_size
            lo = bisect.bisect_left(got, timeline._seek(f, size, since - timeline.SLACK))
            hi = bisect.bisect_right(got, _upper(f, size, until + timeline.SLACK))
            fd = f.fileno()
            for at in got[lo:hi]:
                data = timeline._parse(_line_at(fd, at))
                if data is None or (when := timeline._time(data)) is None:
                    continue
                if since <= when < until:
                    line = timeline._line(data, when)
                    if timeline.matches(line, subject):
                        yield line


def _line_at(fd: int, at: int) -> bytes:
    """The line starting at ``at``: one read of a typical line's length (not a map, whose
    page faults cost more than the read), more if it is longer."""
    raw = os.pread(fd, READ, at)
    end = raw.find(b"\n")
    while end < 0 and len(raw) % READ == 0 and raw:
        raw += os.pread(fd, READ, at + len(raw))
        end = raw.find(b"\n")
    return raw[:end] if end >= 0 else raw


def _upper(f: BinaryIO, size: int, past: datetime) -> int:
    """An offset every line starting after which is (nearly) at or past ``past``."""
    lo = timeline._seek(f, size, past)
    return min(size, lo + 4096)


def prune(access_log: Path) -> int:
    """Delete the index of every file no longer among the log's files; how many."""
    live = set()
    for path in timeline.log_files(access_log):
        try:
            live.add(index_path(access_log, path.stat()).name)
        except FileNotFoundError:
            continue
    removed = 0
    folder = index_dir(access_log)
    for idx in folder.glob("*.idx") if folder.is_dir() else ():
        if idx.name not in live:
            idx.unlink(missing_ok=True)
            removed += 1
    return removed
