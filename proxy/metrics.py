"""Prometheus metrics: what the filter did, counted by labels from the configuration only.

Labels are the policy's groups and categories, the decision (allow or block)
and the incident severity; never a user, host or address, so the series are
bounded by the configuration and a scrape reveals nobody's browsing (STYLE.md
11). A value the configuration does not name (a group from a policy that has
since changed, a failed-closed decision) is counted under ``unknown`` or
``none``.

One process (``schoolgate run``) keeps its metrics in memory and serves them
itself. With ``--workers N``, prometheus-client's multiprocess mode is used:
each worker writes its values to mmap'd files in a shared folder
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before a worker starts) and
the supervisor alone serves the sum on ``metrics_listen``. Why that and not a
port per worker: a technician scrapes one address whatever ``--workers`` is, a
worker that restarts does not lose the counts of the others, and no port range
has to be opened. Gauges declare how workers combine (``livemax``/``livemin``:
every worker maps the same index, so they agree).
"""

from __future__ import annotations

import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from proxy.decision import Decision
from proxy.policy import Policy

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# (kind, action) of a tunnel decision: what TlsPolicy can do with a connection's bytes.
TUNNEL_SERIES = (
    ("tls", "pass"),
    ("tls", "refuse"),
    ("tls", "intercept"),
    ("tcp", "pass"),
    ("tcp", "refuse"),
)
UNKNOWN = "unknown"
NONE = "none"

# A lookup (normalise, match both hosts, decide) takes microseconds; a slow one, milliseconds.
LOOKUP_BUCKETS = (
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.01,
    0.1,
)


