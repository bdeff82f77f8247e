"""Overrides: change control inside the proxy, with no I/O on the request path.

Every few seconds, off the event loop, it reads the approved overrides and
the suspensions in force into a frozen ``Controls`` snapshot and hands it
to ``PolicyLoader.controls``, which the filter passes to the decision. It
also turns what other parts leave in ``DATA_DIR`` into change-log events:
``list-updates.jsonl`` (one line per list update) and
``review-requests.jsonl`` (the block page's "request a review" form, which
become pending override requests, once each by reference). And it records
the policy in force at start and after every hot reload, so an edit made
without ``schoolgate policy apply`` appears in the log as unattributed, and
a hot-reloaded edit refused for weakening the illegal lists as refused.

With PostgreSQL the refresh is also woken at once by a NOTIFY
(``proxy.store.notify``): an override approved or a pupil suspended at any
site of the trust applies here within a moment; the poll is the fallback.

When the store is down the last snapshot stays in force: an override still
ends at its end time (the decision checks the time), and nothing new can
be approved without the store. Each new snapshot is also written to
``DATA_DIR/controls.json`` (``proxy.store.snapshot``), and read back when the
addon is loaded, before the proxy listens: a proxy that starts
while the store is down or slow keeps a suspended pupil suspended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.utils.asyncio_utils import create_task

from addons import facts
from proxy.controls import NO_CONTROLS, Controls
from proxy.filterset import Filterset
from proxy.jsonlines import JsonLinesTail
from proxy.lists import UPDATES_LOG
from proxy.policy import IllegalProblem
from proxy.store import control, events, notify, snapshot
from proxy.store.engine import down_reason, session
from proxy.trust import recorded_text
from proxy.yamlfile import Problem

log = logging.getLogger("schoolgate.overrides")

REVIEW_REQUESTS = "review-requests.jsonl"


class Overrides:
    def __init__(self, loader: facts.Reloading, store: facts.Recorder) -> None:
        self.loader = loader
        self.store = store
        data_dir = loader.filterset.settings.data_dir
        self._updates = JsonLinesTail(data_dir / UPDATES_LOG)
        self._reviews = JsonLinesTail(data_dir / REVIEW_REQUESTS)
        self._policy_sha: str | None = None
        self._snapshot_path = data_dir / snapshot.SNAPSHOT_FILE
        self._saved: dict[str, object] | None = None  # what the file holds, to write changes only
        self._task: asyncio.Task[None] | None = None
        self._down: str | None = None
        self._woken = asyncio.Event()  # a NOTIFY came: refresh now, not at the next poll
        self.listener: notify.Listener | None = None
        self.refreshes = 0
        loader.on_swap.append(self._swapped)
        loader.on_refused.append(self._refused)

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_controls_refresh_ms",
            int,
            3000,
            "Milliseconds between reading overrides and suspensions from the store.",
        )
        # Here, not in running(): load runs once, before the proxy listens, so no request is
        # decided without the last known suspensions even if the store is slow to answer.
        self._restore()

    def configure(self, updated: set[str]) -> None:
        if (
            "schoolgate_controls_refresh_ms" in updated
            and ctx.options.schoolgate_controls_refresh_ms <= 0
        ):
            raise exceptions.OptionsError("schoolgate_controls_refresh_ms must be positive")

    def _restore(self) -> None:
        """Put the last snapshot written to disk in force until the store answers."""
        try:
            found = snapshot.load(self._snapshot_path)
        except ValueError as exc:
            log.error("%s unreadable, starting with no overrides: %s", self._snapshot_path, exc)
            return
        if found is None or self.loader.controls is not NO_CONTROLS:
            return
        self.loader.controls = found
        self._saved = snapshot.content(found)
        log.info(
            "%d suspension(s) and %d override(s) restored from %s until the store answers",
            sum(len(s) for s in found.suspensions.values()),
            len(found.overrides),
            self._snapshot_path,
        )

    async def running(self) -> None:
        self._observe_policy(self.loader.filterset, "start")
        await self._refresh_now()
        self._task = create_task(self._watch(), name="schoolgate overrides", keep_ref=True)
        url = self.store.engine.url
        if url.get_backend_name() == "postgresql":
            loop = asyncio.get_running_loop()
            self.listener = notify.Listener(url, lambda: loop.call_soon_threadsafe(self._woken.set))
            self.listener.start()

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.listener is not None:
            self.listener.stop()

    async def _watch(self) -> None:
        while True:
            # The poll (the timeout) is the fallback when no NOTIFY comes (SQLite, no listener).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._woken.wait(), ctx.options.schoolgate_controls_refresh_ms / 1000
                )
            self._woken.clear()
            await self._refresh_now()

    async def _refresh_now(self) -> None:
        try:
            await asyncio.to_thread(self.refresh)
        except Exception:  # the refresher must outlive any one bad round
            log.exception("refreshing overrides failed; the last snapshot stays in force")

    def refresh(self) -> None:
        """One round (in a worker thread): ingest new file lines, reload the snapshot."""
        policy = self.loader.filterset.policy
        for line in self._updates.new_lines():
            try:
                self.store.record(events.list_update(line))
            except (ValueError, KeyError):
                log.error("%s: unreadable line skipped: %.80s", self._updates.path, line)
        for line in self._reviews.new_lines():
            try:
                row = json.loads(line)
                category = policy.categories.get(str(row.get("category")))
                self.store.record(
                    events.review_request(row, illegal=bool(category and category.illegal))
                )
            except (ValueError, KeyError, AttributeError):
                log.error("%s: unreadable line skipped: %.80s", self._reviews.path, line)
        now = datetime.now(UTC)
        try:
            with session(self.store.engine, read_only=True) as s:
                fresh = control.load_controls(s, now)
                due = control.expiries_due(s, now)
        except Exception as exc:
            reason = down_reason(exc)
            if self._down != reason:
                log.warning("overrides not refreshed, the last snapshot stays: %s", reason)
            self._down = reason
            return
        self._down = None
        self.loader.controls = fresh
        self.refreshes += 1
        if due:
            self.store.record(events.sweep())
        self._keep(fresh)

    def _keep(self, fresh: Controls) -> None:
        """Write the snapshot to disk when it changed, for a start with the store down."""
        data = snapshot.content(fresh)
        if data == self._saved:
            return
        try:
            snapshot.save(self._snapshot_path, fresh)
        except OSError as exc:
            log.error("cannot keep the snapshot in %s: %s", self._snapshot_path, exc)
            return
        self._saved = data

    def _swapped(self, old: Filterset, new: Filterset, what: str) -> None:
        if what not in ("policy", "settings"):
            return
        try:
            self._observe_policy(new, "hot reload")
        except Exception:  # recording must never undo or break a reload
            log.exception("could not record the reloaded policy")

    def _refused(self, what: str, problems: list[Problem]) -> None:
        illegal = [str(p) for p in problems if isinstance(p, IllegalProblem)]
        if not illegal:
            return  # a typo is the technician's to fix; the log records attempts on illegal lists
        source = self.loader.filterset.policy.source
        try:
            sha = hashlib.sha256(source.read_bytes()).hexdigest()
            self.store.record(events.policy_refused(sha, str(source), illegal, f"{what} reload"))
        except Exception:  # recording must never break the loader
            log.exception("could not record the refused %s", what)

    def _observe_policy(self, fs: Filterset, how: str) -> None:
        """Record the policy text now in force, when it differs from the last one recorded."""
        try:
            text = recorded_text(fs.policy.source.read_text(encoding="utf-8"), fs.policy.trust)
        except OSError as exc:
            log.error("cannot read %s to record it: %s", fs.policy.source, exc)
            return
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if sha != self._policy_sha:
            self._policy_sha = sha
            self.store.record(events.policy_observed(text, str(fs.policy.source), how))
