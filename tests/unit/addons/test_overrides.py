"""Overrides in the proxy: JSON-lines files read a line at a time; the filter uses the snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mitmproxy.test import taddons, tflow

from addons.facts import DECISION
from addons.filter import Filter
from addons.identify import Identify
from addons.overrides import _Tail
from addons.policyload import PolicyLoader
from proxy.controls import NO_CONTROLS, ActiveOverride, Controls, WhatKind
from proxy.filterset import Filterset, load_filterset


def test_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    """A line still being written waits; lines already read are not returned again."""
    path = tmp_path / "review-requests.jsonl"
    tail = _Tail(path)
    assert tail.new_lines() == []
    path.write_text('{"a": 1}\n{"b": 2}\n{"c"')
    assert tail.new_lines() == ['{"a": 1}', '{"b": 2}']
    with path.open("a") as f:
        f.write(": 3}\n")
    assert tail.new_lines() == ['{"c": 3}']
    assert tail.new_lines() == []


def test_tail_starts_again_after_the_file_is_replaced(tmp_path: Path) -> None:
    """A rotated (shorter) file is read from its start: ids make re-reading harmless."""
    path = tmp_path / "list-updates.jsonl"
    tail = _Tail(path)
    path.write_text('{"a": 1}\n{"b": 2}\n')
    assert len(tail.new_lines()) == 2
    path.write_text('{"z": 9}\n')
    assert tail.new_lines() == ['{"z": 9}']


# --- the filter with a snapshot ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC)


def active(what_kind: WhatKind, what: str) -> Controls:
    override = ActiveOverride(
        4,
        what_kind,
        what,
        "group",
        "pupil",
        NOW - timedelta(hours=1),
        NOW + timedelta(days=1),
        "head.teacher",
        "project",
    )
    return Controls.of([override], [], NOW)


@pytest.fixture(scope="module")
def filterset() -> Filterset:
    return load_filterset(ROOT / "config")


def test_filter_decides_with_the_loaders_snapshot(filterset: Filterset) -> None:
    """Once the snapshot holds an approved override, the filter lets the pupil through."""
    loader = PolicyLoader(ROOT / "config", filterset)
    identify, filt = Identify(loader), Filter(loader)
    with taddons.context(loader, identify, filt):
        for controls, status in ((NO_CONTROLS, 403), (active("host", "casino-demo.example"), None)):
            loader.controls = controls
            flow = tflow.tflow()
            flow.client_conn.peername = ("10.10.1.2", 50000)
            flow.request.url = "http://casino-demo.example/roulette"
            identify.requestheaders(flow)
            filt.requestheaders(flow)
            assert (flow.response.status_code if flow.response else None) == status
        assert flow.metadata[DECISION].override == 4


def test_url_override_leaves_the_connect_undecided(filterset: Filterset) -> None:
    """A CONNECT to a blocked host with a URL override under it waits for the request."""
    pupil = filterset.identities.resolve("10.10.1.2")
    host = "casino-demo.example"
    assert filterset.decide_host(pupil, host, NOW) is not None
    assert filterset.decide_host(pupil, host, NOW, active("url", f"{host}/maths")) is None
    assert filterset.decide_host(pupil, host, NOW, active("host", host)) is None
