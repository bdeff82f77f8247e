"""A person's browsing around a moment, read from the access log by seeking, not scanning.

The access log (``DATA_DIR/access.log``, JSON lines, ``time`` first) is
written in time order, so the lines between two times are found by a
binary search on byte offsets: each probe reads one line, so a ±30-minute
window costs O(log size) seeks plus the lines inside it, not the whole file.
Lines are only nearly ordered (requests finish out of order by a few
seconds), so the search starts ``SLACK`` early and every line is filtered.
Rotated files (``access.log.1``, … uncompressed, as logrotate leaves them
with ``delaycompress``) are read too, newest last.

A busy school writes millions of lines a day, so a ±30-minute window holds
hundreds of thousands of everyone's lines. Decoding each as JSON to find one
person's cost seconds (``bench/timeline.py``), so a line is decoded only if
the person's name (or address), as the log writes it, appears in its bytes;
the others are passed over by the time at the start of the line, which the
writer always puts first in UTC.

A *page load* is what a person sees as a page: an HTML document, not every
image, script or font it pulls in. The log's ``ctype`` (the response's
content type, recorded since this module) decides; older lines without it
fall back to the path (no static-file extension, a GET). Illegal hits are
logged with host and path withheld, and stay withheld here.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

SLACK = timedelta(seconds=30)
STATIC = (
    ".js", ".mjs", ".css", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".webp", ".avif",
    ".woff", ".woff2", ".ttf", ".otf", ".map", ".json", ".xml", ".mp4", ".webm", ".mp3",
    ".m4s", ".ts", ".wasm", ".txt",
)  # fmt: skip
WITHHELD_MARKERS = ("(withheld)", "(withheld: illegal list)")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One access-log line, as the DSL's pages use it."""

    at: datetime
    user: str | None
    client_ip: str | None
    host: str
    path: str
    decision: str | None
    category: str | None
    action: str | None
    ctype: str | None
    method: str

    @property
    def withheld(self) -> bool:
        return self.host in WITHHELD_MARKERS

    @property
    def address(self) -> str:
        """Where, as it may be shown: an illegal hit's address never is."""
        if self.withheld:
            return "(address withheld: illegal list)"
        return f"{self.host}{self.path}"

    @property
    def blocked(self) -> bool:
        return self.decision == "block"

    @property
    def is_page(self) -> bool:
        if self.withheld:
            return True  # an illegal hit is always shown, as what it is
        if self.method != "GET":
            return False
        if self.ctype:
            # A document a person reads (a plain-text file opened in a tab is one too).
            return self.ctype.split(";", 1)[0].strip().lower() in (
                "text/html",
                "application/xhtml+xml",
                "text/plain",
            )
        bare = self.path.split("?", 1)[0].lower()
        return not bare.endswith(STATIC)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # a torn last line while the writer is mid-write
    return data if isinstance(data, dict) and isinstance(data.get("time"), str) else None


