"""The proxy's answer equals ``explain``'s, for every way a decision can be reached.

The full cross product: a group that intercepts or not × a ``no_decrypt``
host or not × suspended or not × an approved override for the host or not ×
an illegal host or a merely blocked one × plain HTTP or a CONNECT (which is
then decrypted, passed through or refused, as the first two say). The addon
chain runs in mitmproxy's test context, through the real ``Pipeline``; what
it answers must be what ``explain`` computes (``Filterset.decide_url`` with
the same controls: ``proxy/cli/explain.py``), down to the rule.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import ctx, http
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.tls import ServerTLSLayer
from mitmproxy.test import taddons, tflow

from addons import facts
from addons.audit import Audit
from addons.circumvention import Circumvention
from addons.downloads import Downloads
from addons.filter import Filter
from addons.identify import Identify
from addons.pipeline import Pipeline, Refuse
from addons.policyload import PolicyLoader
from addons.review import Review
from addons.safesearch import SafeSearch
from addons.tlspolicy import TlsPolicy
from blocklists.index import IndexBuilder
from blocklists.normalise import normalise_url
from proxy.controls import ActiveOverride, ActiveSuspension, Controls
from proxy.decision import Decision
from proxy.filterset import Filterset
from proxy.policy import parse_policy
from proxy.settings import Settings, Source
from tests.chain import declared, one

POLICY = """\
school: Table School
identity:
  default_group: pupil
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
    - {cidr: 10.30.0.0/16, group: byod}
  users:
    - {name: p.one, group: pupil, ips: [10.10.0.9]}
    - {name: b.one, group: byod, ips: [10.30.0.9]}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
no_decrypt:
  hosts: [nd-adult.example, nd-illegal.example]
tcp_passthrough: ["adult.example:443", "lesson.example:443"]
groups:
  pupil:
    default: acceptable
    categories: {adult: unacceptable}
  byod:
    inherits: pupil
    intercept: false
