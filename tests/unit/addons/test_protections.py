"""The protection addons in mitmproxy's test context: each acts, and each fails closed."""

from __future__ import annotations

import json
import ssl
import time
import urllib.parse
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import ctx, http
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.tls import ClientTLSLayer, ServerTLSLayer
from mitmproxy.test import tflow, tutils

from addons import facts
from addons.audit import Audit
from addons.circumvention import Circumvention
from addons.downloads import Downloads
from addons.facts import DECISION
from addons.filter import Filter
from addons.identify import Identify
from addons.pipeline import Pipeline, Refuse
from addons.review import Review
from addons.safesearch import SafeSearch
from addons.tlspolicy import TlsPolicy
from blocklists.index import IndexBuilder
from proxy.filterset import Filterset
from proxy.policy import parse_policy
from proxy.review import Blocked, sign, signing_key, verify
from proxy.settings import Settings, Source
from tests.chain import one, running

PUPIL, HEAD, BYOD = "10.10.0.9", "10.20.0.5", "10.30.0.9"
PE = b"MZ\x90\x00" + b"\x00" * 600
POLICY = """\
school: Unit School
identity:
  default_group: pupil
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
    - {cidr: 10.30.0.0/16, group: byod}
  users:
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
categories:
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
groups:
  pupil:
    default: acceptable
    safe_search: strict
    downloads: {block: [executable], max_mb: 1}
    doh: unacceptable
    categories: {adult: unacceptable}
  byod:
    inherits: pupil
    intercept: false
  head:
    default: acceptable
    allowed_ports: [443, 22]
"""


