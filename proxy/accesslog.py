"""The access log: one JSON line per request, written off the request path.

structlog renders each line; a stdlib ``QueueHandler`` hands it to a
listener thread that does the file I/O, so a slow disk never slows a
request. ``WatchedFileHandler`` reopens the file after logrotate moves it.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict


def time_first(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Put the time first and drop structlog's event name: every line is a request."""
    event.pop("event", None)
    return {"time": event.pop("time"), **event}


class AccessLog:
    """Start once, ``write(**fields)`` per request, ``stop()`` to flush."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._logger = logging.getLogger(f"schoolgate.access.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        file_handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(message)s"))
        self._listener = logging.handlers.QueueListener(self._queue, file_handler)
        self._file_handler = file_handler
        self._log = structlog.wrap_logger(
            self._logger,
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
                time_first,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._listener.start()
            self._started = True

    def write(self, **fields: Any) -> None:
        self._log.info("request", **fields)

    def stop(self) -> None:
        if self._started:
            self._listener.stop()
            self._started = False
        self._file_handler.close()
