"""Incidents: raise a safeguarding incident for each unacceptable or illegal hit, and log searches.

Runs after ``Filter``, reading the decision it left in the flow. A host
blocked at CONNECT (or TLS SNI) raises its incident there, once per
connection, so a device that never trusts the school's CA is still seen;
requests inside that connection add nothing more. A hit that
raises an incident becomes an ``incident.raise`` event for the store's
writer (a queue put, no I/O); an illegal hit's URL is replaced by its keyed
hash before the event exists, and the people in ``alerts.illegal`` are
alerted at once by the alerter thread. A search on Google, Bing,
DuckDuckGo, YouTube or Yahoo is logged (``search.seen``), and a concerning
term in it raises a ``concerning_search`` incident.

Failure policy: this addon never decides; it reads the filter's decisions
(``addons.facts``). An exception here reaches the pipeline, which blocks
the request (``addons/pipeline.py``): an error can never open anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from weakref import WeakKeyDictionary

from mitmproxy import connection, ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer
from mitmproxy.utils.asyncio_utils import create_task

from addons import facts
from blocklists.normalise import BadURL, normalise_parts
from proxy.content.assistants import assistant_of, prompt_of
from proxy.decision import Decision
from proxy.identity import Identity
from proxy.incidents import events
from proxy.incidents import store as incident_store
from proxy.incidents.alerts import (
    Alert,
    Alerter,
    Result,
    illegal_alert,
    illegal_channels,
    urgent_search_alert,
)
from proxy.incidents.deliveries import result_event
from proxy.incidents.escalation import ESCALATION_FILE, Escalation, load_escalation
from proxy.incidents.keyedhash import load_or_create_key
from proxy.incidents.queue import URGENT_SEARCHES
from proxy.incidents.retention import Housekeeper
from proxy.incidents.searchterms import (
    TERMS_FILE,
    TermMatcher,
    load_terms,
)
from proxy.watch import FileWatch
from proxy.yamlfile import ConfigError

log = logging.getLogger("schoolgate.incidents")


class Incidents:
    def __init__(self, loader: facts.Policies, recorder: facts.Recorder) -> None:
        self.loader = loader
        self.recorder = recorder
        self.config_dir: Path = loader.config_dir
        self.escalation: Escalation | None = None
        self.terms: TermMatcher | None = None
        self.key: bytes | None = None
        # Every try at delivering an alert is stored (alert_deliveries) for the DSL to see.
        self.alerter = Alerter(on_result=lambda r: recorder.record(result_event(r)))
        self.housekeeper: Housekeeper | None = None
        self.raised = 0
        self._alerted: dict[tuple[str, str], float] = {}
        self._files = FileWatch(self.config_dir / name for name in (ESCALATION_FILE, TERMS_FILE))
        self._task: asyncio.Task[None] | None = None
        # The host decision an incident was last raised for, per connection: raised once.
        self._at_connect: WeakKeyDictionary[connection.Client, facts.HostDecision] = (
            WeakKeyDictionary()
        )

    def load(self, loader: Loader) -> None:
        # Before the proxy listens: a request that arrives while slower addons are still
        # starting (the store's migrations) must already find the key and the tables.
        self._setup()

    def _setup(self) -> None:
        self.key = load_or_create_key(self.loader.filterset.settings.data_dir)
        self._reload()

    def _reload(self) -> None:
        """(Re)load both files; a broken one keeps the last good tables and is logged.

        A missing file is a warning (an install from before incidents); a broken one is an
        error, which at start makes mitmproxy refuse to run, as a broken policy does.
        """
        escalation_path = self.config_dir / ESCALATION_FILE
        if escalation_path.exists():
            try:
                self.escalation = load_escalation(escalation_path)
            except ConfigError as exc:
                log.error("%s", exc)
        else:
            log.warning("no %s: incidents will carry no recommended actions", escalation_path)
        terms_path = self.config_dir / TERMS_FILE
        if terms_path.exists():
            try:
                self.terms = load_terms(terms_path)
            except ConfigError as exc:
                log.error("%s", exc)
        else:
            log.warning("no %s: searches are logged, none raises an incident", terms_path)

    async def _watch(self) -> None:
        """Pick up an edited escalation.yaml or concerning-terms.yaml, as the policy is."""
        while True:
            await asyncio.sleep(ctx.options.schoolgate_reload_ms / 1000)
            try:
                if self._files.changed():
                    await asyncio.to_thread(self._reload)
                    log.info("reloaded %s and %s", ESCALATION_FILE, TERMS_FILE)
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("incident tables reload failed")

    def running(self) -> None:
        settings = self.loader.filterset.settings
        self.alerter.start()
        self.housekeeper = Housekeeper(
            settings,
            self.recorder.engine,
            self.alerter,
            lambda: self.loader.filterset.policy.school,
        )
        self.housekeeper.start()
        if ctx.options.schoolgate_reload_ms > 0:
            self._task = create_task(self._watch(), name="schoolgate incidents", keep_ref=True)

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.housekeeper is not None:
            self.housekeeper.stop()
        self.alerter.stop()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._connect(flow.client_conn)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        self._connect(nextlayer.context.client)

    def _connect(self, client: connection.Client) -> None:
        """The filter's decision on the host alone (CONNECT or SNI) is an attempt, raised once,
        even if the device never sends a request inside (it does not trust the school's CA)."""
        decided = facts.host_decision(client)
        if decided is None or not decided.final or decided.decision.incident is None:
            return
        raised = self._at_connect.get(client)
        if raised is not None and raised.decision == decided.decision:
            return  # the SNI said what the CONNECT said: one attempt
        self._at_connect[client] = decided
        identity = facts.client_identity(client)
        if identity is None or not decided.hosts:
            return
        self._raise(decided.decision, identity, decided.hosts[0], datetime.now(UTC), None)

    def _raise(
        self,
        decision: Decision,
        identity: Identity,
        canonical: str,
        now: datetime,
        reference: str | None,
    ) -> None:
        if self.key is None:
            self._setup()
        assert self.key is not None
        event = events.from_decision(
            decision, identity, canonical, now, self.key, reference, self.escalation
        )
        if event is None:
            return
        self.recorder.record(incident_store.incident_event(event))
        self.raised += 1
        if event.severity == "illegal":
            self._alert(event)

    def _record(self, flow: http.HTTPFlow) -> None:
        decision = facts.decision_of(flow)
        identity = facts.identity_of(flow)
        if decision is None or identity is None:
            return
        now = datetime.now(UTC)
        if decision.incident is not None:
            raised = self._at_connect.get(flow.client_conn)
            if raised is not None and raised.decision == decision:
                return  # the same attempt, raised already at its CONNECT / SNI
            try:
                r = flow.request
                canonical = normalise_parts(r.scheme, r.host, r.port, r.path).entry
            except BadURL:
                canonical = flow.request.pretty_host
            self._raise(decision, identity, canonical, now, facts.reference_of(flow))
            return
        search = facts.search_of(flow)
        if search is not None:
            self._searched(flow, identity, search.engine, search.query, now)

    def _searched(
        self, flow: http.HTTPFlow, identity: Identity, engine: str, query: str, now: datetime
    ) -> None:
        """Log a search (or a prompt to an AI assistant); a concerning one raises an incident."""
        match = self.terms.find(query) if self.terms is not None else None
        self.recorder.record(
            incident_store.search_store_event(
                events.search_event(identity, engine, query, match.category if match else None, now)
            )
        )
        if match is not None:
            concern = events.concerning_search(
                identity,
                engine,
                query,
                match.category,
                match.term,
                now,
                facts.reference_of(flow),
                self.escalation,
            )
            self.recorder.record(incident_store.incident_event(concern))
            self.raised += 1
            if match.category in URGENT_SEARCHES:
                # A child searching for ways to die cannot wait for the daily digest.
                self._alert(concern)

    def request(self, flow: http.HTTPFlow) -> None:
        """A prompt sent to an AI assistant is logged like a search, and matched the same way."""
        decision = facts.decision_of(flow)
        identity = facts.identity_of(flow)
        if decision is None or decision.blocked or identity is None:
            return
        if flow.request.method != "POST" or not flow.request.raw_content:
            return
        assistant = assistant_of(flow.request.pretty_host)
        if assistant is None:
            return
        prompt = prompt_of(
            flow.request.get_content(strict=False) or b"",
            flow.request.headers.get("content-type", ""),
        )
        if prompt is not None:
            self._searched(flow, identity, assistant, prompt, datetime.now(UTC))

    def _alert(self, event: events.IncidentEvent) -> None:
        """Alert at once, but once per person and category within the roll-up window."""
        key = (event.subject, event.category)
        now = time.monotonic()
        if now - self._alerted.get(key, -1e9) < events.ROLLUP_WINDOW.total_seconds():
            return
        self._alerted[key] = now
        if len(self._alerted) > 10_000:  # keep the memory bounded: forget expired windows
            window = events.ROLLUP_WINDOW.total_seconds()
            self._alerted = {k: t for k, t in self._alerted.items() if now - t < window}
        fs = self.loader.filterset
        channels = illegal_channels(fs.settings.alerts)
        if not channels:
            log.warning("%s incident, but alerts.illegal names nobody to tell", event.category)
            unsent = Alert(event.severity, f"{event.category} incident", "", {})
            reason = "alerts.illegal names no e-mail or webhook in schoolgate.yaml"
            self.recorder.record(result_event(Result(unsent, "nobody", False, 0, True, reason)))
            return
        if event.severity == "illegal":
            self.alerter.send(illegal_alert(event, fs.policy.school), channels)
        else:
            self.alerter.send(urgent_search_alert(event, fs.policy.school), channels)
