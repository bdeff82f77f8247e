"""FileWatch: which of a set of files changed since the last look.

One helper for every file the running proxy reloads when a technician edits
it (settings, policy, content phrases, escalation, concerning terms, the
learned list...), instead of one hand-written stamp per addon. A file's
stamp is ``(mtime_ns, size, inode)``: the inode catches an editor or a tool
that writes a new file and renames it into place within the same clock
tick, the size catches an append inside one tick. A missing file has the
stamp ``None``, so a file that appears or disappears counts as changed.

Pure and synchronous (one ``stat`` per file per call): the addons call
``changed()`` from their own timer, so the core stays free of mitmproxy and
of any event loop.

In use: ``addons.policyload`` (settings, policy, content phrases),
``addons.incidents`` (escalation, concerning terms), ``addons.content`` (the
learned list), ``addons.login`` (the users file) and ``proxy.logins`` (the
login bindings file). ``proxy.lists.index_stamp`` stays apart: it stamps whole list
trees and checks the index in use, not a set of files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

Stamp = tuple[int, int, int] | None


def stamp_of(path: Path) -> Stamp:
    """``(mtime_ns, size, inode)`` of ``path``, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class FileWatch:
    """A set of paths and the stamps they had when last looked at."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self._stamps: dict[Path, Stamp] = {}
        self.watch(paths)

    @property
    def paths(self) -> frozenset[Path]:
        return frozenset(self._stamps)

    def watch(self, paths: Iterable[Path]) -> None:
        """Watch exactly ``paths`` from now on; a path already watched keeps its stamp,
        so a change made before this call is still reported by the next ``changed()``."""
        wanted = list(dict.fromkeys(paths))
        self._stamps = {
            path: self._stamps[path] if path in self._stamps else stamp_of(path) for path in wanted
        }

    def changed(self) -> frozenset[Path]:
        """The watched paths whose stamp differs from the last look; remembers the new ones."""
        found = []
        for path, old in self._stamps.items():
            new = stamp_of(path)
            if new != old:
                self._stamps[path] = new
                found.append(path)
        return frozenset(found)
