"""The writer: batches into the store, spools while it is down, replays in order exactly once."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from proxy.store import chain, events
from proxy.store.engine import make_engine, session
from proxy.store.models import AppliedEvent, Change, Override
from proxy.store.spool import Spool
from proxy.store.writer import Writer


def policy_events(start: int, count: int) -> list[events.Event]:
    return [
        events.policy_observed(f"v: {i}\n", "policy.yaml", "hot reload")
        for i in range(start, start + count)
    ]


def recorded(engine: Engine) -> list[str]:
    """The policy texts in the log, in chain order."""
    with session(engine) as s:
        return [
            json.loads(d)["text"] for d in s.scalars(select(Change.details).order_by(Change.seq))
        ]


def wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@contextmanager
def store_down(engine: Engine) -> Iterator[Engine]:
    """An engine for a store that refuses writes: SQLite locked by another process, or
    a PostgreSQL address nobody listens on."""
    if engine.dialect.name == "sqlite":
        lock = sqlite3.connect(str(engine.url.database), timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield engine
        finally:
            lock.rollback()
            lock.close()
    else:
        down = make_engine(engine.url.set(port=1).render_as_string(hide_password=False))
        yield down
        down.dispose()


def test_events_reach_the_store_in_order(engine: Engine, tmp_path: Path) -> None:
    """With the store up, every event is written, in the order it was enqueued."""
    writer = Writer(engine, tmp_path, retry_s=0.2)
    writer.start()
    for event in policy_events(0, 20):
        writer.enqueue(event)
    writer.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(20)]
    assert writer.spooled == 0


def test_events_arriving_close_together_share_one_transaction(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's apply lingers: events arriving within it go in one transaction, in order,
    and none waits for that linger to be on disk."""
    appended: list[int] = []
    applied: list[int] = []
    append, apply = Spool.append, Writer._apply

    def counted(spool: Spool, batch: Sequence[events.Event]) -> None:
        appended.append(len(batch))
        append(spool, batch)

    def counted_apply(writer: Writer, batch: Sequence[events.Event]) -> None:
        applied.append(len(batch))
        apply(writer, batch)

    monkeypatch.setattr(Spool, "append", counted)
    monkeypatch.setattr(Writer, "_apply", counted_apply)
    writer = Writer(engine, tmp_path, retry_s=0.2, linger_s=0.5)
    writer.start()
    for event in policy_events(0, 4):
        writer.enqueue(event)
        time.sleep(0.05)
    wait_for(lambda: writer.applied == 4)
    writer.stop()
    assert sum(appended) == 4
    assert applied == [4]
    assert writer.window_max < 0.5  # never the linger
    assert recorded(engine) == [f"v: {i}\n" for i in range(4)]


