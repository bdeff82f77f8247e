"""Change control through the real proxy process: overrides and suspensions take effect,
and no event is lost when the store stops and the proxy is killed and restarted."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import ProgrammingError

from proxy.store import chain
from proxy.store.engine import StoreDown, make_engine, session
from proxy.store.models import AppliedEvent, Change, Override
from proxy.store.spool import Spool
from tests.integration.harness import (
    HEAD,
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    eventually,
    free_port,
    run_cli,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.postgres import PostgresServer, postgres  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration
REFRESH = ("--set", "schoolgate_controls_refresh_ms=200")
ACCOUNTS = {"j.meer": "staff", "head.teacher": "approver", "dsl": "dsl"}


def sg(config_dir: Path, *args: str) -> str:
    """Run a command; whoever --by names answers its password and code prompts."""
    return run_cli(config_dir, *args, accounts=ACCOUNTS)


@pytest.fixture
def sqlite_gateway(tmp_path: Path, origin_ca: OriginCA) -> Iterator[Gateway]:
    """A real proxy with its SQLite store, reading the store every 200 ms."""
    gw = start_gateway(tmp_path, origin_ca, *REFRESH)
    yield gw
    stop_gateway(gw)


def test_approved_override_opens_a_site_until_revoked(
    sqlite_gateway: Gateway, origin: Origin
) -> None:
    """A teacher's request opens nothing; the head's approval opens it; revoking closes it."""
    gw = sqlite_gateway
    url = f"http://127.0.0.1:{origin.http_port}/level/1"
    games = {"Host": "games-demo.example"}
    assert gw.get(url, client=PUPIL, headers=games)[0] == 403
    out = sg(
        gw.config_dir,
        *("override", "request", "games-demo.example", "--for", "group:pupil", "--days", "14"),
        *("--reason", "Computing: game design unit", "--by", "j.meer"),
    )
    override_id = out.split()[1].lstrip("#")
    time.sleep(0.5)
    assert gw.get(url, client=PUPIL, headers=games)[0] == 403  # pending: still blocked
    sg(gw.config_dir, "override", "approve", override_id, "--by", "head.teacher")
    eventually(lambda: gw.get(url, client=PUPIL, headers=games)[0] == 200, "the override")
    sg(gw.config_dir, "override", "revoke", override_id, "--by", "head.teacher", "--reason", "done")
    eventually(lambda: gw.get(url, client=PUPIL, headers=games)[0] == 403, "the revocation")


def test_suspended_user_is_blocked_everywhere_until_restored(
    sqlite_gateway: Gateway, origin: Origin
) -> None:
    """A suspension blocks the headteacher's address at once; restoring opens it again."""
    gw = sqlite_gateway
    url = f"http://localhost:{origin.http_port}/news"
    assert gw.get(url, client=HEAD)[0] == 200
    sg(gw.config_dir, "access", "suspend", "head.teacher", "--reason", "test", "--by", "dsl")
    eventually(lambda: gw.get(url, client=HEAD)[0] == 403, "the suspension")
    assert gw.get(url, client=PUPIL)[0] == 200
    sg(gw.config_dir, "access", "restore", "head.teacher", "--reason", "ok", "--by", "dsl")
    eventually(lambda: gw.get(url, client=HEAD)[0] == 200, "the restore")


