"""FileWatch reports each changed file once, however it was changed."""

from __future__ import annotations

import os
from pathlib import Path

from proxy.watch import FileWatch, stamp_of


def _files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("one\n")
    b.write_text("two\n")
    return a, b


def test_nothing_changed_reports_nothing(tmp_path: Path) -> None:
    """Files left alone are never reported."""
    a, b = _files(tmp_path)
    watch = FileWatch([a, b])
    assert watch.changed() == frozenset()
    assert watch.changed() == frozenset()


def test_an_edit_is_reported_once(tmp_path: Path) -> None:
    """A file given a new modification time is reported by the next look only."""
    a, b = _files(tmp_path)
    watch = FileWatch([a, b])
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert watch.changed() == {a}
    assert watch.changed() == frozenset()


def test_an_append_in_the_same_tick_is_seen_by_its_size(tmp_path: Path) -> None:
    """An append that leaves the modification time as it was still counts, by the size."""
    a, b = _files(tmp_path)
    watch = FileWatch([a, b])
    st = a.stat()
    with a.open("a") as f:
        f.write("more\n")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert watch.changed() == {a}


def test_a_file_renamed_into_place_is_seen_by_its_inode(tmp_path: Path) -> None:
    """A same-size file renamed over the old one with the same time is a change (the inode)."""
    a, b = _files(tmp_path)
    watch = FileWatch([a, b])
    st = a.stat()
    new = tmp_path / "a.yaml.tmp"
    new.write_text("ONE\n")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    keep = tmp_path / "keep"  # hold the old inode so the new file cannot reuse it
    os.link(a, keep)
    os.replace(new, a)
    assert watch.changed() == {a}


def test_a_file_that_appears_or_disappears_is_a_change(tmp_path: Path) -> None:
    """A missing file has no stamp: creating it, then removing it, are both reported."""
    a, _ = _files(tmp_path)
    missing = tmp_path / "later.yaml"
    watch = FileWatch([a, missing])
    assert stamp_of(missing) is None
    missing.write_text("x\n")
    assert watch.changed() == {missing}
    missing.unlink()
    assert watch.changed() == {missing}


def test_watch_replaces_the_set_and_keeps_known_stamps(tmp_path: Path) -> None:
    """Re-watching keeps a known path's old stamp (its change is not lost) and drops the rest."""
    a, b = _files(tmp_path)
    c = tmp_path / "c.yaml"
    c.write_text("three\n")
    watch = FileWatch([a, b])
    a.write_text("one, edited\n")
    watch.watch([a, c])
    assert watch.paths == {a, c}
    assert watch.changed() == {a}
    b.write_text("not watched any more\n")
    assert watch.changed() == frozenset()
