"""Shared controls at once: PostgreSQL LISTEN/NOTIFY between the gateways of a trust.

Every change to an override or a suspension is a row in the change log;
``chain.append`` then calls ``announce``, which queues a NOTIFY on the
channel ``schoolgate_controls``. PostgreSQL delivers it when (and only if)
that transaction commits, to every gateway listening, at every site.
``Listener`` is that gateway's side: a thread holding one autocommit
connection with ``LISTEN``, calling ``wake`` for each notification, so the
Overrides addon reads a fresh snapshot within a moment instead of at its
next poll. The poll stays as the fallback: a listener that cannot connect
(the database is away) retries quietly, and a notification missed while
it was away is made up by the next poll. SQLite has no NOTIFY: nothing to
listen to, the poll alone serves (one machine, one process group).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

log = logging.getLogger("schoolgate.notify")

CHANNEL = "schoolgate_controls"
CONNECT_TIMEOUT_S = 3
RETRY_S = 2.0
WAIT_S = 1.0  # how long one wait for a notification lasts before checking for a stop


def announce(session: Session) -> None:
    """Tell every listening gateway, when this transaction commits, that controls changed."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def conninfo(url: URL) -> str:
    """A libpq connection string for a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """A thread that calls ``wake()`` on every NOTIFY of ``CHANNEL``; ``stop()`` ends it."""

    def __init__(self, url: URL, wake: Callable[[], object]) -> None:
        self._conninfo = conninfo(url)
        self._wake = wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in force (for tests, health)
        self.received = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="schoolgate notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failing: str | None = None
        while not self._stop.is_set():
            try:
                self._listen()
                failing = None
            except Exception as exc:  # the database is away: the poll serves until it is back
                self.listening.clear()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if failing != reason:
                    log.warning("not listening for shared controls (polling meanwhile): %s", reason)
                failing = reason
                self._stop.wait(RETRY_S)

    def _listen(self) -> None:
        with psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            # Changes made while we were not listening: one refresh catches them up.
            self._wake()
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=WAIT_S):
                    self.received += 1
                    self._wake()