@dataclass
class Chain:
    identify: Identify
    filt: Filter
    circumvention: Circumvention
    tls: TlsPolicy
    safesearch: SafeSearch
    downloads: Downloads
    review: Review
    data_dir: Path

    def request(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        for addon in (self.identify, self.filt, self.circumvention, self.safesearch):
            addon.requestheaders(flow)
        self.downloads.requestheaders(flow)
        return flow


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    builder = IndexBuilder()
    builder.add("ut1/adult", "adult.example")
    settings = Settings(
        data_dir=tmp_path / "var",
        sources={"ut1": Source(path=tmp_path / "none", format="ut1")},
    )
    filterset = Filterset.build(
        settings, parse_policy(POLICY, tmp_path / "policy.yaml"), builder.freeze()
    )
    kinds = (Identify, Filter, Circumvention, TlsPolicy, SafeSearch, Downloads, Review, Audit)
    with running(tmp_path, filterset, *kinds) as loaded:
        yield Chain(
            one(loaded, Identify),
            one(loaded, Filter),
            one(loaded, Circumvention),
            one(loaded, TlsPolicy),
            one(loaded, SafeSearch),
            one(loaded, Downloads),
            one(loaded, Review),
            tmp_path / "var",
        )


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a hook coroutine on the test master's own event loop (its log handler uses it)."""
    ctx.master.event_loop.run_until_complete(coroutine)


def flow_for(url: str, client: str = PUPIL, **headers: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.client_conn.peername = (client, 50000)
    flow.request.url = url
    for name, value in headers.items():
        flow.request.headers[name.replace("_", "-")] = value
    return flow


def respond(chain: Chain, flow: http.HTTPFlow, body: bytes, **headers: str) -> http.HTTPFlow:
    """Play the origin's response through responseheaders and, if not streamed, response."""
    fields = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    flow.response = tutils.tresp(content=None, headers=http.Headers(fields))
    chain.downloads.responseheaders(flow)
    chain.circumvention.responseheaders(flow)
    assert flow.response is not None
    if flow.response.stream:
        return flow
    if flow.response.data.content is None:
        flow.response.content = body
    chain.downloads.response(flow)
    return flow


# --- safe search ---------------------------------------------------------------------------


def test_safe_search_forces_google_for_pupils_only(chain: Chain) -> None:
    """A pupil's safe=off is replaced; the head's request is left as sent."""
    pupil = chain.request(flow_for("https://www.google.ie/search?q=x&safe=off"))
    assert pupil.request.query.get_all("safe") == ["active"]
    head = chain.request(flow_for("https://www.google.ie/search?q=x&safe=off", HEAD))
    assert head.request.query.get_all("safe") == ["off"]


def test_safe_search_follows_a_mismatched_host_header(chain: Chain) -> None:
    """A request to an address with Host: www.youtube.com still gets the restrict header."""
    flow = chain.request(flow_for("http://192.0.2.1/watch", Host="www.youtube.com"))
    assert flow.request.headers.get_all("YouTube-Restrict") == ["Strict"]


def test_safe_search_blocks_unlockable_engines(chain: Chain) -> None:
    """Startpage cannot be locked, so a pupil gets the block page."""
    flow = chain.request(flow_for("https://www.startpage.com/search?q=x"))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert "cannot be locked" in flow.metadata[DECISION].rule


def test_safe_search_fails_closed(chain: Chain) -> None:
    """With no identity to go on, the pipeline blocks the search rather than send it unlocked."""
    flow = flow_for("https://www.google.com/search?q=x")
    pipeline = Pipeline([chain.safesearch])
    pipeline.requestheaders(flow)  # type: ignore[attr-defined]
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert pipeline.hook_errors == {("safesearch", "requestheaders"): 1}


def test_a_response_set_earlier_is_left_alone(chain: Chain) -> None:
    """A login challenge set before the protections (no identity yet) is not turned into a block."""
    flow = flow_for("https://www.google.com/search?q=x")
    flow.response = http.Response.make(407, b"login", {"Content-Length": "5"})
    for addon in (chain.circumvention, chain.safesearch, chain.downloads):
        addon.requestheaders(flow)
    chain.downloads.responseheaders(flow)
    chain.downloads.response(flow)
    assert flow.response.status_code == 407


# --- downloads -----------------------------------------------------------------------------


def test_buffered_body_is_sniffed(chain: Chain) -> None:
    """A small text/plain body that is an executable gets the block page in the response hook."""
    flow = chain.request(flow_for("https://files.example/notes.txt"))
    respond(chain, flow, PE, content_type="text/plain", content_length=str(len(PE)))
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert b"Windows executable" in (flow.response.content or b"")


def test_header_block_serves_the_page_and_drops_the_body(chain: Chain) -> None:
    """Over max_mb by Content-Length: the page goes out once, the origin's bytes never do."""
    flow = chain.request(flow_for("https://files.example/big.iso"))
    respond(chain, flow, b"", content_type="application/octet-stream", content_length="9999999")
    assert flow.response is not None
    assert flow.response.status_code == 403
    stream = flow.response.stream
    assert callable(stream)
    first = out(stream(b"origin bytes"))
    assert b"larger than the school allows" in first
    assert b'name="token" value="' in first  # the review form was signed before it went out
    assert out(stream(b"more origin bytes")) == b""


def test_unknown_length_streams_through_the_guard(chain: Chain) -> None:
    """A chunked executable is held back, then the flow is killed: not a byte is forwarded."""
    flow = chain.request(flow_for("https://files.example/tool"))
    respond(chain, flow, b"", content_type="application/octet-stream")
    assert flow.response is not None
    stream = flow.response.stream
    assert callable(stream)
    assert out(stream(PE)) == b""
    assert flow.error is not None
    assert flow.metadata[DECISION].blocked


def test_live_feeds_are_not_held_back(chain: Chain) -> None:
    """Server-sent events pass as they come: holding back bytes to sniff would stall them."""
    flow = chain.request(flow_for("https://chat.example/events"))
    respond(chain, flow, b"", content_type="text/event-stream")
    assert flow.response is not None
    assert not flow.response.stream
    assert flow.response.status_code == 200


def test_accept_encoding_is_limited_to_what_can_be_sniffed(chain: Chain) -> None:
    """Groups with kinds to block ask only for gzip or deflate."""
    flow = chain.request(flow_for("https://files.example/", accept_encoding="br, zstd, gzip"))
    assert flow.request.headers["accept-encoding"] == "gzip, deflate"


# --- circumvention -------------------------------------------------------------------------


def out(chunks: Iterable[bytes] | bytes) -> bytes:
    """What a response stream function forwarded, as one byte string."""
    return chunks if isinstance(chunks, bytes) else b"".join(chunks)


def connect_flow(host: str, port: int, client: str) -> http.HTTPFlow:
    flow = flow_for(f"http://{host}:{port}/", client)
    flow.request.method = "CONNECT"
    return flow


def test_connect_to_a_port_outside_the_group_is_refused(chain: Chain) -> None:
    """CONNECT to 22 is 403 for a pupil; the head's policy allows it."""
    pupil = connect_flow("example.org", 22, PUPIL)
    chain.identify.http_connect(pupil)
    chain.circumvention.http_connect(pupil)
    assert pupil.response is not None
    assert pupil.response.status_code == 403
    head = connect_flow("example.org", 22, HEAD)
    chain.identify.http_connect(head)
    chain.circumvention.http_connect(head)
    assert head.response is None


def test_doh_shaped_request_is_unacceptable(chain: Chain) -> None:
    """application/dns-message to any host is blocked and raises subvert_filtering."""
    flow = chain.request(flow_for("https://x.example/q", accept="application/dns-message"))
    assert flow.response is not None
    decision = flow.metadata[DECISION]
    assert (decision.incident, decision.incident_type) == ("unacceptable", "subvert_filtering")


def test_alt_svc_is_removed(chain: Chain) -> None:
    """No response advertises HTTP/3."""
    flow = chain.request(flow_for("https://lesson.example/"))
    respond(chain, flow, b"ok", alt_svc='h3=":443"', content_length="2")
    assert flow.response is not None
    assert "alt-svc" not in flow.response.headers


def _nextlayer(client_ip: str, transport: str, address: tuple[str, int], data: bytes, tls: bool):
    client = tflow.tclient_conn()
    client.peername = (client_ip, 40000)
    client.transport_protocol = transport  # type: ignore[assignment]
    context = Context(client, ctx.master.options)
    context.server.address = address
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(client, data))
    if tls:
        server_tls = ServerTLSLayer(context)
        server_tls.child_layer = ClientTLSLayer(context)
        nextlayer.layer = server_tls
    return nextlayer


def client_hello(sni: str | None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = sni is not None
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_quic_is_refused(chain: Chain) -> None:
    """UDP to port 443 gets the refusing layer, whatever mitmproxy chose."""
    nl = _nextlayer(PUPIL, "udp", ("192.0.2.1", 443), b"\xc0\x00", tls=False)
    nl.layer = layers.UDPLayer(nl.context)
    chain.circumvention.next_layer(nl)
    assert isinstance(nl.layer, Refuse)


@pytest.mark.parametrize(
    ("client", "sni", "expected"),
    [
        (PUPIL, "adult.example", ServerTLSLayer),  # intercepted: the filter shows the block page
        (BYOD, "lesson.example", layers.TCPLayer),  # passed through untouched
        (BYOD, "adult.example", Refuse),  # refused before any handshake
        (PUPIL, None, Refuse),  # raw IP, no SNI
    ],
)
def test_tls_choice_at_the_client_hello(
    chain: Chain, client: str, sni: str | None, expected
) -> None:
    """The ClientHello's SNI decides: intercept, pass through or refuse."""
    nl = _nextlayer(client, "tcp", ("192.0.2.1", 443), client_hello(sni), tls=True)
    decide_layer(chain, nl)
    assert isinstance(nl.layer, expected)
    stack = nl.context.layers
    assert len(stack) == len({id(x) for x in stack})


def decide_layer(chain: Chain, nl: layer.NextLayer) -> None:
    """The next_layer hooks in pipeline order: who, the one decision, what the tunnel carries."""
    chain.identify.next_layer(nl)
    chain.filt.next_layer(nl)
    chain.tls.next_layer(nl)


def test_a_refused_client_hello_is_left_for_the_audit(chain: Chain) -> None:
    """A refusal no HTTP flow describes is left in the facts, for one access-log line."""
    nl = _nextlayer(BYOD, "tcp", ("192.0.2.1", 443), client_hello("adult.example"), tls=True)
    decide_layer(chain, nl)
    record = facts.tunnel_record(nl)
    assert record is not None
    assert (record.action, record.kind, record.host) == ("refuse", "tls", "adult.example")
    assert record.decision.category == "adult"


def test_tls_waits_for_the_whole_client_hello(chain: Chain) -> None:
    """Half a ClientHello defers the choice instead of guessing."""
    nl = _nextlayer(BYOD, "tcp", ("192.0.2.1", 443), client_hello("adult.example")[:20], tls=True)
    decide_layer(chain, nl)
    assert nl.layer is None
    assert nl.context.layers == []


# --- review --------------------------------------------------------------------------------


def _post(chain: Chain, host: str, client: str, **form: str) -> http.HTTPFlow:
    flow = flow_for(f"http://{host}/_schoolgate/review", client)
    flow.request.method = "POST"
    flow.request.headers["content-type"] = "application/x-www-form-urlencoded"
    flow.request.content = urllib.parse.urlencode(form).encode()
    chain.request(flow)
    return flow


def test_review_form_is_signed_and_filed(chain: Chain) -> None:
    """The block page's token files a request with what the proxy saw; a forged one does not."""
    blocked = chain.request(flow_for("http://adult.example/page"))
    assert blocked.response is not None
    page = (blocked.response.content or b"").decode()
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    reference = page.split('name="reference" value="', 1)[1].split('"', 1)[0]
    assert token

    flow = _post(chain, "adult.example", PUPIL, reference=reference, token=token, reason="Art")
    run(chain.review.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 200
    line = json.loads((chain.data_dir / "review-requests.jsonl").read_text().splitlines()[-1])
    assert (line["url"], line["category"], line["reason"]) == ("adult.example/page", "adult", "Art")

    for client, tok in (
        (BYOD, token),
        (PUPIL, token[:-1] + ("1" if token.endswith("0") else "0")),
        (PUPIL, ""),
    ):
        forged = _post(chain, "adult.example", client, reference=reference, token=tok, reason="x")
        run(chain.review.request(forged))
        assert forged.response is not None
        assert forged.response.status_code == 404
    assert len((chain.data_dir / "review-requests.jsonl").read_text().splitlines()) == 1


def _form(flow: http.HTTPFlow) -> tuple[str, str]:
    """The reference and token in the review form of the block page ``flow`` was answered with."""
    assert flow.response is not None
    page = (flow.response.content or b"").decode()
    token = page.split('name="token" value="', 1)[1].split('"', 1)[0]
    reference = page.split('name="reference" value="', 1)[1].split('"', 1)[0]
    return reference, token


@pytest.mark.parametrize(("client", "user"), [(PUPIL, None), (BYOD, None)], ids=["pupil", "byod"])
def test_the_page_goes_out_signed_for_its_own_url_client_and_user(
    chain: Chain, client: str, user: str | None
) -> None:
    """The token in the page vouches for exactly this block: its URL, the client, the user."""
    flow = chain.request(flow_for(f"http://adult.example/{client}/page", client))
    reference, token = _form(flow)
    key = signing_key(chain.data_dir)
    assert verify(key, token, int(time.time())) == (
        reference,
        Blocked(f"adult.example/{client}/page", "adult", client, user),
    )


def test_a_token_signed_for_another_user_files_nothing(chain: Chain) -> None:
    """The same address and reference, but a token signed for another user: refused."""
    blocked = chain.request(flow_for("http://adult.example/page"))
    reference, _ = _form(blocked)
    key = signing_key(chain.data_dir)
    now = int(time.time())
    other_user = sign(key, reference, Blocked("adult.example/page", "adult", PUPIL, "sam"), now)
    flow = _post(chain, "adult.example", PUPIL, reference=reference, token=other_user, reason="x")
    run(chain.review.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 404
    assert not (chain.data_dir / "review-requests.jsonl").exists()