def test_spooling_is_paced_an_event_after_a_quiet_spell_is_written_at_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One append (one fsync) per ``spool_every_s`` at most: the first event after a quiet
    spell is on disk at once; those that follow within the interval wait out the rest of
    it and share the next append. The crash window is the interval plus one fsync."""
    appended: list[int] = []
    append = Spool.append

    def counted(spool: Spool, batch: Sequence[events.Event]) -> None:
        appended.append(len(batch))
        append(spool, batch)

    monkeypatch.setattr(Spool, "append", counted)
    writer = Writer(engine, tmp_path, retry_s=0.2, linger_s=0.1, spool_every_s=1.0)
    durable: list[float] = []
    writer.durable = durable.append
    writer.start()
    quiet = policy_events(0, 4)
    writer.enqueue(quiet[0])
    wait_for(lambda: len(durable) == 1)
    assert durable[0] < 0.5  # not the pace: nothing was spooled in the last second
    for event in quiet[1:]:
        writer.enqueue(event)
    wait_for(lambda: len(durable) == 4)
    writer.stop()
    assert appended == [1, 3]
    assert all(0.2 < seconds < 1.5 for seconds in durable[1:]), durable
    assert recorded(engine) == [f"v: {i}\n" for i in range(4)]


def test_stopping_ends_the_linger_at_once(engine: Engine, tmp_path: Path) -> None:
    """A stop does not wait out the linger: the batch is written and the thread ends."""
    writer = Writer(engine, tmp_path, retry_s=0.2, linger_s=30.0)
    writer.start()
    writer.enqueue(policy_events(0, 1)[0])
    started = time.monotonic()
    writer.stop()
    assert time.monotonic() - started < 5
    assert recorded(engine) == ["v: 0\n"]


def test_spooled_events_survive_a_restart_and_replay_once_in_order(
    engine: Engine, tmp_path: Path
) -> None:
    """Events written while the store is down are spooled to disk, and a new writer (after a
    restart) replays them, in order, once, behind the events written before."""
    first = Writer(engine, tmp_path, retry_s=0.2)
    first.start()
    for event in policy_events(0, 3):
        first.enqueue(event)
    first.stop()
    with store_down(engine) as down:
        crashed = Writer(down, tmp_path, retry_s=0.2)
        crashed.start()
        for event in policy_events(3, 7):
            crashed.enqueue(event)
        wait_for(lambda: crashed.spooled == 7 and crashed.down is not None)
        # The process dies here: the threads end, nothing is flushed, and the kernel drops
        # the lock on the spool.
        crashed.abandon()
    spool = Spool(tmp_path / "spool" / "events.jsonl")
    assert len(spool) == 7
    restarted = Writer(engine, tmp_path, retry_s=0.2)
    assert restarted.spooled == 7
    restarted.start()
    restarted.enqueue(policy_events(10, 1)[0])
    assert restarted.wait_idle(15)
    restarted.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(11)]
    assert len(spool) == 0
    with session(engine) as s:
        assert chain.verify(s).ok


def test_replaying_an_already_applied_spool_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    """A crash between commit and clearing the spool replays events the store has: no duplicates."""
    batch = policy_events(0, 4)
    writer = Writer(engine, tmp_path, retry_s=0.2)
    writer.start()
    for event in batch:
        writer.enqueue(event)
    writer.stop()
    writer.spool.append(batch)  # as if the spool had not been cleared before the crash
    again = Writer(engine, tmp_path, retry_s=0.2)
    again.start()
    assert again.wait_idle(15)
    again.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(4)]
    assert again.duplicates == 4
    with session(engine) as s:
        assert len(s.scalars(select(AppliedEvent)).all()) == 4


def test_a_refused_event_is_set_aside_and_does_not_block_the_rest(
    engine: Engine, tmp_path: Path
) -> None:
    """An event the store refuses for a reason other than being down goes to rejected.jsonl."""
    writer = Writer(engine, tmp_path, retry_s=0.2)
    writer.start()
    good = policy_events(0, 2)
    writer.enqueue(good[0])
    writer.enqueue(events.Event("no.such.kind", {"x": 1}))
    writer.enqueue(good[1])
    writer.stop()
    assert recorded(engine) == ["v: 0\n", "v: 1\n"]
    rejected = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in rejected] == ["no.such.kind"]


def test_an_event_is_on_disk_before_the_store_is_tried(tmp_path: Path) -> None:
    """The writer spools first: with SQLite's write lock held elsewhere (a write would wait
    3 s), the event is in the fsync'd spool within a second, so a kill then loses nothing."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with store_down(engine) as down:
        writer = Writer(down, tmp_path, retry_s=0.2)
        writer.start()
        writer.enqueue(policy_events(0, 1)[0])
        wait_for(lambda: len(writer.spool) == 1, timeout=1.0)
    writer.stop()
    engine.dispose()


def test_a_spool_left_by_a_process_that_is_gone_is_replayed(engine: Engine, tmp_path: Path) -> None:
    """A worker's spool left behind (fewer workers after a restart) is replayed by another
    writer; a spool still held by a live process is left to that process."""
    left = Spool(tmp_path / "spool" / "events-3.jsonl")
    left.append(policy_events(0, 2))
    held = Spool(tmp_path / "spool" / "events-2.jsonl")
    held.append(policy_events(9, 1))
    assert held.lock()  # a live worker
    other = Writer(engine, tmp_path, retry_s=0.2)
    other.start()
    wait_for(lambda: len(left) == 0)
    other.stop()
    held.unlock()
    assert recorded(engine) == ["v: 0\n", "v: 1\n"]
    assert len(held) == 1


def test_workers_given_the_same_file_lines_apply_each_once(engine: Engine, tmp_path: Path) -> None:
    """Every worker reads review-requests.jsonl: the same events from two writers at once
    give one override each, and nothing is set aside as refused."""
    rows = [
        {
            "time": "2026-11-23T10:00:00+00:00",
            "user": None,
            "group": "pupil",
            "client_ip": "10.10.1.2",
            "url": f"http://games.example/{n}",
            "category": "games",
            "reason": "r",
            "reference": f"SG-{n:08X}",
        }
        for n in range(20)
    ]
    writers = [Writer(engine, tmp_path, name=f"events-{n}", retry_s=0.2) for n in (1, 2)]
    for writer in writers:
        writer.start()
    for row in rows:
        for writer in writers:
            writer.enqueue(events.review_request(row, illegal=False))
    for writer in writers:
        writer.stop()
    with session(engine) as s:
        references = s.scalars(select(Override.reference)).all()
        assert chain.verify(s).ok
    assert sorted(r or "" for r in references) == sorted(str(r["reference"]) for r in rows)
    assert not (tmp_path / "spool" / "rejected.jsonl").exists()
    assert sum(w.applied for w in writers) == 20
    assert sum(w.duplicates for w in writers) == 20


