"""Facts: what one addon learned about a flow or a connection, for the later addons to read.

Addons never import one another; they share facts here (STYLE.md 6):

- per request, in ``flow.metadata["schoolgate.*"]`` (frozen values): who is
  asking (``Identity``), the decision (``Decision``), the block page's
  reference, the lookup time, and whether the proxy answered the flow itself;
- per client connection, in a ``WeakKeyDictionary`` (as mitmproxy's
  ``proxyauth`` does), gone with the connection: its login, its identity and
  the one decision made on its host at CONNECT or from its TLS SNI;
- per layer decision (one ``NextLayer``), what the tunnel was allowed to carry,
  so the audit writes one access-log line for a connection no HTTP flow
  describes (a refused raw TCP stream, a passed-through TLS connection).

The Filter alone decides; TlsPolicy, Incidents, Audit, Circumvention and
Metrics read these facts and never decide again.

It also holds the one reading of a TLS ClientHello that every addon uses:
servers ignore the record layer's version byte, so any value of it is TLS.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from weakref import WeakKeyDictionary

from mitmproxy import connection, http
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.tls import ClientHello
from sqlalchemy import Engine

from proxy.controls import Controls
from proxy.decision import Decision
from proxy.filterset import Filterset
from proxy.identity import Identity
from proxy.incidents.searchterms import SearchQuery, could_be_search, extract_search
from proxy.logins import Login
from proxy.store.events import Event
from proxy.tlspolicy import HostDecision
from proxy.yamlfile import Problem

__all__ = ["HostDecision"]  # the one decision on a connection's host (proxy.tlspolicy)

IDENTITY = "schoolgate.identity"
LOGIN = "schoolgate.login"
DECISION = "schoolgate.decision"
REFERENCE = "schoolgate.reference"
LOOKUP_SECONDS = "schoolgate.lookup_seconds"
# Set on a flow the proxy answered itself (block page, review page): later addons leave it be.
ANSWERED = "schoolgate.answered"
# The learned list's state for the request's URL (``learned``, ``confirmed``, ``rejected``),
# set by ContentAnalysis at requestheaders: the image pool never re-scores a rejected image.
LEARNED_STATE = "schoolgate.learned_state"
# What ImageAnalysis did with a response's image: "queued", or "unscored: pool full" (or
# "too large", "empty"); Metrics counts it.
IMAGE = "schoolgate.image"
IMAGE_OUTCOMES = ("queued", "pool full", "too large", "empty")
# The search a request makes (a SearchQuery), or None: worked out once by ``search_of``.
SEARCH = "schoolgate.search"


class Policies(Protocol):
    """The filterset and the controls in force (``addons.policyload.PolicyLoader``)."""

    config_dir: Path
    filterset: Filterset
    controls: Controls


class Reloading(Policies, Protocol):
    """``Policies`` that reload: who hears of a swap, and how many there were."""

    on_swap: list[Callable[[Filterset, Filterset, str], None]]
    on_refused: list[Callable[[str, list[Problem]], None]]
    reloads: int
    failures: int


class Recorder(Protocol):
    """The store's one writer (``addons.store.StoreWriter``): a queue put, no I/O."""

    engine: Engine

    def record(self, event: Event) -> None: ...


# -- per request ---------------------------------------------------------------------------


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    found = flow.metadata.get(IDENTITY)
    return found if isinstance(found, Identity) else None


def login_of(flow: http.HTTPFlow) -> Login | None:
    found = flow.metadata.get(LOGIN)
    return found if isinstance(found, Login) else None


def decision_of(flow: http.HTTPFlow) -> Decision | None:
    found = flow.metadata.get(DECISION)
    return found if isinstance(found, Decision) else None


def reference_of(flow: http.HTTPFlow) -> str | None:
    found = flow.metadata.get(REFERENCE)
    return found if isinstance(found, str) else None


def answered(flow: http.HTTPFlow) -> bool:
    """Whether the proxy, not the origin, is answering this flow."""
    decision = decision_of(flow)
    return bool(flow.metadata.get(ANSWERED)) or (decision is not None and decision.blocked)


def answered_early(flow: http.HTTPFlow) -> bool:
    """For request hooks: ``answered``, or an earlier addon set a response (a login challenge).

    Such a flow is marked, so the response hooks leave it alone too.
    """
    if flow.response is not None:
        flow.metadata[ANSWERED] = True
        return True
    return answered(flow)


# -- per client connection -----------------------------------------------------------------


@dataclass
class _ClientFacts:
    login: Login | None = None
    identity: Identity | None = None
    host: HostDecision | None = None


_clients: WeakKeyDictionary[connection.Client, _ClientFacts] = WeakKeyDictionary()


