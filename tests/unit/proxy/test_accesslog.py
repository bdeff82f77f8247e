"""The access log: one JSON line per request, time first, written by a background thread."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

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


def test_a_rotated_log_is_reopened_and_no_line_is_lost(tmp_path: Path) -> None:
    """After logrotate moves the file, later lines go to a new file at the path (mode 0600)."""
    path = tmp_path / "access.log"
    log = AccessLog(path)
    log.start()
    log.write(n=0)
    deadline = time.monotonic() + 5
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "the first line was never written"
        time.sleep(0.01)
    path.rename(tmp_path / "access.log.1")
    for i in range(1, 50):
        log.write(n=i)
    log.stop()
    old = [json.loads(line)["n"] for line in (tmp_path / "access.log.1").read_text().splitlines()]
    new = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    assert old + new == list(range(50))
    assert new  # the lines after the move went to the path, not to the moved file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_line_that_cannot_be_written_is_logged_and_later_lines_still_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The folder vanishing for a moment costs the lines of that batch, not the writer."""
    folder = tmp_path / "logs"
    path = folder / "access.log"
    log = AccessLog(path)
    folder.rmdir()
    log.start()
    log.write(n=0)
    deadline = time.monotonic() + 5
    while "could not be written" not in caplog.text:
        assert time.monotonic() < deadline, "the failed write was not logged"
        time.sleep(0.01)
    folder.mkdir()
    log.write(n=1)
    log.stop()
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [1]


def test_the_file_exists_once_the_log_is_started(tmp_path: Path) -> None:
    """A reader finds the file (empty, private) before the first line is written."""
    log = AccessLog(tmp_path / "access.log")
    log.start()
    try:
        assert (tmp_path / "access.log").read_text() == ""
        assert stat.S_IMODE((tmp_path / "access.log").stat().st_mode) == 0o600
    finally:
        log.stop()
