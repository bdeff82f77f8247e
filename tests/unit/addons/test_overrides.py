"""Overrides in the proxy: JSON-lines files read a line at a time; the filter uses the snapshot."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mitmproxy.test import taddons, tflow

from addons.facts import DECISION
from addons.filter import Filter
from addons.identify import Identify
from addons.overrides import Overrides
from addons.policyload import PolicyLoader
from addons.store import StoreWriter
from blocklists.normalise import normalise_url
from proxy.controls import NO_CONTROLS, ActiveOverride, ActiveSuspension, Controls, WhatKind
from proxy.filterset import Filterset, load_filterset
from proxy.jsonlines import JsonLinesTail
from proxy.settings import load_settings
from proxy.store import control, migrate, snapshot
from proxy.store.engine import session
from tests.chain import one, running
from tests.integration.harness import free_port


def test_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    """A line still being written waits; lines already read are not returned again."""
    path = tmp_path / "review-requests.jsonl"
    tail = JsonLinesTail(path)
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
    tail = JsonLinesTail(path)
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
    with running(ROOT / "config", filterset, Identify, Filter) as addons:
        loader, identify, filt = (
            one(addons, PolicyLoader),
            one(addons, Identify),
            one(addons, Filter),
        )
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


# --- the snapshot kept on disk ---------------------------------------------------------------


def _suspended(user: str) -> Controls:
    suspension = ActiveSuspension(1, user, NOW - timedelta(hours=1), None, "misuse", "dsl")
    return Controls.of([], [suspension], NOW)


def _rig(tmp_path: Path, database: str | None = None) -> tuple[PolicyLoader, Overrides]:
    settings = load_settings(ROOT / "config").model_copy(
        update={"data_dir": tmp_path, "database": database}
    )
    fs = load_filterset(ROOT / "config")
    fs = Filterset.build(settings, fs.policy, fs.lists)
    loader = PolicyLoader(ROOT / "config", fs)
    return loader, Overrides(loader, StoreWriter(loader))


def test_the_last_snapshot_is_in_force_before_the_store_answers(tmp_path: Path) -> None:
    """Configured with a snapshot on disk, the proxy starts with the suspension in force."""
    snapshot.save(tmp_path / snapshot.SNAPSHOT_FILE, _suspended("head.teacher"))
    loader, overrides = _rig(tmp_path)
    with taddons.context(loader, overrides):
        head = loader.filterset.identities.resolve("10.20.0.5")
        url = normalise_url("http://example.com/")
        decision = loader.filterset.decide_url(head, url, datetime.now(UTC), loader.controls)
    assert decision.action == "suspended"
    overrides.store.engine.dispose()


def test_a_damaged_snapshot_is_logged_and_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not a snapshot leaves no controls in force and says why."""
    (tmp_path / snapshot.SNAPSHOT_FILE).write_text("{half")
    loader, overrides = _rig(tmp_path)
    with taddons.context(loader, overrides):
        assert loader.controls is NO_CONTROLS
    assert "unreadable, starting with no overrides" in caplog.text
    overrides.store.engine.dispose()


def test_a_refresh_writes_the_stores_snapshot_to_disk(tmp_path: Path) -> None:
    """The snapshot read from the store is written to a private file for the next start."""
    loader, overrides = _rig(tmp_path)
    migrate.upgrade(overrides.store.engine)
    with session(overrides.store.engine) as s:
        control.suspend(s, "j.meer", by="dsl", reason="misuse", starts=NOW, ends=None, now=NOW)
    with taddons.context(loader, overrides):
        overrides.refresh()
    path = tmp_path / snapshot.SNAPSHOT_FILE
    kept = snapshot.load(path)
    assert kept is not None
    assert list(kept.suspensions) == ["j.meer"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    overrides.store.engine.dispose()


def test_a_dead_store_leaves_the_restored_snapshot_and_its_file(tmp_path: Path) -> None:
    """With the store down from the start, the snapshot from disk stays in force, unchanged."""
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.save(path, _suspended("j.meer"))
    before = path.read_text()
    dead = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    loader, overrides = _rig(tmp_path, dead)
    with taddons.context(loader, overrides):
        overrides.refresh()
        assert list(loader.controls.suspensions) == ["j.meer"]
    assert path.read_text() == before
    overrides.store.engine.dispose()
