"""The incidents addon with mitmproxy's test context: events for the writer, never a URL leak."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addons.filter import Filter
from addons.identify import Identify
from addons.incidents import Incidents
from addons.pipeline import Pipeline
from addons.policyload import PolicyLoader
from proxy.filterset import Filterset, load_filterset
from proxy.incidents.store import INCIDENT_EVENT, SEARCH_EVENT
from proxy.store.events import Event

ROOT = Path(__file__).resolve().parents[3]


class FakeRecorder:
    """Stands in for the store's writer: keeps what it is given."""

    engine: Any = None

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Identify, Filter, Incidents, FakeRecorder]]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    base = load_filterset(ROOT / "config")
    settings = base.settings.model_copy(update={"data_dir": tmp_path / "var"})
    filterset = Filterset.build(settings, base.policy, base.lists)
    loader = PolicyLoader(config, filterset)
    recorder = FakeRecorder()
    identify, filt = Identify(loader), Filter(loader)
    incidents = Incidents(loader, recorder)
    with taddons.context(loader, identify, filt, incidents):
        yield identify, filt, incidents, recorder


def run(
    rig: tuple[Identify, Filter, Incidents, FakeRecorder], url: str, **headers: str
) -> http.HTTPFlow:
    identify, filt, incidents, _ = rig
    flow: http.HTTPFlow = tflow.tflow()
    flow.client_conn.peername = ("10.10.1.2", 50000)  # a pupil in the demo policy
    flow.request.url = url
    for name, value in headers.items():
        flow.request.headers[name] = value
    identify.requestheaders(flow)
    filt.requestheaders(flow)
    incidents.requestheaders(flow)
    return flow


def test_an_unacceptable_hit_becomes_an_incident_event(rig: Any) -> None:
    """A pupil's adult hit is queued with the page and the pupil table's actions."""
    run(rig, "http://adult-demo.example/page")
    (event,) = rig[3].events
    assert event.kind == INCIDENT_EVENT
    assert event.data["category"] == "adult"
    assert event.data["url"] == "adult-demo.example/page"
    assert ["inform_parents", "Inform parents / carers"] in [list(a) for a in event.data["actions"]]


def test_an_illegal_hit_is_queued_without_its_url(rig: Any) -> None:
    """The event for an IWF hit carries the hash and the list name, not the address."""
    run(rig, "http://iwf-test.example/abuse/test-image.jpg")
    (event,) = rig[3].events
    assert event.data["severity"] == "illegal"
    assert event.data["url"] is None
    assert "iwf-test.example" not in event.to_json()
    assert event.data["url_hash"].startswith("hmac-sha256:")


def test_searches_are_logged_and_concerning_ones_raise_incidents(rig: Any) -> None:
    """Every search is logged; one with a concerning term also raises an incident."""
    run(rig, "http://www.bing.com/search?q=volcanoes")
    run(rig, "http://www.bing.com/search?q=self+harm")
    kinds = [e.kind for e in rig[3].events]
    assert kinds == [SEARCH_EVENT, SEARCH_EVENT, INCIDENT_EVENT]
    assert rig[3].events[0].data["query"] == "volcanoes"
    assert rig[3].events[1].data["concerning"] == "self_harm"
    assert rig[3].events[2].data["incident_type"] == "concerning_search"


def test_an_allowed_page_raises_nothing(rig: Any) -> None:
    """An uncategorised page that is not a search records nothing."""
    run(rig, "http://example.com/lesson")
    assert rig[3].events == []


def test_a_failing_recorder_never_opens_the_flow(rig: Any) -> None:
    """If recording fails, the pipeline counts it and the block stands."""
    identify, filt, incidents, recorder = rig

    def broken(event: Event) -> None:
        raise RuntimeError("store exploded")

    recorder.record = broken
    pipeline = Pipeline([identify, filt, incidents])
    for _ in range(2):
        flow = tflow.tflow()
        flow.client_conn.peername = ("10.10.1.2", 50000)
        flow.request.url = "http://adult-demo.example/"
        pipeline.requestheaders(flow)  # type: ignore[attr-defined]
        assert flow.response is not None
        assert flow.response.status_code == 403
    assert pipeline.hook_errors == {("incidents", "requestheaders"): 2}


def test_an_edited_table_is_picked_up_and_a_broken_one_keeps_the_last(rig: Any) -> None:
    """A valid edit of escalation.yaml applies; a broken one is logged and the last good stays."""
    incidents: Incidents = rig[2]
    path = incidents.config_dir / "escalation.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    pupil: [safeguarding]\n", "    pupil: [warning]\n"), "utf-8")
    assert incidents._stamp() != incidents._stamps
    incidents._reload()
    assert incidents.escalation is not None
    edited = incidents.escalation
    assert [a.key for a in edited.actions_for("concerning_search", "pupil")] == ["warning"]
    path.write_text(text.replace("[refer_class_teacher, warning]", "[detention]"), "utf-8")
    incidents._reload()
    assert incidents.escalation is edited


def test_a_blocked_connect_raises_once_for_its_connection(rig: Any) -> None:
    """A CONNECT to a blocked host raises the incident; the request inside adds nothing."""
    identify, filt, incidents, recorder = rig
    connect: http.HTTPFlow = tflow.tflow()
    connect.client_conn.peername = ("10.10.1.2", 50000)
    connect.request.method = "CONNECT"
    connect.request.host, connect.request.port = "adult-demo.example", 443
    identify.http_connect(connect)
    filt.http_connect(connect)
    incidents.http_connect(connect)
    (event,) = recorder.events
    assert event.data["url"] == "adult-demo.example"
    inside: http.HTTPFlow = tflow.tflow()
    inside.client_conn = connect.client_conn
    inside.request.url = "https://adult-demo.example/page"
    identify.requestheaders(inside)
    filt.requestheaders(inside)
    incidents.requestheaders(inside)
    assert inside.response is not None
    assert len(recorder.events) == 1
