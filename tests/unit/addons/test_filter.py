"""The filter addon with mitmproxy's test context: blocks, passes, and fails closed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from addons import schoolgate_addons
from addons.facts import DECISION, IDENTITY
from addons.filter import Filter
from addons.identify import Identify
from addons.pipeline import Pipeline
from proxy.filterset import Filterset, load_filterset
from tests.chain import one, running

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def filterset() -> Filterset:
    return load_filterset(ROOT / "config")


@pytest.fixture
def chain(filterset: Filterset) -> Iterator[tuple[Identify, Filter]]:
    with running(ROOT / "config", filterset, Identify, Filter) as addons:
        yield one(addons, Identify), one(addons, Filter)


def flow_for(
    url: str, client_ip: str = "10.10.1.2", host_header: str | None = None
) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.peername = (client_ip, 50000)
    flow.request.url = url
    if host_header is not None:
        flow.request.headers["Host"] = host_header
    return flow


def through(chain: tuple[Identify, Filter], flow: http.HTTPFlow) -> http.HTTPFlow:
    identify, filt = chain
    identify.requestheaders(flow)
    filt.requestheaders(flow)
    return flow


def test_pupil_is_blocked_with_the_block_page(chain: tuple[Identify, Filter]) -> None:
    """A pupil asking for an adult site gets a 403 block page naming the category."""
    flow = through(chain, flow_for("http://adult-demo.example/"))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert b"adult" in (flow.response.content or b"")
    assert flow.metadata[IDENTITY].group == "pupil"


def test_allowed_request_passes_untouched(chain: tuple[Identify, Filter]) -> None:
    """An uncategorised site has no response set, so mitmproxy forwards it."""
    flow = through(chain, flow_for("http://plain.example/"))
    assert flow.response is None
    assert flow.metadata[DECISION].decision == "allow"


def test_host_header_cannot_sneak_past(chain: tuple[Identify, Filter]) -> None:
    """A request to an allowed address with a blocked Host header is blocked."""
    flow = through(chain, flow_for("http://127.0.0.1/", host_header="adult-demo.example"))
    assert flow.response is not None
    assert flow.response.status_code == 403


def test_illegal_block_page_shows_no_url(chain: tuple[Identify, Filter]) -> None:
    """The illegal block page has the IWF wording and neither host nor path."""
    flow = through(chain, flow_for("http://iwf-test.example/abuse/test-image.jpg"))
    assert flow.response is not None
    body = flow.response.content or b""
    assert b"Internet Watch Foundation" in body
    assert b"iwf-test" not in body
    assert b"test-image" not in body


def test_failing_hook_blocks_instead_of_allowing(chain: tuple[Identify, Filter]) -> None:
    """If deciding raises, the pipeline blocks the request and counts the failure."""
    _, filt = chain
    pipeline = Pipeline([filt])
    flow = flow_for("http://plain.example/")
    # No identity was set, which the filter treats as a failure.
    pipeline.requestheaders(flow)  # type: ignore[attr-defined]
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert "filter error" in flow.metadata[DECISION].rule
    assert flow.metadata[DECISION].by == "failsafe"
    assert pipeline.hook_errors == {("filter", "requestheaders"): 1}


@pytest.mark.parametrize("error", [RuntimeError("bug"), UnicodeError("odd"), RecursionError()])
def test_a_url_that_cannot_be_normalised_is_blocked(
    chain: tuple[Identify, Filter], monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Not only BadURL: any exception while normalising the URL blocks the request."""

    def broken(*parts: object) -> None:
        raise error

    # The request's URL is normalised from its parts (browser-exact hosts, t14).
    monkeypatch.setattr("addons.filter.normalise_parts", broken)
    flow = through(chain, flow_for("http://plain.example/"))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert flow.metadata[DECISION].blocked


def test_a_block_page_that_cannot_be_rendered_still_blocks(
    chain: tuple[Identify, Filter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the block page template fails, a plain 403 goes out: never the origin's answer."""

    def broken(*args: object, **kwargs: object) -> str:
        raise KeyError("template")

    monkeypatch.setattr("proxy.blockpage.render", broken)
    flow = through(chain, flow_for("http://adult-demo.example/"))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert b"Blocked by the school's web filter" in (flow.response.content or b"")


def test_connect_to_blocked_host_marks_the_connection(chain: tuple[Identify, Filter]) -> None:
    """A CONNECT to a blocked host decides before decryption; requests inside are blocked."""
    identify, filt = chain
    connect = flow_for("http://casino-demo.example:443/")
    connect.request.method = "CONNECT"
    identify.http_connect(connect)
    filt.http_connect(connect)
    inner = tflow.tflow(client_conn=connect.client_conn)
    inner.request = tutils.treq(host="casino-demo.example", port=443, path="/anything")
    identify.requestheaders(inner)
    filt.requestheaders(inner)
    assert inner.response is not None
    assert inner.response.status_code == 403
    assert inner.metadata[DECISION].category == "gambling"


def test_connect_to_host_with_allowed_paths_waits_for_the_request(filterset: Filterset) -> None:
    """A host whose local allow entry has a path is decided per request, not at CONNECT."""
    assert (
        filterset.decide_host(
            filterset.identities.resolve("10.10.1.1"), "www.bbc.co.uk", datetime.now(UTC)
        )
        is None
    )


def test_addon_order_is_declared_once(filterset: Filterset) -> None:
    """The loader first, identify before filter, the protections after it, audit then metrics."""
    names = [type(a).__name__ for a in schoolgate_addons(ROOT / "config", filterset)]
    assert names == [
        "PolicyLoader",
        "BrowserHosts",
        "StoreWriter",
        "Overrides",
        "RadiusListener",
        "ProxyLogin",
        "DirectoryLookup",
        "Identify",
        "Filter",
        "Redact",
        "Circumvention",
        "Incidents",
        "TlsPolicy",
        "SafeSearchTunnel",
        "EarlyConnect",
        "SafeSearch",
        "Downloads",
        "ContentAnalysis",
        "ImageAnalysis",
        "Review",
        "UpstreamChain",
        "UpstreamErrors",
        "Limits",
        "Audit",
        "Metrics",
    ]