class FilterMetrics:
    """Every series Schoolgate exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "schoolgate_requests",
            "Requests decided, by the client's group and the decision.",
            ["group", "decision"],
            registry=r,
        )
        self.blocks = Counter(
            "schoolgate_blocks", "Blocked requests by category.", ["category"], registry=r
        )
        self.incidents = Counter(
            "schoolgate_incidents",
            "Requests that raise a safeguarding incident, by severity.",
            ["severity"],
            registry=r,
        )
        self.lookup = Histogram(
            "schoolgate_lookup_seconds",
            "Time to normalise a request's URL, look it up in the lists and decide.",
            buckets=LOOKUP_BUCKETS,
            registry=r,
        )
        self.filter_errors = Counter(
            "schoolgate_filter_errors",
            "Requests blocked because the filter itself failed (fail closed).",
            registry=r,
        )
        self.tunnels = Counter(
            "schoolgate_tunnels",
            "Connections whose bytes were not one HTTP request: TLS passed through or refused, "
            "raw TCP relayed (tcp_passthrough) or refused, by group.",
            ["group", "kind", "action"],
            registry=r,
        )
        self.hook_errors = Counter(
            "schoolgate_hook_errors",
            "Addon hook exceptions on the request path, each answered by blocking (fail closed).",
            ["addon", "hook"],
            registry=r,
        )
        self.auth_failures = Counter(
            "schoolgate_auth_failures",
            "Proxy logins refused (wrong or missing credentials): answered 407 or 401.",
            registry=r,
        )
        self.login_lockouts = Counter(
            "schoolgate_login_lockouts",
            "Users or client addresses locked out after too many wrong passwords.",
            registry=r,
        )
        self.reloads = Counter(
            "schoolgate_policy_reloads",
            "Policy, settings or list changes loaded and swapped in.",
            registry=r,
        )
        self.reload_failures = Counter(
            "schoolgate_policy_reload_failures",
            "Changes rejected; the last good policy and lists stayed in force.",
            registry=r,
        )
        self.index_age = Gauge(
            "schoolgate_index_age_seconds",
            "Age of the compiled list index in use (since it was written).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.index_entries = Gauge(
            "schoolgate_index_entries",
            "Entries in the compiled list index, by list source.",
            ["source"],
            registry=r,
            multiprocess_mode="livemax",
        )

        self.spool_depth = Gauge(
            "schoolgate_spool_depth",
            "Events (incidents, change-control rows) spooled on disk, not yet in the store.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.writer_up = Gauge(
            "schoolgate_store_writer_up",
            "1 while the store writer's threads run, no store call hangs, the spool can be "
            "written and the store took the last write; 0 otherwise.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.oldest_unapplied = Gauge(
            "schoolgate_store_oldest_unapplied_seconds",
            "Age of the oldest recorded event not yet in the store (0 when none).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.events_held = Gauge(
            "schoolgate_store_events_held",
            "Events held in memory because the spool could not be written (a full disk).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.events_dropped = Counter(
            "schoolgate_store_events_dropped",
            "Events dropped because the spool could not be written and the memory bound was hit.",
            registry=r,
        )
        self.writer_restarts = Counter(
            "schoolgate_store_writer_restarts",
            "Store writer threads that died and were restarted by its supervisor.",
            registry=r,
        )
        self.store_interrupts = Counter(
            "schoolgate_store_hung_calls",
            "Store calls that hung past the writer's timeout and were broken by its watchdog.",
            registry=r,
        )
        self.images = Counter(
            "schoolgate_images",
            "Images for nudity scoring, by outcome: queued, or passed unscored (pool full, "
            "too large, empty).",
            ["outcome"],
            registry=r,
        )
        self.spool_seconds = Histogram(
            "schoolgate_store_spool_seconds",
            "Seconds from recording an event to its fsync in the spool: what a crash can lose.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=r,
        )

    def prepare(self, policy: Policy, sources: list[str]) -> None:
        """Create every labelled series at zero, so dashboards show them before traffic."""
        for group in [*policy.groups, UNKNOWN]:
            for decision in ("allow", "block"):
                self.requests.labels(group, decision)
        for category in [*policy.categories, NONE]:
            self.blocks.labels(category)
        for severity in ("unacceptable", "illegal"):
            self.incidents.labels(severity)
        for group in [*policy.groups, UNKNOWN]:
            for kind, action in TUNNEL_SERIES:
                self.tunnels.labels(group, kind, action)
        for source in sources:
            self.index_entries.labels(source)
        for outcome in ("queued", "pool_full", "too_large", "empty"):
            self.images.labels(outcome)

    def count_tunnel(self, policy: Policy, group: str | None, kind: str, action: str) -> None:
        """Count one tunnel decision (``addons.facts.TunnelRecord``)."""
        known = group if group in policy.groups else UNKNOWN
        self.tunnels.labels(known, kind, action).inc()

    def count(self, policy: Policy, decision: Decision, lookup_seconds: float | None) -> None:
        """Count one decided request."""
        group = decision.group if decision.group in policy.groups else UNKNOWN
        self.requests.labels(group, decision.decision).inc()
        if decision.blocked:
            category = decision.category if decision.category in policy.categories else NONE
            self.blocks.labels(category).inc()
        if decision.incident is not None:
            self.incidents.labels(decision.incident).inc()
        if lookup_seconds is not None:
            self.lookup.observe(lookup_seconds)


def entries_by_source(counts: dict[str, int], sources: list[str]) -> dict[str, int]:
    """List counts (``ut1/adult``, ``iwf``) summed per source named in the settings."""
    totals = dict.fromkeys(sources, 0)
    for list_name, count in counts.items():
        source = list_name.split("/", 1)[0]
        if source in totals:
            totals[source] += count
    return totals


class MetricsServer:
    """The HTTP endpoint that serves a registry; one per process that serves metrics."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def aggregate_registry(path: Path) -> CollectorRegistry:
    """A registry that sums the workers' multiprocess files in ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return registry


def worker_exited(pid: int, path: Path) -> None:
    """Drop a dead worker's live gauges (its counters stay in the sums)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9180`` for IPv6) as a (host, port) pair; raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)
