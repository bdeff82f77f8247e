"""The background writer: the one place the proxy writes to the store.

Hooks call ``enqueue`` (a queue put: no I/O on the request path). Two
threads do the rest, so a store that is down, slow or hung never holds up
making an event durable:

- the *spooling* thread takes whatever is queued and appends it to the
  fsync'd spool: at once when it has been idle, otherwise at most one append
  per ``SPOOL_EVERY_S`` (50 ms), everything queued meanwhile in the same
  fsync. A spool write that fails (a full disk) is retried with
  back-off while the events are held in memory, up to ``HOLD_MAX``;
- the *applying* thread waits until the spool has something, lingers
  ``LINGER_S`` so that a busy proxy's events go in one transaction, and
  applies the spool to the store in order (``Spool.rotate``/``batches``),
  one transaction per ``BATCH``. When the store is down it tries again every
  ``retry_s``; the events wait in the spool meanwhile, and are replayed on a
  later try or on the next start after a crash.

A *supervisor* thread restarts either thread if it dies, and is the
watchdog for a hung store: a transaction still running after
``apply_timeout_s`` (longer than every timeout the engine sets) is broken
with ``engine.interrupt``, which counts as the store being down.

Replays are exactly-once through ``applied_events``. An event the store
refuses for a reason other than being down (a bug, bad data) is set aside in
``rejected.jsonl`` so it cannot block those behind it.

With several processes (``run --workers``) each writes its own spool, named
by the caller; a spool left by a process that is gone is replayed by
whichever writer finds it unlocked (``Spool.lock``).

What a crash can lose, written down honestly: the events between ``enqueue``
and the end of the spool's fsync, i.e. events queued or in the append being
written, and no more. That window is at most ``SPOOL_EVERY_S`` (waiting for
the next append when the last was moments ago) plus the time one fsync of the
spool takes (milliseconds on an idle disk; ``durable`` records each event's,
and the integration fault test holds it to 100 ms), on SQLite and PostgreSQL alike:
the store is never on that path. The exception is a full disk: events held in
memory because the spool cannot be written are lost by a crash before space
returns, and past ``HOLD_MAX`` the newest are dropped (counted and logged),
since the oldest are the first sign of what happened and later hits by the
same person mostly roll up into the incidents already held.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine

from proxy.store import migrate
from proxy.store.engine import down_reason, interrupt, is_down, session
from proxy.store.events import Event, apply_events
from proxy.store.spool import Spool

log = logging.getLogger("schoolgate.writer")

SPOOL_DIR = "spool"
BATCH = 500
# The spooler's pace: at most one append (one fsync) per SPOOL_EVERY_S. An event that
# finds the spooler idle for longer is written at once; one that comes sooner waits out
# the rest of the interval and shares the next fsync with whatever else came. Without it
# every incident woke the spooler: in the `make bench` HTTP row (one worker on one core,
# ~75 incidents a second) the proxy spent 1.03-1.04 ms of CPU per request against
# 0.88-0.90 with the same blocks raising no incident; 0.95-0.99 at 0.05 s (91-94% of
# bare mitmdump at 0.025 s, 93-98% at 0.05 s). The cost in the crash window: at most
# this pause plus one fsync (README, "what a crash can lose").
SPOOL_EVERY_S = 0.05
# The applier's linger: one transaction (and one spool rotation) per second at most. At
# 0.1 s, a proxy raising ~40 incidents a second spent 4x the CPU on begin/commit and
# rotating files (0.38 s against 0.10 s in a 5 s `make bench` HTTP run). It is not the
# crash window (that is the spool's fsync); it is how late the console sees an incident.
LINGER_S = 1.0
RETRY_S = 1.0
ORPHAN_CHECK_S = 60.0
# A transaction longer than this is taken to be hung and is broken (engine timeouts are
# shorter: connect 3 s, statement and lock 10 s on the writer's engine).
APPLY_TIMEOUT_S = 15.0
# Events held in memory while the spool cannot be written (about 2 KiB each).
HOLD_MAX = 20_000
# Spool write retries after a failure: from the first to the last, doubling.
SPOOL_RETRY_FIRST_S = 0.05
SPOOL_RETRY_MAX_S = 2.0
SUPERVISE_S = 0.5
DROP_LOG_S = 10.0
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
        spool_every_s: float = SPOOL_EVERY_S,
        prepare: Callable[[Engine], None] = migrate.upgrade,
        name: str = "events",
        hold_max: int = HOLD_MAX,
        apply_timeout_s: float = APPLY_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.spool_dir = data_dir / SPOOL_DIR
        self.spool = Spool(self.spool_dir / f"{name}.jsonl")
        self.rejected = Spool(self.spool_dir / "rejected.jsonl")
        self.retry_s = retry_s
        self.linger_s = linger_s
        self.spool_every_s = spool_every_s
        self.hold_max = hold_max
        self.apply_timeout_s = apply_timeout_s
        self._prepare = prepare
        self._prepared = False
        self._queue: queue.SimpleQueue[tuple[float, Event] | object] = queue.SimpleQueue()
        # Taken off the queue but not yet on disk (the spool could not be written).
        self._held: collections.deque[tuple[float, Event]] = collections.deque()
        self._state = threading.Lock()  # guards the counters below, shared by the threads
        self._depth = len(self.spool)  # on disk, not yet in the store
        self._oldest: float | None = None  # epoch seconds of the oldest unapplied event
        if self._depth:
            first = self.spool.first()
            self._oldest = first.when.timestamp() if first is not None else time.time()
        self._leftover = self._depth > 0  # left by a crash: replaying it is worth a log line
        self._offset = 0  # bytes of the applying file already in the store
        self._wake = threading.Event()  # spooled something: the applier has work
        self._stopping = threading.Event()
        self._halted = threading.Event()
        self._spooler_done = threading.Event()
        # Events enqueued (or found on disk at start) and not yet through the store.
        self._pending = self._depth
        self._threads: dict[str, threading.Thread] = {}
        self._busy_since: float | None = None  # monotonic start of the store call in progress
        self._busy_broken = False
        self._next_try = 0.0
        self._next_orphans = 0.0
        self._spool_failing: str | None = None
        self._spool_next_try = 0.0
        self._spool_backoff = 0.0
        self._last_append = float("-inf")  # monotonic start of the last spool append
        self._last_drop_log = 0.0
        self.applied = 0
        self.duplicates = 0
        self.dropped = 0
        self.restarts = 0
        self.interrupts = 0
        self.down: str | None = None
        # Called with each event's seconds from enqueue to fsync'd (the crash window).
        self.durable: Callable[[float], None] | None = None
        self.window_max = 0.0

    # --- the hooks' side ---------------------------------------------------------------

    def enqueue(self, event: Event) -> None:
        with self._state:
            self._pending += 1
        self._queue.put((time.monotonic(), event))

    def start(self) -> None:
        if self._threads:
            return
        try:
            if not self.spool.lock():
                # Another live process writes under this name: keep a spool of our own.
                taken = self.spool.path
                self.spool = Spool(self.spool_dir / f"events-pid{os.getpid()}.jsonl")
                self.spool.lock()
                with self._state:
                    self._pending += len(self.spool) - self._depth
                    self._depth = len(self.spool)
                log.warning(
                    "%s is in use by another process; spooling to %s", taken, self.spool.path
                )
        except OSError as exc:  # a full or read-only disk: the spooler keeps trying to write
            log.error("cannot lock the spool %s: %s", self.spool.path, exc)
        for name in ("spooler", "applier", "supervisor"):
            self._start_thread(name)

    def _start_thread(self, name: str) -> None:
        target = {
            "spooler": self._spool_loop,
            "applier": self._apply_loop,
            "supervisor": self._supervise_loop,
        }[name]
        thread = threading.Thread(target=target, name=f"schoolgate writer {name}", daemon=True)
        self._threads[name] = thread
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Spool everything queued, apply what the store takes, then end the threads."""
        if not self._threads:
            return
        self._queue.put(_STOP)
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for name in ("spooler", "applier", "supervisor"):
            self._threads[name].join(max(0.0, deadline - time.monotonic()))
        self._threads = {}
        self.spool.unlock()

    def abandon(self) -> None:
        """End the threads at once without spooling or applying more: what a crash does to
        them (for tests; the spool lock is released as the kernel would)."""
        self._halted.set()
        self._stopping.set()
        self._queue.put(_STOP)
        for thread in self._threads.values():
            thread.join(5)
        self._threads = {}
        self.spool.unlock()

    @property
    def spooled(self) -> int:
        """Events in the spool on disk, not yet in the store."""
        return self._depth

    @property
    def held(self) -> int:
        """Events held in memory because the spool could not be written (not those merely
        on their way to it)."""
        return len(self._held) if self._spool_failing is not None else 0

    @property
    def up(self) -> bool:
        """The threads are alive, no store call is hung and the store took the last write."""
        alive = bool(self._threads) and all(t.is_alive() for t in self._threads.values())
        return alive and self.down is None and not self._stuck() and self._spool_failing is None

    def oldest_age(self, now: float | None = None) -> float:
        """Seconds since the oldest event not yet in the store was recorded (0 when none)."""
        oldest = self._oldest
        if oldest is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - oldest)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every event enqueued (or spooled at start) is through (for tests)."""
        deadline = time.monotonic() + timeout
        while self._pending > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # --- the spooling thread -------------------------------------------------------------

    def _spool_loop(self) -> None:
        while not self._spooler_done.is_set() and not self._halted.is_set():
            try:
                self._spool_step()
            except Exception:  # the spooler outlives any one failure; the events are held
                log.exception("spooling failed; the events are held and tried again")
                time.sleep(SPOOL_RETRY_FIRST_S)

    def _spool_step(self) -> None:
        wait = 0.5
        if self._held:  # a failed write: back off before the next
            wait = max(0.0, self._spool_next_try - time.monotonic())
        stop = False
        try:
            items = [self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()]
        except queue.Empty:
            items = []
        if items and items[0] is not _STOP and not self._held:
            pause = self._last_append + self.spool_every_s - time.monotonic()
            if pause > 0:  # appended moments ago: this event shares the next fsync
                time.sleep(pause)
        while True:  # everything queued now goes in the same fsync
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if self._halted.is_set():
            return
        for item in items:
            if item is _STOP:
                stop = True
            else:
                assert isinstance(item, tuple)
                self._hold(item)
        if self._held and (stop or time.monotonic() >= self._spool_next_try):
            self._write_held()
        if stop:
            if self._held:
                log.error(
                    "stopping with %d events the spool could not take: they are lost",
                    len(self._held),
                )
            self._spooler_done.set()
            self._wake.set()

    def _hold(self, item: tuple[float, Event]) -> None:
        if len(self._held) >= self.hold_max:
            # Keep the oldest: the newest are most likely repeats that roll up anyway.
            self.dropped += 1
            with self._state:
                self._pending -= 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_S:
                self._last_drop_log = now
                log.error(
                    "spool unwritable and %d events held in memory: dropping the newest "
                    "(%d dropped so far)",
                    len(self._held),
                    self.dropped,
                )
            return
        if not self._held:
            with self._state:
                if self._oldest is None:
                    self._oldest = item[1].when.timestamp()
        self._held.append(item)

    def _write_held(self) -> None:
        batch = list(self._held)
        self._last_append = time.monotonic()
        try:
            self.spool.append([event for _, event in batch])
        except OSError as exc:
            self._spool_backoff = min(
                SPOOL_RETRY_MAX_S, max(SPOOL_RETRY_FIRST_S, self._spool_backoff * 2)
            )
            self._spool_next_try = time.monotonic() + self._spool_backoff
            reason = f"{exc.strerror or exc}"
            if self._spool_failing is None:
                log.error(
                    "cannot write the spool %s (%s): holding events in memory, retrying",
                    self.spool.path,
                    reason,
                )
            self._spool_failing = reason
            return
        done = time.monotonic()
        for _ in range(len(batch)):
            self._held.popleft()
        with self._state:
            self._depth += len(batch)
            if self._oldest is None:
                self._oldest = batch[0][1].when.timestamp()
        if self._spool_failing is not None:
            log.warning("spool writable again: %d held events spooled", len(batch))
            self._spool_failing = None
        self._spool_backoff = 0.0
        for queued, _ in batch:
            seconds = done - queued
            self.window_max = max(self.window_max, seconds)
            if self.durable is not None:
                self.durable(seconds)
        self._wake.set()

    # --- the applying thread -------------------------------------------------------------

    def _apply_loop(self) -> None:
        while not self._halted.is_set():
            final = self._spooler_done.is_set()
            try:
                self._apply_step(final)
            except Exception:  # the applier outlives any one failure; the spool is kept
                log.exception("writing the spool failed; it is kept for the next try")
                self._next_try = time.monotonic() + self.retry_s
            if final:
                return

    def _apply_step(self, final: bool) -> None:
        if not final:
            # Sleep until something is spooled, a retry is due, or a stop.
            if self._depth == 0:
                self._wake.wait(self.retry_s / 2)
            elif self.down is not None:
                self._wake.wait(max(0.0, self._next_try - time.monotonic()))
            if self._stopping.is_set() and not self._spooler_done.is_set():
                self._spooler_done.wait(1.0)
            elif self._depth and self.down is None and not self._stopping.is_set():
                # Linger, so a busy proxy's events go to the store in one transaction.
                self._stopping.wait(self.linger_s)
            self._wake.clear()
        if self._halted.is_set():
            return
        if self._depth and (self.down is None or final or time.monotonic() >= self._next_try):
            self._replay()
        if not final and self.down is None and time.monotonic() >= self._next_orphans:
            self._next_orphans = time.monotonic() + ORPHAN_CHECK_S
            try:
                self._adopt_orphans()
            except Exception:
                log.exception("replaying another process's spool failed; tried again later")

    def _replay(self) -> None:
        recovering = self.down is not None or self._leftover
        total = 0
        while self.spool.rotate():
            for batch, end, lines in self.spool.batches(BATCH, self._offset):
                if batch:
                    with self._state:
                        self._oldest = batch[0].when.timestamp()
                    if not self._write(batch):
                        return
                self._offset = end
                total += len(batch)
                with self._state:
                    self._depth = max(0, self._depth - lines)
                    self._pending -= lines
                    if self._depth == 0 and not self._held:
                        self._oldest = None
            self.spool.finish()
            self._offset = 0
        with self._state:
            if self._depth == 0 and not self._held:
                self._oldest = None
        # Every batch passes through the spool; only a catch-up after an outage is news.
        log.log(logging.INFO if recovering else logging.DEBUG, "applied %d spooled events", total)
        self._leftover = False

    def _adopt_orphans(self) -> None:
        """Replay the spools of processes that are gone (a crash, fewer workers after a restart)."""
        for path in Spool.names(self.spool_dir, "events*"):
            if path == self.spool.path:
                continue
            orphan = Spool(path)
            if not orphan.lock():
                continue  # its process is alive and will replay it itself
            try:
                count = 0
                while orphan.rotate():
                    for batch, _, _ in orphan.batches(BATCH):
                        if batch and not self._write(batch):
                            return
                        count += len(batch)
                    orphan.finish()
                if count:
                    log.info("replayed %d events left in %s", count, path)
                for leftover in (orphan.path, orphan.lock_path):
                    leftover.unlink(missing_ok=True)
            finally:
                orphan.unlock()

    def _write(self, batch: Sequence[Event]) -> bool:
        """Apply a batch in one transaction; False (and note why) when the store is down."""
        try:
            if not self._prepared:
                self._guarded(lambda: self._prepare(self.engine))
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

    def _guarded(self, call: Callable[[], None]) -> None:
        """Run a store call under the supervisor's watch (``apply_timeout_s``)."""
        self._busy_broken = False
        self._busy_since = time.monotonic()
        try:
            call()
        finally:
            self._busy_since = None

    def _apply(self, batch: Sequence[Event]) -> None:
        def run() -> None:
            with session(self.engine) as s:
                for applied in apply_events(s, batch):  # incidents: a few statements a batch
                    self._count(applied)

        try:
            self._guarded(run)
        except Exception as exc:
            if is_down(exc) or self._busy_broken or len(batch) == 1:
                if not is_down(exc) and not self._busy_broken:
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

    # --- the supervisor ------------------------------------------------------------------

    def _stuck(self) -> bool:
        since = self._busy_since
        return since is not None and time.monotonic() - since > self.apply_timeout_s

    def _supervise_loop(self) -> None:
        while not self._stopping.wait(SUPERVISE_S):
            try:
                self.supervise()
            except Exception:
                log.exception("the writer's supervisor failed a round")

    def supervise(self) -> None:
        """Restart a dead thread; break a store call that has hung."""
        for name in ("spooler", "applier"):
            thread = self._threads.get(name)
            if thread is not None and not thread.is_alive() and not self._stopping.is_set():
                self.restarts += 1
                log.error("the writer's %s thread died; restarting it", name)
                self._start_thread(name)
        if self._stuck() and not self._busy_broken:
            self._busy_broken = True
            self.interrupts += 1
            hit = interrupt(self.engine)
            log.error(
                "a store call has not returned in %.0f s: broke it (%d connections)",
                self.apply_timeout_s,
                hit,
            )