"""
CLIENT = {True: ("10.10.0.9", "p.one"), False: ("10.30.0.9", "b.one")}


@dataclass(frozen=True)
class Case:
    intercept: bool
    no_decrypt: bool
    suspended: bool
    override: bool
    illegal: bool
    via: str  # HTTP or CONNECT

    @property
    def host(self) -> str:
        return (
            ("nd-" if self.no_decrypt else "")
            + ("illegal" if self.illegal else "adult")
            + (".example")
        )

    def __str__(self) -> str:
        flags = [
            "intercept" if self.intercept else "no-intercept",
            "no_decrypt" if self.no_decrypt else "decrypt",
            "suspended" if self.suspended else "-",
            "override" if self.override else "-",
            "illegal" if self.illegal else "blocked",
            self.via,
        ]
        return "/".join(flags)


BOTH = (True, False)
CASES = [
    Case(a, b, c, d, e, via)
    for a, b, c, d, e, via in itertools.product(BOTH, BOTH, BOTH, BOTH, BOTH, ("HTTP", "CONNECT"))
]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[PolicyLoader, Pipeline]]:
    builder = IndexBuilder()
    for host in ("adult.example", "nd-adult.example"):
        builder.add("ut1/adult", host)
    for host in ("illegal.example", "nd-illegal.example"):
        builder.add("iwf", host)
    settings = Settings(
        data_dir=tmp_path / "var",
        sources={
            "ut1": Source(path=tmp_path / "none", format="ut1"),
            "iwf": Source(path=tmp_path / "none.txt", format="iwf"),
        },
    )
    fs = Filterset.build(settings, parse_policy(POLICY, tmp_path / "policy.yaml"), builder.freeze())
    chain = declared(
        tmp_path, fs, Identify, Filter, Circumvention, TlsPolicy, SafeSearch, Downloads, Review,
        Audit,
    )  # fmt: skip
    pipeline = Pipeline(chain)
    with taddons.context(pipeline):
        yield one(chain, PolicyLoader), pipeline


def controls_for(case: Case, user: str, now: datetime) -> Controls:
    starts, ends = now - timedelta(hours=1), now + timedelta(hours=1)
    overrides = [
        ActiveOverride(1, "host", case.host, "user", user, starts, ends, "head.teacher", "lesson")
    ]
    suspensions = [ActiveSuspension(2, user, starts, ends, "misuse", "dsl")]
    return Controls.of(
        overrides if case.override else [], suspensions if case.suspended else [], now
    )


def client_hello(sni: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def hook(pipeline: Pipeline, name: str, *args: Any) -> None:
    getattr(pipeline, name)(*args)


def proxy_answer(pipeline: Pipeline, case: Case, ip: str) -> tuple[str, str, Decision | None]:
    """(allow|block, how: http/refused-at-connect/mitm/passthrough/refused-tls, decision)."""
    if case.via == "HTTP":
        flow = tflow.tflow()
        flow.client_conn.peername = (ip, 50000)
        flow.request.url = f"http://{case.host}/"
        hook(pipeline, "requestheaders", flow)
        return _answer(flow), "http", facts.decision_of(flow)
    connect = tflow.tflow()
    connect.client_conn.peername = (ip, 50000)
    connect.request.method = "CONNECT"
    connect.request.host, connect.request.port = case.host, 443
    connect.request.path = ""
    hook(pipeline, "http_connect", connect)
    if connect.response is not None:
        assert connect.response.status_code == 403
        return "block", "refused-at-connect", facts.decision_of(connect)
    context = Context(connect.client_conn, ctx.options)
    context.server.address = (case.host, 443)
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(connect.client_conn, client_hello(case.host)))
    hook(pipeline, "next_layer", nextlayer)
    record = facts.tunnel_record(nextlayer)
    if isinstance(nextlayer.layer, Refuse):
        assert record is not None
        return "block", "refused-tls", record.decision
    if isinstance(nextlayer.layer, layers.TCPLayer):
        assert record is not None
        return "allow", "passthrough", record.decision
    assert isinstance(nextlayer.layer, ServerTLSLayer)
    inner = tflow.tflow(client_conn=connect.client_conn)
    inner.request.url = f"https://{case.host}/"
    hook(pipeline, "requestheaders", inner)
    return _answer(inner), "mitm", facts.decision_of(inner)


def _answer(flow: http.HTTPFlow) -> str:
    if flow.response is None:
        return "allow"
    assert flow.response.status_code == 403
    return "block"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_proxy_answers_as_explain_does(
    chain: tuple[PolicyLoader, Pipeline], case: Case
) -> None:
    """Allow or block, and the very decision (rule, category, incident), as explain says."""
    loader, pipeline = chain
    ip, user = CLIENT[case.intercept]
    now = datetime.now(UTC)
    loader.controls = controls_for(case, user, now)
    fs = loader.filterset
    identity = fs.identities.resolve(ip)
    scheme = "http" if case.via == "HTTP" else "https"
    explained = fs.decide_url(
        identity, normalise_url(f"{scheme}://{case.host}/"), now, loader.controls
    )

    answer, how, decision = proxy_answer(pipeline, case, ip)

    assert answer == explained.decision
    assert decision is not None
    assert (decision.decision, decision.rule, decision.category, decision.incident) == (
        explained.decision,
        explained.rule,
        explained.category,
        explained.incident,
    )
    if case.via == "CONNECT":
        decrypts = case.intercept and not case.no_decrypt
        expected_ways = {"mitm"} if decrypts else {"passthrough", "refused-at-connect"}
        assert how in expected_ways
    # What opens a request, and what nothing opens:
    if case.illegal:
        assert answer == "block"
    elif case.suspended:
        assert (answer, decision.action) == ("block", "suspended")
    elif case.override:
        assert (answer, decision.action) == ("allow", "override")
    else:
        assert answer == "block"


def test_the_table_is_the_whole_cross_product() -> None:
    """2 x 2 x 2 x 2 x 2 x (HTTP, CONNECT): 64 cases, CONNECT ones decrypted or passed through."""
    assert len(set(CASES)) == 64


@pytest.mark.parametrize(
    ("host", "override", "carried"),
    [
        ("lesson.example", False, True),  # allowed and listed
        ("other.example", False, False),  # allowed, not listed
        ("adult.example", False, False),  # listed, but the host is blocked
        ("adult.example", True, True),  # listed, and an override opens the host
    ],
)
def test_raw_tcp_needs_the_list_and_the_filters_allow(
    chain: tuple[PolicyLoader, Pipeline], host: str, override: bool, carried: bool
) -> None:
    """SSH after CONNECT is relayed only to a tcp_passthrough host the filter allows."""
    loader, pipeline = chain
    ip, user = CLIENT[True]
    now = datetime.now(UTC)
    starts, ends = now - timedelta(hours=1), now + timedelta(hours=1)
    opened = ActiveOverride(1, "host", host, "user", user, starts, ends, "head.teacher", "git")
    loader.controls = Controls.of([opened] if override else [], [], now)
    connect = tflow.tflow()
    connect.client_conn.peername = (ip, 50000)
    connect.request.method = "CONNECT"
    connect.request.host, connect.request.port = host, 443
    hook(pipeline, "http_connect", connect)
    assert connect.response is None
    context = Context(connect.client_conn, ctx.options)
    context.server.address = (host, 443)
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(connect.client_conn, b"SSH-2.0-OpenSSH_9.6\r\n"))
    hook(pipeline, "next_layer", nextlayer)
    record = facts.tunnel_record(nextlayer)
    assert record is not None
    if carried:
        assert isinstance(nextlayer.layer, layers.TCPLayer)
        assert record.action == "pass"
    else:
        assert isinstance(nextlayer.layer, Refuse)
        assert record.action == "refuse"


def test_a_connection_with_no_connect_is_decided_on_its_destination(
    chain: tuple[PolicyLoader, Pipeline],
) -> None:
    """Transparent mode: raw TCP to a redirected destination is decided once, on that address."""
    loader, pipeline = chain
    loader.controls = Controls()
    client = tflow.tclient_conn()
    client.peername = (CLIENT[True][0], 40000)
    context = Context(client, ctx.options)
    context.server.address = ("adult.example", 443)
    nextlayer = layer.NextLayer(context)
    nextlayer.events.append(events.DataReceived(client, b"SSH-2.0-OpenSSH_9.6\r\n"))
    hook(pipeline, "next_layer", nextlayer)
    decided = facts.host_decision(client)
    assert decided is not None
    assert (decided.via, decided.hosts, decided.final) == ("destination", ("adult.example",), True)
    assert isinstance(nextlayer.layer, Refuse)  # on tcp_passthrough, but the host is blocked
