"""ProxyLogin with Identify and Filter in mitmproxy's test context.

The TLS ClientHello is decided as the person who logged in on the CONNECT,
not as the address's group: a headteacher signed in on a pupil's machine may
reach social media over HTTPS, the pupil may not.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import connection, ctx
from mitmproxy.addons.proxyauth import mkauth
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons, tflow

from addons import facts
from addons.facts import IDENTITY, LOGIN
from addons.filter import Filter
from addons.identify import Identify
from addons.login import ProxyLogin
from addons.policyload import PolicyLoader
from proxy.filterset import Filterset, load_filterset
from proxy.logins import LoginBindings, hash_password
from proxy.settings import Auth
from tests.chain import one, running

ROOT = Path(__file__).resolve().parents[3]
PUPIL_IP = "10.10.1.2"


def client_hello(sni: str) -> bytes:
    """A real ClientHello record, as Python's own TLS client writes it, for ``sni``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls_client.do_handshake()
    return outgoing.read()


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[ProxyLogin, Identify, Filter]]:
    base = load_filterset(ROOT / "config")
    users = tmp_path / "users"
    users.write_text(f"head.teacher:{hash_password('right', rounds=4)}\n")
    settings = base.settings.model_copy(
        update={"auth": Auth(users_file=users), "data_dir": tmp_path / "var"}
    )
    fs = Filterset.build(settings, base.policy, base.lists)
    with running(ROOT / "config", fs, ProxyLogin, Identify, Filter) as addons:
        yield one(addons, ProxyLogin), one(addons, Identify), one(addons, Filter)


def connect(
    chain: tuple[ProxyLogin, Identify, Filter], credentials: str | None
) -> connection.Client:
    login, identify, filt = chain
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = "127.0.0.1", 443
    if credentials:
        flow.request.headers["Proxy-Authorization"] = credentials
    asyncio.run(login.http_connect(flow))
    identify.http_connect(flow)
    filt.http_connect(flow)
    assert flow.response is None
    return flow.client_conn


def sni_blocked(chain: tuple[ProxyLogin, Identify, Filter], client: connection.Client) -> bool:
    _, identify, filt = chain
    context = Context(client, ctx.options)
    context.server.address = ("127.0.0.1", 443)
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(client, client_hello("social-demo.example")))
    identify.next_layer(nextlayer)
    filt.next_layer(nextlayer)
    decided = facts.host_decision(client)
    return decided is not None and decided.via == "SNI" and decided.decision.blocked


def test_a_login_decides_the_sni_as_that_user(chain: tuple[ProxyLogin, Identify, Filter]) -> None:
    """After a CONNECT signed in as head.teacher, social media's SNI is not blocked."""
    client = connect(chain, mkauth("head.teacher", "right"))
    assert not sni_blocked(chain, client)


def test_without_a_login_the_sni_is_the_address_group(
    chain: tuple[ProxyLogin, Identify, Filter],
) -> None:
    """The same pupil address without a login is blocked at the SNI."""
    client = connect(chain, None)
    assert sni_blocked(chain, client)


def test_the_login_reaches_the_identity(chain: tuple[ProxyLogin, Identify, Filter]) -> None:
    """A checked proxy login becomes the flow's login and the head group."""
    login, identify, _ = chain
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.headers["Proxy-Authorization"] = mkauth("head.teacher", "right")
    asyncio.run(login.requestheaders(flow))
    identify.requestheaders(flow)
    assert flow.metadata[LOGIN].user == "head.teacher"
    assert flow.metadata[IDENTITY].group == "head"
    assert "Proxy-Authorization" not in flow.request.headers


def test_a_wrong_password_is_407_and_no_login(chain: tuple[ProxyLogin, Identify, Filter]) -> None:
    """Wrong credentials answer 407 and leave no login behind."""
    login, _, _ = chain
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.headers["Proxy-Authorization"] = mkauth("head.teacher", "wrong")
    asyncio.run(login.requestheaders(flow))
    assert flow.response is not None
    assert flow.response.status_code == 407
    assert LOGIN not in flow.metadata


def test_without_logins_configured_credentials_are_ignored() -> None:
    """With no users file or directory, a stray Proxy-Authorization is dropped, not refused."""
    fs = load_filterset(ROOT / "config")
    loader = PolicyLoader(ROOT / "config", fs)
    login = ProxyLogin(loader)
    with taddons.context(loader, login):
        flow = tflow.tflow()
        flow.request.headers["Proxy-Authorization"] = mkauth("anyone", "anything")
        asyncio.run(login.requestheaders(flow))
    assert flow.response is None
    assert LOGIN not in flow.metadata
    assert "Proxy-Authorization" not in flow.request.headers


def test_a_bound_address_is_its_user_from_the_connect_on(
    chain: tuple[ProxyLogin, Identify, Filter],
) -> None:
    """An address bound to head.teacher (login page, RADIUS) is head at the CONNECT already."""
    login, identify, filt = chain
    login.configure(set())  # builds the bindings from the settings
    assert login.bindings is not None
    login.bindings.bind(PUPIL_IP, "head.teacher", 10)
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.method = "CONNECT"
    flow.request.host, flow.request.port = "127.0.0.1", 443
    asyncio.run(login.http_connect(flow))
    identify.http_connect(flow)
    assert flow.metadata[IDENTITY].group == "head"
    filt.http_connect(flow)
    assert not sni_blocked(chain, flow.client_conn)


def test_signing_out_at_a_worker_that_has_not_yet_seen_the_sign_in(
    chain: tuple[ProxyLogin, Identify, Filter],
) -> None:
    """Sign-in at one worker, sign-out at another within the second before that one rereads
    the bindings: the address is signed out all the same (it used to answer "You are not
    signed in" and leave the binding, so the next person at the device was the last)."""
    login, _, _ = chain
    browsing = tflow.tflow()
    browsing.client_conn.peername = (PUPIL_IP, 50000)
    asyncio.run(login.requestheaders(browsing))  # this worker has just looked
    assert login.bindings is not None
    assert LOGIN not in browsing.metadata
    path = login.bindings.path
    LoginBindings(path).bind(PUPIL_IP, "head.teacher", minutes=30)  # the other worker
    assert login.bindings.user_at(PUPIL_IP) is None  # within the second: not reread yet
    flow = tflow.tflow()
    flow.client_conn.peername = (PUPIL_IP, 50000)
    flow.request.method = "POST"
    flow.request.url = "http://login.schoolgate/logout"
    flow.request.urlencoded_form = [("csrf", login._csrf(PUPIL_IP, "head.teacher"))]
    asyncio.run(login.requestheaders(flow))
    login.request(flow)
    assert flow.response is not None
    assert (flow.response.status_code, "You are signed out" in (flow.response.text or "")) == (
        200,
        True,
    )
    assert LoginBindings(path).user_at(PUPIL_IP) is None
