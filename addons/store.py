"""StoreWriter: the proxy's one writer to the SQL store, started and flushed with the proxy.

Other addons call ``record(event)``: a queue put, no I/O on the request
path. The writer's threads spool every event to ``DATA_DIR/spool/`` (fsync'd)
at once, then apply the spool to the store in batches, replaying it in
order, exactly once, after the store was down, hung or the process killed;
a supervisor restarts a dead thread and breaks a hung store call
(``proxy.store.writer``). At start the schema is brought up to date, as
``schoolgate db upgrade`` would; a store that is down then only delays
that, the proxy starts anyway (the upgrade is abandoned after
``UPGRADE_TIMEOUT_S`` so a hung store cannot stop the proxy starting).
"""

from __future__ import annotations

import asyncio
import logging
import os

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from addons import facts
from proxy.store import migrate
from proxy.store.engine import database_url, down_reason, interrupt, is_down, make_engine
from proxy.store.events import Event
from proxy.store.site import set_site
from proxy.store.writer import APPLY_TIMEOUT_S, Writer
from proxy.workers import WORKER_ENV

log = logging.getLogger("schoolgate.store")
# The writer's statements are small writes: a shorter bound than reports and purges get.
WRITER_STATEMENT_TIMEOUT_MS = 10_000
UPGRADE_TIMEOUT_S = 20.0


class StoreWriter:
    def __init__(self, loader: facts.Policies) -> None:
        settings = loader.filterset.settings
        set_site(settings.site)  # every event this gateway raises names its site (a restart)
        # The database is chosen at start; changing `database:` needs a restart.
        self.engine = make_engine(
            database_url(settings), statement_timeout_ms=WRITER_STATEMENT_TIMEOUT_MS
        )
        # Each worker of `run --workers` keeps its own spool (proxy.store.spool).
        worker = os.environ.get(WORKER_ENV)
        name = f"events-{worker}" if worker else "events"
        self.writer = Writer(self.engine, settings.data_dir, name=name)

    def load(self, loader: Loader) -> None:
        # The fault tests shorten the watchdog so that a hung store is broken sooner than the
        # default's 15 s; the default is above every timeout the engine sets (proxy.store.writer).
        loader.add_option(
            "schoolgate_store_watchdog_ms",
            int,
            int(APPLY_TIMEOUT_S * 1000),
            "Milliseconds after which a store call still running is taken as hung and broken.",
        )

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_store_watchdog_ms" in updated:
            value = ctx.options.schoolgate_store_watchdog_ms
            if value <= 0:
                raise exceptions.OptionsError("schoolgate_store_watchdog_ms must be positive")
            self.writer.apply_timeout_s = value / 1000

    def record(self, event: Event) -> None:
        """Hand an event to the writer (safe from any hook or thread)."""
        self.writer.enqueue(event)

    async def running(self) -> None:
        # Spooling starts first: events recorded while the store is being upgraded (or is
        # down, or hung) are on disk at once, not waiting in memory.
        self.writer.start()
        try:
            await asyncio.wait_for(
                asyncio.to_thread(migrate.upgrade, self.engine), UPGRADE_TIMEOUT_S
            )
        except TimeoutError:
            interrupt(self.engine)  # the thread then fails and ends; the writer tries again
            log.warning("store upgrade at start timed out; events are spooled meanwhile")
        except Exception as exc:  # the writer tries again before its first write
            if is_down(exc):
                log.warning("store unavailable at start (events are spooled): %s", down_reason(exc))
            else:
                log.exception("store upgrade failed at start; the writer tries again")

    def done(self) -> None:
        self.writer.stop()
        self.engine.dispose()
