"""Shared controls: a committed override or suspension change wakes every listening gateway."""

from __future__ import annotations

import itertools
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from proxy.store import control, notify
from proxy.store.engine import session
from proxy.store.site import at_site
from tests.postgres import PostgresServer, postgres  # noqa: F401  (pytest finds fixtures by import)

_numbers = itertools.count(1)

NOW = datetime.now(UTC)


@pytest.fixture
def store_url(postgres: PostgresServer) -> str:  # noqa: F811
    """PostgreSQL only: LISTEN/NOTIFY is PostgreSQL's, and SQLite stores rely on the poll
    (tested with the store's refresh), so these tests are not made for SQLite at all."""
    return postgres.create_database(f"test_notify_{os.getpid()}_{next(_numbers)}")


@pytest.fixture
def pg_engine(engine: Engine) -> Engine:
    assert engine.dialect.name == "postgresql"
    return engine


def listening(engine: Engine) -> tuple[notify.Listener, threading.Event]:
    woken = threading.Event()
    listener = notify.Listener(engine.url, woken.set)
    listener.start()
    assert listener.listening.wait(10)
    woken.wait(5)  # the catch-up wake every (re)connection makes
    woken.clear()
    return listener, woken


def test_a_suspension_committed_at_another_site_wakes_the_listener(pg_engine: Engine) -> None:
    """Suspending at one site notifies a gateway elsewhere when the transaction commits."""
    listener, woken = listening(pg_engine)
    try:
        with session(pg_engine) as s, at_site("north"):
            control.suspend(s, "amy", by="dsl", reason="misuse", starts=NOW, ends=None, now=NOW)
        assert woken.wait(10)
    finally:
        listener.stop()


def test_a_rolled_back_change_wakes_nobody(pg_engine: Engine) -> None:
    """A refused approval (the same person twice) sends nothing: NOTIFY goes with the commit."""
    listener, woken = listening(pg_engine)
    try:
        with session(pg_engine) as s:
            override = control.request_override(
                s,
                what_kind="host",
                what="games.example",
                scope_kind="group",
                scope="pupil",
                starts=NOW,
                ends=None,
                reason="lesson",
                requested_by="j.meer",
                now=NOW,
            )
            override_id = override.id
        assert not woken.wait(1.5)  # a request changes nothing in force: no wake needed
        with pytest.raises(control.ControlError, match="two-person rule"), session(pg_engine) as s:
            control.approve_override(
                s, override_id, by="j.meer", approvers=["j.meer"], now=NOW + timedelta(seconds=1)
            )
        assert not woken.wait(1.5)
    finally:
        listener.stop()


def test_the_two_person_rule_holds_across_sites(engine: Engine) -> None:
    """A request made at one site cannot be approved by its requester from another site."""
    with session(engine) as s, at_site("north"):
        override = control.request_override(
            s,
            what_kind="host",
            what="games.example",
            scope_kind="user",
            scope="amy",
            starts=NOW,
            ends=None,
            reason="lesson",
            requested_by="j.meer",
            now=NOW,
        )
        override_id = override.id
    with (
        pytest.raises(control.ControlError, match="two-person rule"),
        session(engine) as s,
        at_site("south"),
    ):
        control.approve_override(s, override_id, by="j.meer", approvers=["j.meer"], now=NOW)


def test_a_listener_whose_connection_is_cut_reconnects_and_catches_up(pg_engine: Engine) -> None:
    """The server ends the listening session: it listens again, wakes once, then hears changes."""
    listener, woken = listening(pg_engine)
    try:
        with pg_engine.begin() as conn:
            cut = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = :q AND pid <> pg_backend_pid()"
                ),
                {"q": f"LISTEN {notify.CHANNEL}"},
            ).all()
        assert cut
        assert woken.wait(15)  # the catch-up refresh after reconnecting
        assert listener.listening.wait(5)
        woken.clear()
        with session(pg_engine) as s:
            control.suspend(s, "bea", by="dsl", reason="misuse", starts=NOW, ends=None, now=NOW)
        assert woken.wait(10)
    finally:
        listener.stop()
