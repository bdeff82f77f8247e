"""Reading the JSON-lines files other parts leave in the data folder, a complete line at a time."""

from __future__ import annotations

from pathlib import Path

from addons.overrides import _Tail


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