def test_workers_observing_the_same_edit_record_it_once(engine: Engine, tmp_path: Path) -> None:
    """Every worker reloads a hand-edited policy and reports it: one unattributed row results."""
    with session(engine) as s:
        events.apply_event(s, events.policy_observed("v: 0\n", "policy.yaml", "start"))
    writers = [
        Writer(engine, tmp_path, name=f"events-{n}", retry_s=0.2, prepare=lambda e: None)
        for n in range(4)
    ]
    for writer in writers:
        writer.enqueue(events.policy_observed("v: 1\n", "policy.yaml", "hot reload"))
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.stop()
    assert recorded(engine) == ["v: 0\n", "v: 1\n"]


def test_the_spool_depth_and_the_oldest_event_age_show_an_outage(
    engine: Engine, tmp_path: Path
) -> None:
    """While the store is down the depth counts every event waiting and the oldest one's age
    grows; once it is back both return to 0 and the writer is up again."""
    with store_down(engine) as down:
        writer = Writer(down, tmp_path, retry_s=0.2)
        writer.start()
        for event in policy_events(0, 5):
            writer.enqueue(event)
        wait_for(lambda: writer.spooled == 5 and writer.down is not None)
        assert not writer.up
        assert writer.oldest_age() > 0
        writer.abandon()
    again = Writer(engine, tmp_path, retry_s=0.2)
    assert again.spooled == 5
    again.start()
    assert again.wait_idle(15)
    wait_for(lambda: again.up)
    assert again.spooled == 0
    assert again.oldest_age() == 0
    again.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(5)]


def test_an_unwritable_spool_holds_events_up_to_the_bound_then_drops_the_newest(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: events are held in memory (oldest kept, newest past the bound dropped and
    counted), retried with back-off, and all held ones are stored once the disk has room."""
    import errno

    append = Spool.append
    full = {"on": True}

    def no_space(spool: Spool, batch: Sequence[events.Event]) -> None:
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        append(spool, batch)

    monkeypatch.setattr(Spool, "append", no_space)
    writer = Writer(engine, tmp_path, retry_s=0.2, hold_max=5)
    writer.start()
    for event in policy_events(0, 8):
        writer.enqueue(event)
    wait_for(lambda: writer.held == 5 and writer.dropped == 3)
    assert not writer.up
    full["on"] = False
    wait_for(lambda: writer.applied == 5)
    assert writer.held == 0
    assert writer.up
    writer.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(5)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_dies_is_restarted(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both the spooling and the applying thread are restarted by the supervisor after an
    error that kills them, and no event is lost."""

    class Fatal(BaseException):
        """Not an Exception: nothing in the loops catches it, so the thread dies."""

    spool_step, apply_step = Writer._spool_step, Writer._apply_step
    deaths = {"spooler": 1, "applier": 1}

    def dying_spool_step(writer: Writer) -> None:
        if deaths["spooler"]:
            deaths["spooler"] -= 1
            raise Fatal
        spool_step(writer)

    def dying_apply_step(writer: Writer, final: bool) -> None:
        if deaths["applier"]:
            deaths["applier"] -= 1
            raise Fatal
        apply_step(writer, final)

    monkeypatch.setattr(Writer, "_spool_step", dying_spool_step)
    monkeypatch.setattr(Writer, "_apply_step", dying_apply_step)
    writer = Writer(engine, tmp_path, retry_s=0.2)
    writer.start()
    for event in policy_events(0, 3):
        writer.enqueue(event)
    wait_for(lambda: writer.applied == 3)
    assert writer.restarts == 2
    writer.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(3)]


def test_a_hung_store_call_is_broken_and_the_writer_carries_on(
    engine: Engine, tmp_path: Path
) -> None:
    """Events recorded while a store call hangs (a frozen server, as the writer sees it) are
    on disk at once; the supervisor breaks the call after ``apply_timeout_s`` and the
    events are written on the next try."""
    import threading

    from sqlalchemy import text

    if engine.dialect.name == "postgresql":
        slow = "SELECT pg_sleep(120)"
    else:
        slow = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
        )
    hanging = threading.Event()

    def prepare(eng: Engine) -> None:
        if not hanging.is_set():
            hanging.set()
            with session(eng) as s:
                s.execute(text(slow))

    writer = Writer(engine, tmp_path, retry_s=0.2, apply_timeout_s=4.0, prepare=prepare)
    writer.start()
    first, *later = policy_events(0, 3)
    writer.enqueue(first)
    assert hanging.wait(10)
    for event in later:
        writer.enqueue(event)
    wait_for(lambda: writer.spooled == 3, timeout=3.0)  # on disk while the store call hangs
    assert writer.applied == 0
    wait_for(lambda: writer.applied == 3, timeout=30)
    assert writer.interrupts == 1
    writer.stop()
    assert recorded(engine) == [f"v: {i}\n" for i in range(3)]
