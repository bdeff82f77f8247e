"""The spool: events on disk, fsync'd, waiting to be applied to the store.

Every event the proxy records passes through here before the store is
tried, so an event once spooled survives the process being killed and the
store being down or hung. Two files per spool, both JSON lines:

- ``NAME.jsonl``, the *active* file: the writer's spooling thread appends
  to it and fsyncs before ``append`` returns;
- ``NAME.jsonl.applying``: the active file renamed (``rotate``) when the
  applying thread takes its contents to the store. New events go to a new
  active file meanwhile, so appending never waits for the store. Once every
  event in it is committed the file is removed (``finish``). A crash before
  that replays events the store already has, which ``applied_events`` turns
  into no-ops; the applying file is always older than the active one, so
  replay keeps the order events were recorded in.

A write that fails (a full disk) is cut back to where it started, so the
file never holds half a line the next append would glue onto; a line torn
by a crash in mid-write is cut off when the spool is next locked (it was
never confirmed), and any unreadable line is skipped on reading.

Each process writes its own spool (``run --workers`` names them by worker)
and holds an advisory lock on ``NAME.jsonl.lock`` while it runs, so a writer
can tell a spool whose process is gone (after a crash, or a restart with
fewer workers) from a live one, and replay the orphan itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from proxy.store.events import Event

log = logging.getLogger("schoolgate.spool")

APPLYING = ".applying"
LOCK = ".lock"


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.applying = path.with_name(path.name + APPLYING)
        self.lock_path = path.with_name(path.name + LOCK)
        self._lock_fd: int | None = None
        # Appending and rotating must not interleave (the rename would split a write).
        self._mutex = threading.Lock()

    @staticmethod
    def names(folder: Path, pattern: str) -> list[Path]:
        """The spools (by their active path) that have files in ``folder`` matching ``pattern``."""
        found = set(folder.glob(pattern + ".jsonl"))
        rotated = folder.glob(pattern + ".jsonl" + APPLYING)
        found |= {p.with_name(p.name[: -len(APPLYING)]) for p in rotated}
        return sorted(found)

    def lock(self) -> bool:
        """Claim this spool for this process; False when a live process holds it."""
        if self._lock_fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        self._cut_torn_tail()
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _cut_torn_tail(self) -> None:
        """Drop a last line without its newline: a write the crash cut short, never confirmed."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return
            keep = size
            step = 4096
            while keep > 0:
                start = max(0, keep - step)
                chunk = os.pread(fd, keep - start, start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                keep = start
            if keep != size:
                log.error("%s: cut %d bytes of a torn last line", self.path, size - keep)
                os.ftruncate(fd, keep)
                os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, events: Sequence[Event]) -> None:
        """Append and fsync; on any error the file is as it was, and the error is raised."""
        if not events:
            return
        data = "".join(e.to_json() + "\n" for e in events).encode("utf-8")
        with self._mutex:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    os.fdatasync(fd)  # the data and the size that reaches it: all a reader needs
                except OSError:
                    # A full disk may have taken part of the data: cut it back (truncating
                    # needs no space), so no half line is left for the next append.
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        log.exception("%s: could not cut back a failed write", self.path)
                    raise
            finally:
                os.close(fd)
            if new:
                _fsync_dir(self.path.parent)

    def rotate(self) -> bool:
        """Make sure the applying file holds the oldest unapplied events; False when none."""
        with self._mutex:
            if self.applying.exists():
                return True
            try:
                if self.path.stat().st_size == 0:
                    return False
            except FileNotFoundError:
                return False
            os.rename(self.path, self.applying)
            _fsync_dir(self.path.parent)
            return True

    def batches(self, size: int, offset: int = 0) -> Iterator[tuple[list[Event], int, int]]:
        """The applying file from byte ``offset``, ``size`` events at a time, each batch with
        the offset after it and the lines it took (unreadable ones included)."""
        try:
            f = self.applying.open("rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(offset)
            batch: list[Event] = []
            lines = 0
            while True:
                line = f.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    break  # never confirmed (the applying file is never appended to)
                if line.strip():
                    lines += 1
                event = self._parse(line, self.applying)
                if event is not None:
                    batch.append(event)
                if len(batch) >= size:
                    yield batch, f.tell(), lines
                    batch, lines = [], 0
            if batch or lines:
                yield batch, f.tell(), lines

    def finish(self) -> None:
        """Every event of the applying file is in the store: remove it."""
        try:
            self.applying.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.path.parent)

    @staticmethod
    def _parse(line: bytes, path: Path) -> Event | None:
        if not line.strip():
            return None
        try:
            return Event.from_json(line.decode("utf-8"))
        except (ValueError, KeyError):
            log.error("%s: unreadable spooled event skipped (torn write?)", path)
            return None

    def read(self) -> list[Event]:
        """Every event in the spool, oldest first (the applying file, then the active one)."""
        events = []
        for path in (self.applying, self.path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            for line in data.splitlines():
                event = self._parse(line, path)
                if event is not None:
                    events.append(event)
        return events

    def first(self) -> Event | None:
        """The oldest readable event in the spool, without reading all of it."""
        for path in (self.applying, self.path):
            try:
                with path.open("rb") as f:
                    for line in f:
                        event = self._parse(line, path)
                        if event is not None:
                            return event
            except FileNotFoundError:
                continue
        return None

    def __len__(self) -> int:
        total = 0
        for path in (self.applying, self.path):
            try:
                with path.open("rb") as f:
                    total += sum(1 for line in f if line.strip())
            except FileNotFoundError:
                pass
        return total

    def clear(self) -> None:
        """Empty the spool (both files)."""
        with self._mutex:
            self.finish()
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except FileNotFoundError:
                return
            try:
                os.ftruncate(fd, 0)
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