def _time(data: dict[str, Any]) -> datetime | None:
    try:
        at = datetime.fromisoformat(data["time"].replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _line(data: dict[str, Any], at: datetime) -> LogLine:
    return LogLine(
        at=at,
        user=data.get("user"),
        client_ip=data.get("client_ip"),
        host=str(data.get("host") or ""),
        path=str(data.get("path") or ""),
        decision=data.get("decision"),
        category=data.get("category"),
        action=data.get("action"),
        ctype=data.get("ctype"),
        method=str(data.get("method") or "GET"),
    )


def _time_at(f: BinaryIO, offset: int) -> tuple[datetime | None, int]:
    """The time of the first whole line at or after ``offset``, and that line's offset."""
    f.seek(offset)
    if offset:
        f.readline()  # the rest of a line we landed in the middle of
    while True:
        start = f.tell()
        raw = f.readline()
        if not raw:
            return None, start
        data = _parse(raw)
        if data is not None and (at := _time(data)) is not None:
            return at, start


def _seek(f: BinaryIO, size: int, since: datetime) -> int:
    """The offset of a line at or before the first line with time >= ``since``."""
    lo, hi = 0, size
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        at, _ = _time_at(f, mid)
        if at is None or at >= since:
            hi = mid
        else:
            lo = mid
    return lo


# How the access log's writer (proxy/accesslog.py: structlog, time first) starts a line.
TIME_PREFIX = b'{"time": "'


def _stamp(at: datetime) -> bytes:
    """``at`` to the second as the writer's UTC stamps begin, to compare bytes with bytes."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()


def needle_of(subject: str) -> bytes | None:
    """Bytes every line of the subject's contains (its JSON string), or None to decode all.

    The writer escapes anything outside ASCII (``json.dumps``); a name that is not plain
    ASCII is not pre-filtered at all, so a writer that did not escape could never hide
    one of its lines."""
    value = subject[3:] if subject.startswith("ip:") else subject
    if not value.isascii():
        return None
    return json.dumps(value).encode()


# The part of a window searched for the needle in blocks rather than line by line.
BLOCK = 8 << 20


def _needle_lines(f: io.BufferedReader, begin: int, stop: int, needle: bytes) -> Iterator[bytes]:
    """The whole lines in ``[begin, stop)`` that contain ``needle``, found by ``find`` on
    blocks read into one buffer (C speed, no copy but the read) instead of a Python loop
    over every line. Leaves ``f`` at the first line not searched whole."""
    f.seek(begin)
    if begin:
        f.readline()  # the rest of a line the seek landed in
    at = f.tell()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    while at < stop:
        f.seek(at)
        n = f.readinto(view[: min(BLOCK, stop - at)])
        cut = buf.rfind(b"\n", 0, n) + 1 if n else 0
        if not cut:
            break  # no whole line left before ``stop`` (or one longer than a block)
        pos = buf.find(needle, 0, cut)
        while pos >= 0:
            start = buf.rfind(b"\n", 0, pos) + 1
            end = buf.find(b"\n", pos, cut) + 1
            yield bytes(view[start:end])
            pos = buf.find(needle, end, cut)
        at += cut
    f.seek(at)


def read_window(
    path: Path, since: datetime, until: datetime, needle: bytes | None = None
) -> Iterator[LogLine]:
    """Every line of one log file with ``since <= time < until`` (seeking to ``since``).

    With ``needle``, lines without those bytes are skipped undecoded (so they are not
    yielded): up to about ``until`` the window is searched for the needle in blocks;
    after it, lines are read one by one, by the time at their start, to know where the
    window ends."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        begin = _seek(f, size, since - SLACK)
        candidates: Iterator[bytes] = iter(())
        if needle is not None:
            # Every line before this offset is (nearly) before ``until``.
            stop = max(begin, _seek(f, size, until))
            candidates = _needle_lines(f, begin, stop, needle)
        else:
            f.seek(begin)
            if begin:
                f.readline()
        late = until + SLACK
        # Whole seconds at or past this end the window (late carries SLACK to spare).
        late_stamp = _stamp(late + timedelta(seconds=1))
        start, end = len(TIME_PREFIX), len(TIME_PREFIX) + len(late_stamp)
        for raw in _chain(candidates, f):
            if needle is not None and needle not in raw and raw.startswith(TIME_PREFIX):
                if raw[start:end] >= late_stamp:
                    return
                continue
            data = _parse(raw)
            if data is None or (at := _time(data)) is None:
                continue
            if at >= late:
                return
            if since <= at < until:
                yield _line(data, at)


def _chain(first: Iterator[bytes], f: BinaryIO) -> Iterator[bytes]:
    """``first`` to its end, then the file's lines from where ``first`` left it."""
    yield from first
    yield from f


def log_files(access_log: Path) -> list[Path]:
    """The current log and its uncompressed rotations, oldest first."""
    rotated = []
    for candidate in access_log.parent.glob(access_log.name + ".*"):
        suffix = candidate.name[len(access_log.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    return [p for _, p in sorted(rotated, reverse=True)] + [access_log]


def matches(line: LogLine, subject: str) -> bool:
    """Is this line the subject's: a user name, or ``ip:ADDRESS`` for nobody signed in."""
    if subject.startswith("ip:"):
        return not line.user and line.client_ip == subject[3:]
    return line.user == subject


def activity(access_log: Path, subject: str, since: datetime, until: datetime) -> Iterator[LogLine]:
    """The subject's lines between two times, across the rotated files, oldest first."""
    needle = needle_of(subject)
    for path in log_files(access_log):
        for line in read_window(path, since, until, needle):
            if matches(line, subject):
                yield line
