"""StoreWriter: the proxy's one writer to the SQL store, started and flushed with the proxy.

Other addons call ``record(event)``: a queue put, no I/O on the request
path. The writer thread batches events into the store, or spools them to
``DATA_DIR/spool/`` while the store is down and replays them in order,
exactly once, when it answers again (``proxy.store.writer``). At start the
schema is brought up to date, as ``schoolgate db upgrade`` would; a store
that is down then only delays that, the proxy starts anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os

from addons import facts
from proxy.store import migrate
from proxy.store.engine import database_url, down_reason, is_down, make_engine
from proxy.store.events import Event
from proxy.store.writer import Writer
from proxy.workers import WORKER_ENV

log = logging.getLogger("schoolgate.store")


class StoreWriter:
    def __init__(self, loader: facts.Policies) -> None:
        settings = loader.filterset.settings
        # The database is chosen at start; changing `database:` needs a restart.
        self.engine = make_engine(database_url(settings))
        # Each worker of `run --workers` keeps its own spool (proxy.store.spool).
        worker = os.environ.get(WORKER_ENV)
        name = f"events-{worker}" if worker else "events"
        self.writer = Writer(self.engine, settings.data_dir, name=name)

    def record(self, event: Event) -> None:
        """Hand an event to the writer (safe from any hook or thread)."""
        self.writer.enqueue(event)

    async def running(self) -> None:
        try:
            await asyncio.to_thread(migrate.upgrade, self.engine)
        except Exception as exc:  # the writer tries again before its first write
            if is_down(exc):
                log.warning("store unavailable at start (events are spooled): %s", down_reason(exc))
            else:
                log.exception("store upgrade failed at start; the writer tries again")
        self.writer.start()

    def done(self) -> None:
        self.writer.stop()
        self.engine.dispose()