def test_list_updates_and_hand_edits_reach_the_log(sqlite_gateway: Gateway) -> None:
    """A list update line and a policy edit without `policy apply` appear in `changes list`."""
    gw = sqlite_gateway
    eventually(lambda: "policy.baseline" in sg(gw.config_dir, "changes", "list"), "the baseline")
    line = {
        "at": "2026-11-23T03:00:00+00:00",
        "by": "cron",
        "source": "ut1",
        "url": "https://lists.example/ut1.tar.gz",
        "result": "updated",
        "before": 100,
        "after": 120,
        "forced": False,
        "reason": None,
    }
    with (gw.data_dir / "list-updates.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    policy = gw.config_dir / "policy.yaml"
    policy.write_text(policy.read_text("utf-8").replace("social: blocked", "social: acceptable"))

    def logged() -> bool:
        listed = sg(gw.config_dir, "changes", "list")
        return (
            "policy.unattributed" in listed and "lists.update  cron  source ut1: updated" in listed
        )

    eventually(logged, "the list update and the hand edit")
    assert sg(gw.config_dir, "changes", "verify").startswith("verified: ")


# --- nothing lost ------------------------------------------------------------------------


class Store:
    """The store under test, and a way to take it down and bring it back."""

    def __init__(self, url: str, stop: Callable[[], None], start: Callable[[], None]) -> None:
        self.url, self.stop, self.start = url, stop, start

    def counts(self) -> dict[str, int]:
        engine = make_engine(self.url)
        try:
            with session(engine) as s:
                rows = s.execute(select(Change.kind, func.count()).group_by(Change.kind)).all()
                return dict(rows)
        except (StoreDown, ProgrammingError):  # not created yet by the proxy's first start
            return {}
        finally:
            engine.dispose()


@contextmanager
def sqlite_store(data_dir: Path) -> Iterator[Store]:
    path = data_dir / "schoolgate.db"
    held: list[sqlite3.Connection] = []

    def stop() -> None:  # another process holds the write lock: every write times out
        lock = sqlite3.connect(str(path), timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        held.append(lock)

    def start() -> None:
        while held:
            lock = held.pop()
            lock.rollback()
            lock.close()

    try:
        yield Store(f"sqlite:///{path}", stop, start)
    finally:
        start()


@contextmanager
def postgres_store(server: PostgresServer, name: str) -> Iterator[Store]:
    url = server.create_database(name)
    stopped: list[bool] = []

    def stop() -> None:
        server.stop("fast")
        stopped.append(True)

    def start() -> None:
        if stopped:
            server.start()
            stopped.clear()

    try:
        yield Store(url, stop, start)
    finally:
        start()


def spool_lines(gw: Gateway) -> int:
    """Events in the proxy's spool: the active file and the one being applied."""
    return len(Spool(gw.data_dir / "spool" / "events.jsonl"))


def add_reviews(gw: Gateway, numbers: range) -> None:
    with (gw.data_dir / "review-requests.jsonl").open("a", encoding="utf-8") as f:
        for n in numbers:
            row = {
                "time": "2026-11-23T10:00:00+00:00",
                "user": None,
                "group": "pupil",
                "client_ip": PUPIL,
                "url": f"http://games-demo.example/level/{n}",
                "category": "games",
                "reason": f"request {n}",
                "reference": f"SG-{n:08X}",
            }
            f.write(json.dumps(row) + "\n")


def edit_policy(gw: Gateway, n: int) -> None:
    """Edit the policy by hand (no `policy apply`) and wait until the proxy reloads it."""
    reloads = gw.stderr().count("reloaded policy")
    policy = gw.config_dir / "policy.yaml"
    policy.write_text(policy.read_text("utf-8") + f"# hand edit {n}\n", "utf-8")
    eventually(lambda: gw.stderr().count("reloaded policy") > reloads, f"reload {n}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_event_lost_when_store_stops_and_proxy_is_killed(
    backend: str, tmp_path: Path, origin_ca: OriginCA, request: pytest.FixtureRequest
) -> None:
    """Events made while the store is down are spooled; after SIGKILL and a restart with the
    store back, every one of them is in the store exactly once, and the chain verifies."""
    data_dir = tmp_path / "var"
    write_config(tmp_path / "config", data_dir, free_port())
    if backend == "sqlite":
        store_cm = sqlite_store(data_dir)
    else:
        server = request.getfixturevalue("postgres")
        store_cm = postgres_store(server, f"lost_{int(time.time() * 1000)}")
    with store_cm as store:
        if backend == "postgresql":
            with (tmp_path / "config" / "schoolgate.yaml").open("a") as f:
                f.write(f"database: {store.url}\n")
        gw = start_gateway(tmp_path, origin_ca, *REFRESH)
        try:
            # Store up: the policy in force, 3 block-page requests and 1 hand edit are stored.
            eventually(lambda: store.counts() == {"policy.baseline": 1}, "the baseline")
            add_reviews(gw, range(3))
            edit_policy(gw, 1)
            expected_up = {"policy.baseline": 1, "policy.unattributed": 1, "override.request": 3}
            eventually(lambda: store.counts() == expected_up, "the first events")

            # Store down: 5 requests and 3 hand edits are spooled; the proxy keeps filtering.
            store.stop()
            add_reviews(gw, range(3, 8))
            for n in range(2, 5):
                edit_policy(gw, n)
            eventually(lambda: spool_lines(gw) == 8, "8 spooled events", timeout=40)
            assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
            gw.process.send_signal(signal.SIGKILL)
            gw.process.wait(10)
        finally:
            stop_gateway(gw)

        # Store back, proxy restarted: the spool is replayed once, in order.
        store.start()
        gw = start_gateway(tmp_path, origin_ca, *REFRESH)
        try:
            expected = {"policy.baseline": 1, "policy.unattributed": 4, "override.request": 8}
            eventually(lambda: store.counts() == expected and spool_lines(gw) == 0, "replay")
            time.sleep(1)  # a second round of file reading and refreshing adds nothing
            assert store.counts() == expected
        finally:
            stop_gateway(gw)

        engine = make_engine(store.url)
        with session(engine) as s:
            assert chain.verify(s).ok
            references = s.scalars(select(Override.reference).order_by(Override.id)).all()
            edits = [
                json.loads(d)["text"].count("# hand edit")
                for d in s.scalars(
                    select(Change.details)
                    .where(Change.kind == "policy.unattributed")
                    .order_by(Change.seq)
                )
            ]
            linked = s.scalars(
                select(AppliedEvent.change_seq).where(AppliedEvent.change_seq.is_not(None))
            ).all()
        engine.dispose()
        assert references == [f"SG-{n:08X}" for n in range(8)]
        assert edits == [1, 2, 3, 4]  # in the order they were made
        # Each row came from exactly one event.
        assert sorted(n for n in linked if n is not None) == list(range(1, 14))
