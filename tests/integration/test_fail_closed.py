"""Fail closed in one place: an exception in any request-path hook of any addon blocks.

The real proxy runs under ``breakhook``, which makes one hook of one addon
raise for requests to ``ADDON--HOOK.break.example``. For every addon and
every request-path hook it defines, a pupil asks for that host over plain
HTTP and over HTTPS (CONNECT, trusting the proxy's CA); the failing hook
finds its host by the request's Host header, so it fails inside a tunnel
too. The origin (``RecordingOrigin``, counting every connection and every
request) must see nothing when the failing hook runs before any upstream
connection, and no request when it runs in a tunnel EarlyConnect already
opened; for the response hooks, the client must not get the origin's
answer. Each failure must be counted in
``schoolgate_hook_errors_total{addon,hook}``, which shows the hook really ran
and failed on that path.
"""

from __future__ import annotations

import http.client
import inspect
import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection, events

import addons
from addons.pipeline import REQUEST_PATH
from tests.integration.breakhook import SUFFIX, break_host
from tests.integration.harness import (
    PUPIL,
    Gateway,
    OriginCA,
    RecordingOrigin,
    mapped_gateway,
    recording_origin,
    stop_gateway,
)

pytestmark = pytest.mark.integration

# After these the request has gone to the origin: the client must still not get its answer.
RESPONSE_SIDE = {"responseheaders", "response"}
# In a tunnel these run after EarlyConnect (``addons/earlyconnect.py``) may have opened the
# upstream TLS connection: the origin may see that connection, never a request on it. Found by
# test: every requestheaders and request case over HTTPS sees exactly one TLS connection and
# no request; every other hook, and every hook over plain HTTP, sees nothing at all.
AFTER_EARLY_CONNECT = {"requestheaders", "request"}


def _pairs() -> list[tuple[str, str]]:
    """(addon, hook) for every request-path hook every Schoolgate addon defines."""
    found = []
    for _, cls in inspect.getmembers(addons, inspect.isclass):
        if not cls.__module__.startswith("addons.") or cls is addons.Pipeline:
            continue
        for hook in sorted(REQUEST_PATH):
            if callable(getattr(cls, hook, None)):
                found.append((cls.__name__.lower(), hook))
    return found


PAIRS = _pairs()
CONTROL = f"control{SUFFIX}"
MESSAGE = b"meet me after school"


@pytest.fixture(scope="module")
def origin(origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    found = recording_origin(origin_ca, tmp_path_factory.mktemp("break-origin"), f"*{SUFFIX}")
    yield found
    found.close()


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, origin: RecordingOrigin
) -> Iterator[Gateway]:
    gateway = mapped_gateway(
        tmp_path_factory.mktemp("fail-closed"),
        origin_ca,
        origin,
        [CONTROL, *(break_host(a, h) for a, h in PAIRS)],
        ports=(80, 443),
        module="tests.integration.breakhook",
    )
    yield gateway
    stop_gateway(gateway)


def hook_errors(gw: Gateway, addon: str, hook: str) -> float:
    port = gw.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    wanted = f'schoolgate_hook_errors_total{{addon="{addon}",hook="{hook}"}}'
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def plain(gw: Gateway, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5, source_address=(PUPIL, 0))
    try:
        conn.request("GET", f"http://{host}/page")
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""  # the connection was refused or cut: nothing came back
    finally:
        conn.close()


def secure(gw: Gateway, host: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=5, context=context, source_address=(PUPIL, 0)
    )
    conn.set_tunnel(host, 443)
    try:
        conn.request("GET", "/page")
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException, ssl.SSLError):
        return 0, b""
    finally:
        conn.close()


@dataclass
class Chat:
    """What a WebSocket client saw: the upgrade accepted, the echo of its message if any, and
    whether the proxy ended the connection (closed, reset or a close frame; not a timeout)."""

    accepted: bool
    echo: bytes | None
    ended: bool = False


def websocket(gw: Gateway, host: str, *, tls: bool) -> Chat:
    """Open ``ws://host/chat`` (absolute-form through the proxy) or ``wss://host/chat``
    (CONNECT, trusting the proxy's CA), send one message and wait for its echo."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5, source_address=(PUPIL, 0))
    stream: socket.socket = sock
    accepted, echo, ended = False, None, False
    try:
        target = "/chat"
        if tls:
            sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            if not sock.recv(4096).startswith(b"HTTP/1.1 200"):
                return Chat(False, None, ended=True)
            context = ssl.create_default_context(cafile=str(gw.ca_file))
            stream = context.wrap_socket(sock, server_hostname=host)
        else:
            target = f"http://{host}/chat"
        ws = WSConnection(ConnectionType.CLIENT)
        stream.sendall(ws.send(events.Request(host=host, target=target)))
        while echo is None:
            data = stream.recv(4096)
            if not data:
                ended = True  # the proxy closed the connection
                break
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, events.AcceptConnection):
                    accepted = True
                    stream.sendall(ws.send(events.BytesMessage(MESSAGE)))
                elif isinstance(event, events.BytesMessage):
                    echo = bytes(event.data)
                elif isinstance(event, events.CloseConnection | events.RejectConnection):
                    return Chat(accepted, echo, ended=True)
    except TimeoutError:
        pass  # nothing came back and the connection stayed open
    except (OSError, ssl.SSLError):
        ended = True  # reset
    finally:
        stream.close()
    return Chat(accepted, echo, ended)


def test_the_pairs_cover_the_pipeline() -> None:
    """Every addon with a request-path hook is attacked, the filter's four among them."""
    assert {h for a, h in PAIRS if a == "filter"} == {
        "http_connect",
        "next_layer",
        "requestheaders",
    }
    assert ("limits", "websocket_message") in PAIRS
    assert len({a for a, _ in PAIRS}) >= 10


