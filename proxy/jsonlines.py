"""Reading a JSON-lines file as it grows: complete new lines, from where the last read stopped.

Several files are appended to by one process and read by others (list updates and
review requests by the Overrides addon, the learned list by every worker). A line still
being written waits for the next read; a file truncated or replaced (a new inode) is
read again from the start, and ``restarted`` says so, for readers that keep state.
"""

from __future__ import annotations

from pathlib import Path


class JsonLinesTail:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.restarted = False  # the last read started the file again
        self._inode: int | None = None

    def new_lines(self) -> list[str]:
        """The complete lines appended since the last call (none when the file is absent)."""
        self.restarted = False
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self.offset:
            self.restarted = self._inode is not None or self.offset > 0
            self._inode, self.offset = stat.st_ino, 0
        if stat.st_size == self.offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(stat.st_size - self.offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next round
        self.offset += end
        return [line for line in data[:end].decode("utf-8", "replace").splitlines() if line.strip()]
