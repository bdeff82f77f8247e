"""The spool: events waiting on disk for the store to come back.

One JSON line per event, appended in order and fsync'd before ``append``
returns, so an event the writer has spooled survives the process being
killed. A line torn by a crash in mid-write is skipped on reading (it was
never confirmed). ``clear`` empties the file only after every event in it
is committed; a crash between the two replays events the store already
has, which ``applied_events`` turns into no-ops.

Each process writes its own spool (``run --workers`` names them by worker)
and holds an advisory lock on it while it runs, so a writer can tell a
spool whose process is gone (after a crash, or a restart with fewer
workers) from a live one, and replay the orphan itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from proxy.store.events import Event

log = logging.getLogger("schoolgate.spool")


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def lock(self) -> bool:
        """Claim this spool for this process; False when a live process holds it."""
        if self._lock_fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(e.to_json() + "\n" for e in events).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.path.parent)

    def read(self) -> list[Event]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        events = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(Event.from_json(line))
            except (ValueError, KeyError):
                log.error(
                    "%s:%d: unreadable spooled event skipped (torn write?)", self.path, number
                )
        return events

    def __len__(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def clear(self) -> None:
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
