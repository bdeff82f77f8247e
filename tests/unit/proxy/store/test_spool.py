"""The spool: a failed append leaves no half line; a line torn by a crash is cut off."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from proxy.store import events
from proxy.store.spool import Spool


def some(count: int) -> list[events.Event]:
    return [events.policy_observed(f"v: {i}\n", "policy.yaml", "start") for i in range(count)]


def test_an_append_the_disk_cuts_short_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk that takes half an append: the error is raised, the file is as before, and
    the next append after space returns is read back whole."""
    path = tmp_path / "events.jsonl"
    sp = Spool(path)
    sp.append(some(2))
    before = path.read_bytes()
    write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 10:
            write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        sp.append(some(3))
    monkeypatch.undo()
    assert path.read_bytes() == before
    sp.append(some(1))
    assert len(sp.read()) == 3


def test_a_torn_last_line_is_cut_when_the_spool_is_locked(tmp_path: Path) -> None:
    """A crash mid-write leaves a line without its newline: cut at the next start, so the
    next append does not glue an event onto it."""
    path = tmp_path / "events.jsonl"
    Spool(path).append(some(2))
    with path.open("ab") as f:
        f.write(b'{"id":"torn","kind":"policy.obs')
    sp = Spool(path)
    assert sp.lock()
    sp.append(some(1))
    assert [e.data["text"] for e in sp.read()] == ["v: 0\n", "v: 1\n", "v: 0\n"]
    sp.unlock()


def test_rotation_keeps_the_order_and_new_appends_go_to_a_new_file(tmp_path: Path) -> None:
    """Rotating moves the waiting events aside for the store; events appended meanwhile come
    after them when read, and finishing removes only the applied file."""
    sp = Spool(tmp_path / "events.jsonl")
    first, second = some(2), some(3)
    sp.append(first)
    assert sp.rotate()
    sp.append(second)
    assert [e.id for e in sp.read()] == [e.id for e in first + second]
    assert [[e.id for e in b] for b, _, _ in sp.batches(10)] == [[e.id for e in first]]
    sp.finish()
    assert [e.id for e in sp.read()] == [e.id for e in second]
    assert len(sp) == 3
