"""The Redact addon: illegal hosts (every spelling) and addresses are registered, others not."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addons.filter import Filter
from addons.identify import Identify
from addons.policyload import PolicyLoader
from addons.redact import Redact
from proxy.filterset import Filterset, load_filterset
from proxy.redaction import Redactions

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def filterset() -> Filterset:
    return load_filterset(ROOT / "config")


def run(filterset: Filterset, flow: http.HTTPFlow, *, connect: bool = False) -> Redactions:
    found = Redactions()
    loader = PolicyLoader(ROOT / "config", filterset)
    identify, filt, redact = Identify(loader), Filter(loader), Redact(found)
    with taddons.context(loader, identify, filt, redact):
        if connect:
            identify.http_connect(flow)
            filt.http_connect(flow)  # the one host decision, which Redact reads
            redact.http_connect(flow)
        else:
            identify.requestheaders(flow)
            filt.requestheaders(flow)
            redact.requestheaders(flow)
    return found


def test_an_illegal_request_registers_its_host_and_address(filterset: Filterset) -> None:
    """A request decided illegal registers its host, its Host header and its server address."""
    flow = tflow.tflow()
    flow.request.url = "http://illegal-demo.example/page"
    flow.request.headers["Host"] = "ILLEGAL-DEMO.example."
    flow.server_conn.address = ("203.0.113.9", 80)
    found = run(filterset, flow)
    assert "illegal-demo.example" in found
    assert "203.0.113.9" in found


def test_an_iwf_url_registers_its_host(filterset: Filterset) -> None:
    """A URL entry of the IWF list registers the host it was on."""
    flow = tflow.tflow()
    flow.request.url = "http://iwf-test.example/abuse/test-image.jpg"
    assert "iwf-test.example" in run(filterset, flow)


def test_a_connect_to_an_illegal_host_registers_it(filterset: Filterset) -> None:
    """A CONNECT to an illegal host registers it before any TLS failure can be logged."""
    flow = tflow.tflow()
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = "illegal-demo.example", 443
    assert "illegal-demo.example" in run(filterset, flow, connect=True)


@pytest.mark.parametrize("url", ["http://adult-demo.example/", "http://example.com/"])
def test_lawful_and_merely_blocked_hosts_are_not_registered(filterset: Filterset, url: str) -> None:
    """Blocked-but-lawful and allowed hosts stay in the logs."""
    flow = tflow.tflow()
    flow.request.url = url
    assert not run(filterset, flow)
