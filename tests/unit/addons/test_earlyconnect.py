"""EarlyConnect in mitmproxy's test context: early only for an unanswered, allowed tunnel."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.test import tflow

from addons import facts
from addons.earlyconnect import EarlyConnect
from addons.filter import Filter
from addons.identify import Identify
from proxy.decision import Decision
from proxy.filterset import Filterset, load_filterset
from tests.chain import one, running

ROOT = Path(__file__).resolve().parents[3]
PUPIL_IP = "10.10.1.2"


@pytest.fixture(scope="module")
def filterset() -> Filterset:
    return load_filterset(ROOT / "config")


@pytest.fixture
def chain(filterset: Filterset) -> Iterator[tuple[Identify, Filter, EarlyConnect]]:
    with running(ROOT / "config", filterset, Identify, Filter, EarlyConnect) as addons:
        yield one(addons, Identify), one(addons, Filter), one(addons, EarlyConnect)


def client_hello_record(sni: str) -> bytes:
    """A real ClientHello record, as Python's own TLS client writes it, for ``sni``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls_client.do_handshake()
    return outgoing.read()


def client_hello(sni: str) -> tls.ClientHello:
    return tls.ClientHello(client_hello_record(sni)[5 + 4 :])


def hello(
    chain: tuple[Identify, Filter, EarlyConnect],
    connect_host: str,
    sni: str,
    *,
    answered: bool = False,
    ignored: bool = False,
    failed: bool = False,
) -> bool:
    """CONNECT then ClientHello through the addons; whether the server is met first."""
    identify, filt, early = chain
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = connect_host, 443
    identify.http_connect(flow)
    filt.http_connect(flow)  # the decision at CONNECT (a blocked host is refused there)
    if answered:  # an earlier addon refused the tunnel (a 407, a port, a TLS policy 403)
        flow.response = http.Response.make(403)
    early.http_connect(flow)
    server = connection.Server(address=(connect_host, 443))
    server.tls = True
    context = Context(flow.client_conn, ctx.options)
    context.server = server
    # The filter's one decision at the ClientHello, on its SNI and the CONNECT host: the
    # only thing EarlyConnect reads.
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(flow.client_conn, client_hello_record(sni)))
    filt.next_layer(nextlayer)
    if failed:  # a later hook failed and the pipeline blocked the host to be safe
        decided = facts.host_decision(flow.client_conn)
        assert decided is not None
        facts.set_host_decision(
            flow.client_conn, replace(decided, decision=Decision.failed(None, "a hook failed"))
        )
    data = tls.ClientHelloData(context, client_hello(sni))
    data.ignore_connection = ignored
    early.tls_clienthello(data)
    return data.establish_server_tls_first


def test_an_allowed_tunnel_meets_its_server_first(
    chain: tuple[Identify, Filter, EarlyConnect],
) -> None:
    """A pupil's CONNECT and SNI to an uncategorised host: server TLS first, as eager does."""
    assert hello(chain, "lesson.example", "lesson.example")


def test_a_host_blocked_by_a_failing_hook_stays_lazy(
    chain: tuple[Identify, Filter, EarlyConnect],
) -> None:
    """The filter allowed it, then a hook failed and the pipeline blocked it: no early meet."""
    assert not hello(chain, "lesson.example", "lesson.example", failed=True)


@pytest.mark.parametrize(
    ("connect_host", "sni", "answered", "ignored"),
    [
        ("adult-demo.example", "adult-demo.example", False, False),  # blocked host
        ("lesson.example", "adult-demo.example", False, False),  # blocked SNI
        ("adult-demo.example", "lesson.example", False, False),  # blocked CONNECT host
        ("lesson.example", "lesson.example", True, False),  # CONNECT answered by an addon
        ("lesson.example", "lesson.example", False, True),  # passed through undecrypted
    ],
)
def test_everything_else_stays_lazy(
    chain: tuple[Identify, Filter, EarlyConnect],
    connect_host: str,
    sni: str,
    answered: bool,
    ignored: bool,
) -> None:
    """Blocked names, refused CONNECTs and untouched tunnels never meet the server early."""
    assert not hello(chain, connect_host, sni, answered=answered, ignored=ignored)


def test_a_clienthello_without_a_connect_stays_lazy(
    chain: tuple[Identify, Filter, EarlyConnect],
) -> None:
    """Transparent mode (no CONNECT decided the destination address): lazy."""
    _, _, early = chain
    client = connection.Client(peername=(PUPIL_IP, 50000), sockname=("10.0.0.1", 443))
    context = Context(client, ctx.options)
    context.server = connection.Server(address=("93.184.216.34", 443))
    context.server.tls = True
    data = tls.ClientHelloData(context, client_hello("lesson.example"))
    early.tls_clienthello(data)
    assert not data.establish_server_tls_first