def _facts(client: connection.Client) -> _ClientFacts:
    found = _clients.get(client)
    if found is None:
        found = _clients[client] = _ClientFacts()
    return found


def client_login(client: connection.Client) -> Login | None:
    found = _clients.get(client)
    return found.login if found else None


def set_client_login(client: connection.Client, login: Login) -> None:
    _facts(client).login = login


def client_identity(client: connection.Client) -> Identity | None:
    found = _clients.get(client)
    return found.identity if found else None


def set_client_identity(client: connection.Client, identity: Identity) -> None:
    _facts(client).identity = identity


def host_decision(client: connection.Client) -> HostDecision | None:
    """The filter's decision on this connection's host (CONNECT, SNI or destination)."""
    found = _clients.get(client)
    return found.host if found else None


def set_host_decision(client: connection.Client, decided: HostDecision) -> None:
    _facts(client).host = decided


# -- per layer decision (a tunnel's contents) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelRecord:
    """What a tunnel was allowed to carry, or why it was refused: one access-log line."""

    action: Literal["intercept", "pass", "refuse"]
    kind: Literal["tls", "tcp"]
    host: str | None
    port: int | None
    decision: Decision
    reason: str


_tunnels: WeakKeyDictionary[layer.NextLayer, TunnelRecord] = WeakKeyDictionary()


def tunnel_record(nextlayer: layer.NextLayer) -> TunnelRecord | None:
    return _tunnels.get(nextlayer)


def set_tunnel_record(nextlayer: layer.NextLayer, record: TunnelRecord) -> None:
    _tunnels[nextlayer] = record


# -- reading a TLS ClientHello -------------------------------------------------------------


def starts_like_tls(data: bytes) -> bool:
    """A TLS handshake record with any record-layer version byte (0x0300-0x03ff).

    mitmproxy accepts only 0x00-0x03 as the second version byte; servers ignore
    it, so a ClientHello with 0x04 there is still TLS to them, and must be to us.
    """
    return len(data) > 2 and data[0] == 0x16 and data[1] == 0x03


def normalise_records(data: bytes) -> bytes:
    """``data`` with the version byte of each complete leading TLS record set to 0x03 0x01.

    Only record headers change; the handshake inside is untouched. Stops at
    the first incomplete record or at anything that is not a TLS record.
    """
    out = bytearray(data)
    offset = 0
    while offset + 5 <= len(out) and out[offset] in (0x14, 0x15, 0x16, 0x17):
        if out[offset + 1] != 0x03:
            break
        out[offset + 2] = 0x01
        size = struct.unpack("!H", bytes(out[offset + 3 : offset + 5]))[0]
        offset += 5 + size
    return bytes(out)


def tls_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``data`` whatever its record version bytes.

    None while it is incomplete; ``ValueError`` when it is not a ClientHello.
    """
    if not starts_like_tls(data):
        raise ValueError("not a TLS handshake record")
    return parse_client_hello(normalise_records(data))


def sni_of(hello: ClientHello) -> tuple[str | None, bool]:
    """(the SNI or None, whether an SNI extension was sent that could not be read).

    mitmproxy's parser reports an SNI it rejects (a label over 63 characters,
    an embedded NUL) as no SNI at all; the server may still read a name in it,
    so the caller treats it as HTTPS without SNI (``https_without_sni``) and
    never passes it through on the strength of another name. With
    ``addons.browserhosts`` installed mitmproxy reads every name a browser
    accepts, 64-character labels included; an SNI names a DNS host (RFC 6066),
    so one that no DNS name can be is still unreadable here, as before.
    """
    try:
        sni = hello.sni
        sent = any(kind == 0x00 for kind, _ in hello.extensions)
    except Exception:  # a ClientHello the parser chokes on: nothing in it can be trusted
        return None, True
    if sni:
        return (sni, False) if _dns_length_ok(sni) else (None, True)
    return None, sent


def _dns_length_ok(name: str) -> bool:
    """Whether ``name`` keeps DNS's lengths: labels of 1 to 63 characters, 253 in all."""
    labels = name.removesuffix(".").split(".")
    return len(name.removesuffix(".")) <= 253 and all(0 < len(label) <= 63 for label in labels)


def search_of(flow: http.HTTPFlow) -> SearchQuery | None:
    """The search (engine and query) this request makes, if any; worked out once per flow.

    Incidents logs it and ContentAnalysis asks it twice (which rule a page falls under):
    one answer for all. A request that cannot be a search is ruled out before its URL is
    built and parsed (about 20 µs a request).
    """
    if SEARCH in flow.metadata:
        found: SearchQuery | None = flow.metadata[SEARCH]
        return found
    r = flow.request
    found = (
        extract_search(r.pretty_url) if could_be_search(r.host_header or r.host, r.path) else None
    )
    flow.metadata[SEARCH] = found
    return found
