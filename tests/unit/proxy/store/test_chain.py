"""The change log's hash chain: appends link up; verify names edited, inserted, deleted rows."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text

from proxy.store import chain
from proxy.store.engine import session
from proxy.store.models import Change

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def fill(engine: Engine, count: int = 5) -> None:
    with session(engine) as s:
        for i in range(count):
            chain.append(
                s,
                at=T0 + timedelta(minutes=i),
                kind="override.request",
                actor="j.meer",
                subject=f"host site{i}.example",
                target="group:pupil",
                reason=f"topic {i}",
                until=T0 + timedelta(days=14),
                details={"override": i + 1},
            )


def check(engine: Engine, anchors: list[tuple[int, str]] | None = None) -> chain.Verification:
    with session(engine) as s:
        return chain.verify(s, anchors or [])


def test_appended_rows_verify(engine: Engine) -> None:
    """Rows appended in order form an intact chain whose head is the last row."""
    fill(engine)
    result = check(engine)
    assert result.ok, result.problems
    assert (result.rows, result.head_seq) == (5, 5)
    with session(engine) as s:
        rows = list(s.scalars(select(Change).order_by(Change.seq)))
    assert rows[0].prev_hash == chain.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert rows[2].at == T0 + timedelta(minutes=2)


def test_edited_row_is_caught_and_named(engine: Engine) -> None:
    """Changing a recorded reason makes verify report that row as edited."""
    fill(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE changes SET reason = 'nothing to see' WHERE seq = 3"))
    result = check(engine)
    assert result.problems == ("row 3: contents do not match its hash: edited",)


def test_deleted_row_is_caught_and_named(engine: Engine) -> None:
    """Deleting a row leaves a gap that verify reports by number."""
    fill(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM changes WHERE seq = 2"))
    assert check(engine).problems == ("row 2 missing: deleted",)


def test_deleted_and_renumbered_row_is_caught(engine: Engine) -> None:
    """Deleting a row and closing the gap still breaks the link to the row before."""
    fill(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM changes WHERE seq = 2"))
        conn.execute(text("UPDATE changes SET seq = seq + 1000 WHERE seq > 2"))
        conn.execute(text("UPDATE changes SET seq = seq - 1001 WHERE seq > 1000"))
    problems = check(engine).problems
    assert len(problems) == 1
    assert problems[0].startswith("row 2 does not follow row 1: a row was inserted or deleted")


def test_inserted_row_is_caught(engine: Engine) -> None:
    """A row slipped in with a correct hash of its own breaks the link of the row after it."""
    fill(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE changes SET seq = seq + 1000 WHERE seq >= 2"))
        conn.execute(text("UPDATE changes SET seq = seq - 999 WHERE seq > 1000"))
    with session(engine) as s:
        first = s.scalars(select(Change).where(Change.seq == 1)).one()
        forged = Change(
            seq=2,
            at=T0,
            kind="override.approve",
            actor="j.meer",
            subject="host casino.example",
            target="everyone",
            reason="approved, honest",
            approved_by="head.teacher",
            details="{}",
            prev_hash=first.hash,
        )
        forged.hash = chain.row_hash(forged.prev_hash, forged)
        s.add(forged)
    problems = check(engine).problems
    assert len(problems) == 1
    assert problems[0].startswith("row 3 does not follow row 2")


def test_anchor_catches_a_rewritten_tail(engine: Engine) -> None:
    """Rewriting the last rows with fresh hashes is caught by a head written down earlier."""
    fill(engine)
    head = check(engine)
    with session(engine) as s:
        last = s.scalars(select(Change).where(Change.seq == 5)).one()
        last.reason = "rewritten"
        last.hash = chain.row_hash(last.prev_hash, last)
    assert check(engine).ok  # a consistent forgery, on its own, verifies...
    anchored = check(engine, [(head.head_seq, head.head_hash[:16])])
    assert anchored.problems == ("anchor row 5 has a different hash than written down: rewritten",)


def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    """Two writers appending at once still give numbers 1..N and an intact chain."""

    def writer(name: str) -> None:
        for i in range(15):
            with session(engine) as s:
                chain.append(s, at=T0, kind="lists.update", actor=name, subject=f"{name} {i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = check(engine)
    assert result.ok, result.problems
    assert (result.rows, result.head_seq) == (30, 30)
