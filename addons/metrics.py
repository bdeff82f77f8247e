"""Metrics: count every decided request and serve them to Prometheus on their own port.

Hooks only increment counters (a few hundred nanoseconds); the endpoint runs
in prometheus-client's own thread. Gauges that describe state rather than
traffic (index age and entries, reload counts) are refreshed by a small task
every few seconds, not per request. Labels come only from the configuration
(``proxy.metrics``).

Failure policy: a metrics failure must never change a decision, so the hooks
here run after ``Filter`` has decided and acted, and only read the flow.
Hook errors anywhere in the pipeline are counted as they happen
(``hook_failed``, called by ``addons.pipeline``), labelled by addon and hook
name: both come from the code, never from traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer
from mitmproxy.utils.asyncio_utils import create_task

from addons import facts
from proxy.lists import index_path
from proxy.metrics import FilterMetrics, MetricsServer, entries_by_source, split_listen
from proxy.store.writer import Writer

log = logging.getLogger("schoolgate.metrics")
REFRESH_MS = 5000  # the default of schoolgate_metrics_refresh_ms


class Metrics:
    def __init__(
        self,
        loader: facts.Reloading,
        *,
        auth_failures: Callable[[], int] | None = None,
        login_lockouts: Callable[[], int] | None = None,
        writer: Writer | None = None,
    ) -> None:
        self.loader = loader
        # Read from the addons that own them, wired in ``schoolgate_addons``.
        self.auth_failures = auth_failures
        self.login_lockouts = login_lockouts
        self.writer = writer
        self._seen_refused = 0
        self._seen_lockouts = 0
        self._seen_writer = (0, 0, 0)
        self.metrics = FilterMetrics()
        if writer is not None:
            # Each event's time to the spool's fsync, observed by the writer's spooling thread.
            writer.durable = self.metrics.spool_seconds.observe
        self.server: MetricsServer | None = None
        self._seen_reloads = 0
        self._seen_failures = 0
        self._prepared: object = None
        self._task: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_metrics_listen",
            str,
            "",
            "HOST:PORT of the Prometheus endpoint (empty: not served by this process).",
        )
        # The fault tests shorten it so that they need not sit out the default's staleness.
        loader.add_option(
            "schoolgate_metrics_refresh_ms",
            int,
            REFRESH_MS,
            "Milliseconds between refreshes of the state gauges (spool depth, writer up, ...).",
        )

    def configure(self, updated: set[str]) -> None:
        if (
            "schoolgate_metrics_refresh_ms" in updated
            and ctx.options.schoolgate_metrics_refresh_ms <= 0
        ):
            raise exceptions.OptionsError("schoolgate_metrics_refresh_ms must be positive")
        if "schoolgate_metrics_listen" not in updated:
            return
        if self.server is not None:
            self.server.stop()
            self.server = None
        value = ctx.options.schoolgate_metrics_listen
        if not value:
            return
        try:
            host, port = split_listen(value)
            self.server = MetricsServer(host, port, self.metrics.registry)
        except (ValueError, OSError) as exc:
            raise exceptions.OptionsError(f"metrics_listen {value}: {exc}") from None

    def running(self) -> None:
        self.refresh()
        self._task = create_task(self._refresh_loop(), name="schoolgate metrics", keep_ref=True)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(ctx.options.schoolgate_metrics_refresh_ms / 1000)
            try:
                self.refresh()
            except Exception:  # a broken gauge must not stop the counters
                log.exception("metrics refresh failed")

    def refresh(self) -> None:
        """Bring the state gauges and the reload counters up to date."""
        fs = self.loader.filterset
        m = self.metrics
        sources = list(fs.settings.sources)
        if self._prepared is not fs.policy:
            m.prepare(fs.policy, sources)
            self._prepared = fs.policy
        m.reloads.inc(self.loader.reloads - self._seen_reloads)
        m.reload_failures.inc(self.loader.failures - self._seen_failures)
        self._seen_reloads = self.loader.reloads
        self._seen_failures = self.loader.failures
        if self.auth_failures is not None:
            refused = self.auth_failures()
            m.auth_failures.inc(refused - self._seen_refused)
            self._seen_refused = refused
        if self.login_lockouts is not None:
            lockouts = self.login_lockouts()
            m.login_lockouts.inc(lockouts - self._seen_lockouts)
            self._seen_lockouts = lockouts
        if self.writer is not None:
            writer = self.writer
            m.spool_depth.set(writer.spooled)
            m.writer_up.set(1 if writer.up else 0)
            m.oldest_unapplied.set(writer.oldest_age())
            m.events_held.set(writer.held)
            dropped, restarts, hung = self._seen_writer
            m.events_dropped.inc(writer.dropped - dropped)
            m.writer_restarts.inc(writer.restarts - restarts)
            m.store_interrupts.inc(writer.interrupts - hung)
            self._seen_writer = (writer.dropped, writer.restarts, writer.interrupts)
        for source, count in entries_by_source(dict(fs.lists.counts()), sources).items():
            m.index_entries.labels(source).set(count)
        try:
            built = index_path(fs.settings).stat().st_mtime
        except OSError:
            return
        m.index_age.set(max(0.0, time.time() - built))

    def hook_failed(self, addon: str, hook: str) -> None:
        """The pipeline failed closed after ``addon``'s ``hook`` raised: count it now."""
        self.metrics.hook_errors.labels(addon, hook).inc()
        self.metrics.filter_errors.inc()

    def _count(self, flow: http.HTTPFlow) -> None:
        decision = facts.decision_of(flow)
        if decision is None:
            return
        seconds = flow.metadata.get(facts.LOOKUP_SECONDS)
        self.metrics.count(
            self.loader.filterset.policy,
            decision,
            seconds if isinstance(seconds, float) else None,
        )

    def response(self, flow: http.HTTPFlow) -> None:
        self._count(flow)
        image = flow.metadata.get(facts.IMAGE)
        if isinstance(image, str):
            outcome = image.removeprefix("unscored: ")
            if outcome in facts.IMAGE_OUTCOMES:  # labels only from this fixed set
                self.metrics.images.labels(outcome.replace(" ", "_")).inc()

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """A tunnel TlsPolicy passed through or refused (what it left in the facts)."""
        found = facts.tunnel_record(nextlayer)
        if found is not None:
            self.metrics.count_tunnel(
                self.loader.filterset.policy, found.decision.group, found.kind, found.action
            )

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)
