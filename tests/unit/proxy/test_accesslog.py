"""The access log: one JSON line per request, time first, written by a background thread."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.accesslog import AccessLog, time_first


def test_time_comes_first_and_the_event_name_goes() -> None:
    """A line starts with its time and carries no structlog event name."""
    out = time_first(None, "info", {"event": "request", "host": "a.example", "time": "T"})
    assert list(out) == ["time", "host"]


def test_lines_reach_the_file_after_stop(tmp_path: Path) -> None:
    """Every written line is in the file once the log is stopped, in order."""
    log = AccessLog(tmp_path / "sub" / "access.log")
    log.start()
    for i in range(100):
        log.write(n=i, host="h.example")
    log.stop()
    lines = [
        json.loads(line) for line in (tmp_path / "sub" / "access.log").read_text().splitlines()
    ]
    assert [line["n"] for line in lines] == list(range(100))
    assert next(iter(lines[0])) == "time"
