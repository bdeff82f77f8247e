"""The background writer: the one place the proxy writes to the store.

Hooks call ``enqueue`` (a queue put: no I/O on the request path). One
thread takes events off the queue in batches and writes each batch to the
fsync'd spool first, then applies the spool to the store in one
transaction per batch and empties it. When the store is down the events
stay in the spool, behind any already there, and are replayed in order
once it answers again, on a later try or on the next start after a crash.
Replays are exactly-once through ``applied_events``. An event the store
refuses for a reason other than being down (a bug, bad data) is set aside
in ``rejected.jsonl`` so it cannot block those behind it.

With several processes (``run --workers``) each writes its own spool, named
by the caller; a spool left by a process that is gone is replayed by
whichever writer finds it unlocked (``Spool.lock``).

Loss window, written down honestly: an event is safe once the writer
thread has appended it to the spool. The thread lingers ``LINGER_S``
(100 ms) after taking the first event of a batch, collecting whatever
else arrives (up to ``BATCH``), and then spools the batch at once; events
still in the queue or in the lingering batch when the process is killed
are lost, so the window is about ``LINGER_S`` plus one write. The linger is
what keeps the price (two fsyncs and one store transaction per batch) low
under load: a busy proxy raises tens of incidents a second, and without it
nearly every event was a batch of its own. A stop (``_STOP``) ends the
linger at once, so shutdown is not delayed.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine

from proxy.store import migrate
from proxy.store.engine import down_reason, is_down, session
from proxy.store.events import Event, apply_events
from proxy.store.spool import Spool

log = logging.getLogger("schoolgate.writer")

SPOOL_DIR = "spool"
BATCH = 500
LINGER_S = 0.1
RETRY_S = 1.0
ORPHAN_CHECK_S = 60.0
_STOP = object()


class Writer:
    """``start()``, ``enqueue(event)`` from anywhere, ``stop()`` to flush and finish."""

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        *,
        retry_s: float = RETRY_S,
        linger_s: float = LINGER_S,
        prepare: Callable[[Engine], None] = migrate.upgrade,
        name: str = "events",
    ) -> None:
        self.engine = engine
        self.spool_dir = data_dir / SPOOL_DIR
        self.spool = Spool(self.spool_dir / f"{name}.jsonl")
        self.rejected = Spool(self.spool_dir / "rejected.jsonl")
        self._next_orphans = 0.0
        self.retry_s = retry_s
        self.linger_s = linger_s
        self._prepare = prepare
        self._prepared = False
        self._queue: queue.SimpleQueue[Event | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._spooled = len(self.spool)
        self._leftover = self._spooled > 0  # left by a crash: replaying it is worth a log line
        self._next_try = 0.0
        self._idle = threading.Event()
        self.applied = 0
        self.duplicates = 0
        self.down: str | None = None

    # --- the hooks' side ---------------------------------------------------------------

    def enqueue(self, event: Event) -> None:
        self._idle.clear()
        self._queue.put(event)

    def start(self) -> None:
        if self._thread is None:
            if not self.spool.lock():
                # Another live process writes under this name: keep a spool of our own.
                taken = self.spool.path
                self.spool = Spool(self.spool_dir / f"events-pid{os.getpid()}.jsonl")
                self.spool.lock()
                self._spooled = len(self.spool)
                log.warning(
                    "%s is in use by another process; spooling to %s", taken, self.spool.path
                )
            self._thread = threading.Thread(target=self._run, name="schoolgate writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write or spool everything queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        self.spool.unlock()

    @property
    def spooled(self) -> int:
        return self._spooled

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the queue is empty and nothing is spooled (for tests and shutdown)."""
        return self._idle.wait(timeout)

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take()
            self._step(batch, final=stopping)
            if not batch and self._spooled == 0 and self._queue.empty():
                self._idle.set()

    def _take(self) -> tuple[list[Event], bool]:
        batch: list[Event] = []
        try:
            item = self._queue.get(timeout=self.retry_s / 2)
        except queue.Empty:
            return batch, False
        # Linger a moment after the first event, so a busy proxy writes many events per batch.
        deadline = time.monotonic() + self.linger_s
        while True:
            if item is _STOP:
                return batch, True
            assert isinstance(item, Event)
            batch.append(item)
            if len(batch) >= BATCH:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch, False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return batch, False

    def _step(self, batch: list[Event], final: bool) -> None:
        # Durable first, behind whatever already waits there: order is the spool's order.
        self._spool(batch)
        # While the store is down, try again only every retry_s (and once more at the end).
        if self._spooled and (self.down is None or final or time.monotonic() >= self._next_try):
            try:
                self._replay()
            except Exception:  # the writer outlives any one failure; the spool is kept
                log.exception("writing the spool failed; it is kept for the next try")
                self._next_try = time.monotonic() + self.retry_s
        if not final and self.down is None and time.monotonic() >= self._next_orphans:
            self._next_orphans = time.monotonic() + ORPHAN_CHECK_S
            try:
                self._adopt_orphans()
            except Exception:
                log.exception("replaying another process's spool failed; tried again later")

    def _adopt_orphans(self) -> None:
        """Replay the spools of processes that are gone (a crash, fewer workers after a restart)."""
        for path in sorted(self.spool_dir.glob("events*.jsonl")):
            if path == self.spool.path:
                continue
            orphan = Spool(path)
            if not orphan.lock():
                continue  # its process is alive and will replay it itself
            try:
                events = orphan.read()
                for start in range(0, len(events), BATCH):
                    if not self._write(events[start : start + BATCH]):
                        return
                if events:
                    orphan.clear()
                    log.info("replayed %d events left in %s", len(events), path)
            finally:
                orphan.unlock()

    def _spool(self, batch: Sequence[Event]) -> None:
        if batch:
            self.spool.append(batch)
            self._spooled += len(batch)

    def _write(self, batch: Sequence[Event]) -> bool:
        """Apply a batch in one transaction; False (and note why) when the store is down."""
        try:
            if not self._prepared:
                self._prepare(self.engine)
                self._prepared = True
            self._apply(batch)
        except Exception as exc:
            if not is_down(exc):
                raise
            if self.down is None:
                log.warning("store unavailable, spooling events: %s", down_reason(exc))
            self.down = down_reason(exc)
            self._next_try = time.monotonic() + self.retry_s
            return False
        if self.down is not None:
            log.warning("store available again")
            self.down = None
        return True

    def _apply(self, batch: Sequence[Event]) -> None:
        try:
            with session(self.engine) as s:
                for applied in apply_events(s, batch):  # incidents: a few statements a batch
                    self._count(applied)
        except Exception as exc:
            if is_down(exc) or len(batch) == 1:
                if not is_down(exc):
                    log.exception("event %s refused by the store; set aside", batch[0].id)
                    self.rejected.append(batch)
                    return
                raise
            # One bad event must not hold back the rest: apply them one by one.
            for event in batch:
                self._apply([event])

    def _count(self, applied: bool) -> None:
        if applied:
            self.applied += 1
        else:
            self.duplicates += 1

    def _replay(self) -> None:
        recovering = self.down is not None or self._leftover
        events = self.spool.read()
        for start in range(0, len(events), BATCH):
            if not self._write(events[start : start + BATCH]):
                return
        self.spool.clear()
        # Every batch passes through the spool; only a catch-up after an outage is news.
        log.log(
            logging.INFO if recovering else logging.DEBUG, "replayed %d spooled events", len(events)
        )
        self._spooled = 0
        self._leftover = False
