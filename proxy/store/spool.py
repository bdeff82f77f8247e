"""The spool: events waiting on disk for the store to come back.

One JSON line per event, appended in order and fsync'd before ``append``
returns, so an event the writer has spooled survives the process being
killed. A line torn by a crash in mid-write is skipped on reading (it was
never confirmed). ``clear`` empties the file only after every event in it
is committed; a crash between the two replays events the store already
has, which ``applied_events`` turns into no-ops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from proxy.store.events import Event

log = logging.getLogger("schoolgate.spool")


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

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
