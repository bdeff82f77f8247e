"""The access log: one JSON line per request, written off the request path.

structlog renders each line on the request path (time first, JSON); the
rendered line goes on a queue, and one writer thread takes whatever has
queued, writes it with one ``write`` and flushes once, so a slow disk never
slows a request and a busy proxy pays one system call for many lines.
Before each such batch the writer checks that the path still names the file
it has open, and reopens it after logrotate has moved it (what the
standard library's ``WatchedFileHandler`` does, but once per batch instead
of once per line).

Why not the standard library's ``QueueHandler``/``QueueListener`` with a
``WatchedFileHandler``, as this module used before: per line they build a
``LogRecord``, format and copy it in ``QueueHandler.prepare``, then ``stat``
the path, write and flush. Under ``make bench`` (HTTP, one worker) that was
about 120 µs of CPU per request, a tenth of what bare mitmdump spends on the
whole request; this writer costs about a fifth of that (``python -m
bench.proxies --only http``: the ``schoolgate-1w-allow`` row).

The file is created private to the service user (0600), like every file in
the data folder. What a crash loses: the lines still queued or in the
writer's buffer (at most one batch, written within milliseconds of being
queued).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import IO, Any

import structlog
from structlog.typing import EventDict

log = logging.getLogger("schoolgate.accesslog")

# Lines taken off the queue per write at most: bounds one batch's memory.
BATCH_LINES = 2048


def time_first(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Put the time first and drop structlog's event name: every line is a request."""
    event.pop("event", None)
    return {"time": event.pop("time"), **event}


class _QueueLogger:
    """structlog's final logger here: the rendered line goes on the writer's queue."""

    def __init__(self, lines: queue.SimpleQueue[str | None]) -> None:
        self._put = lines.put

    def info(self, line: str) -> None:
        self._put(line)


class AccessLog:
    """Start once, ``write(**fields)`` per request, ``stop()`` to flush."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        # bind() once: wrap_logger gives a lazy proxy that builds a new bound logger on
        # every call (19.5 µs a line here, 12.8 µs bound once).
        self._log = structlog.wrap_logger(
            _QueueLogger(self._queue),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
                time_first,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        ).bind()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the open file

    def start(self) -> None:
        if self._thread is None:
            # The file exists from the start, as it did with the handler this replaced: a
            # reader (the console, a test, a tail -f) never finds the path missing. If it
            # cannot be made now, the writer tries again with each batch.
            try:
                self._current()
            except OSError as exc:
                log.error("access log %s cannot be opened yet: %s", self.path, exc)
            self._thread = threading.Thread(
                target=self._run, name="schoolgate access log", daemon=True
            )
            self._thread.start()

    def write(self, **fields: Any) -> None:
        self._log.info("request", **fields)

    def stop(self) -> None:
        """Write every line queued so far, then close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._close()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            lines: list[str] = []
            stopping = first is None
            if first is not None:
                lines.append(first)
            while not stopping and len(lines) < BATCH_LINES:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    stopping = True
                else:
                    lines.append(line)
            if lines:
                try:
                    self._write(lines)
                except Exception:  # a full disk or a bug: say so, keep the thread for later lines
                    log.exception("access log: %d lines could not be written", len(lines))
                    self._close()
            if stopping:
                return

    def _write(self, lines: list[str]) -> None:
        f = self._current()
        f.write("\n".join(lines) + "\n")
        f.flush()

    def _current(self) -> IO[str]:
        """The open file, reopened if logrotate (or anyone) moved or removed the path."""
        try:
            st = os.stat(self.path)
            now = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now = None
        if self._file is not None and now == self._identity:
            return self._file
        self._close()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        st = os.fstat(fd)
        self._identity = (st.st_dev, st.st_ino)
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
            self._identity = None