# A plain GET and an HTTPS GET never open a WebSocket: its hooks are attacked by their own
# test below, which opens one.
CASES = [pytest.param(a, h, id=f"{a}.{h}") for a, h in PAIRS if "websocket" not in h]
WEBSOCKET_CASES = [pytest.param(a, h, id=f"{a}.{h}") for a, h in PAIRS if "websocket" in h]


@pytest.mark.parametrize(("addon", "hook"), CASES)
def test_an_exception_in_any_hook_blocks(
    gw: Gateway, origin: RecordingOrigin, addon: str, hook: str
) -> None:
    """The hook raises: the origin is never reached (or its answer never delivered); counted.

    A hook runs on plain HTTP, on HTTPS, or both (``next_layer`` with a host only in a
    tunnel): each way whose request made the hook fail must have been blocked.
    """
    host = break_host(addon, hook)
    failed_ways = 0
    for way in (plain, secure):
        errors, before = hook_errors(gw, addon, hook), origin.count()
        requests = origin.request_count()
        status, body = way(gw, host)
        if hook_errors(gw, addon, hook) == errors:
            continue  # this hook does not run this way (the other way attacks it)
        failed_ways += 1
        assert b"origin ok" not in body
        # A failed server_connect refuses the upstream connection (server.error), which the
        # client sees as the gateway's "cannot reach the site" 502; the origin check is below.
        assert status in ((0, 403, 502) if hook == "server_connect" else (0, 403))
        if hook in RESPONSE_SIDE:
            continue
        if way is secure and hook in AFTER_EARLY_CONNECT:
            # EarlyConnect met this allowed host at the pupil's ClientHello, before these hooks
            # run: one TLS handshake to the origin is allowed, and harmless (it carries
            # nothing from the pupil but the host name its ClientHello already showed). No request
            # may follow it; give a request the proxy sent on the time to be recorded.
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                assert origin.request_count() == requests, "secure: a request reached the origin"
                time.sleep(0.05)
            opened = origin.opened_since(before)
            assert opened in ([], [b"\x16"]), f"secure: not one TLS connection at most: {opened}"
        else:
            # Before any upstream connection: nothing at all may reach the origin.
            assert (origin.count(), origin.request_count()) == (before, requests), (
                f"{way.__name__}: the origin was reached"
            )
    assert failed_ways >= 1, "the injected failure never happened"
    if hook in AFTER_EARLY_CONNECT:  # every request runs these, in a tunnel or not
        assert failed_ways == 2, "the injected failure did not happen both ways"


@pytest.mark.parametrize(("addon", "hook"), WEBSOCKET_CASES)
def test_an_exception_in_a_websocket_hook_ends_the_websocket(
    gw: Gateway, origin: RecordingOrigin, addon: str, hook: str
) -> None:
    """The hook raises on the pupil's first message: the WebSocket ends and the origin never
    gets the message; counted. The origin may see the upgrade itself (a failing
    ``websocket_message`` runs only once the WebSocket is open), never what was sent on it.
    """
    host = break_host(addon, hook)
    for tls in (False, True):
        errors, before = hook_errors(gw, addon, hook), list(origin.messages)
        chat = websocket(gw, host, tls=tls)
        way = "wss" if tls else "ws"
        assert hook_errors(gw, addon, hook) > errors, f"{way}: the injected failure never happened"
        assert chat.echo is None, f"{way}: the message went through"
        assert chat.ended, f"{way}: the WebSocket was left open"
        # Had the proxy sent the message on before hanging up, the origin may still be reading
        # it: give it the time a delivered message takes (the control's is well under this).
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            assert origin.messages == before, f"{way}: the origin got the message"
            time.sleep(0.05)


def test_an_unbroken_host_carries_a_websocket(gw: Gateway, origin: RecordingOrigin) -> None:
    """The control for the WebSocket case: the same message reaches the origin and comes back."""
    for tls in (False, True):
        before = len(origin.messages)
        assert websocket(gw, CONTROL, tls=tls) == Chat(True, MESSAGE)
        assert origin.messages[before:] == [MESSAGE]


def test_an_unbroken_host_reaches_the_origin(gw: Gateway, origin: RecordingOrigin) -> None:
    """The control: with no hook failing, both ways reach the origin (so the test can fail)."""
    before = origin.count()
    assert plain(gw, CONTROL) == (200, b"origin ok")
    assert secure(gw, CONTROL) == (200, b"origin ok")
    assert origin.count() == before + 2
