"""The timeline reads the access log by seeking to a time; pages, not images; nothing illegal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.incidents import timeline

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def write_log(path: Path, hours: int = 6) -> None:
    """One line every 2 s for ``hours`` for several people: pages, images, an illegal hit."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(hours * 1800):
            at = T0 + timedelta(seconds=2 * i)
            user = ("p.one", "p.two", "")[i % 3]
            page = i % 6 < 3
            line = {
                "time": at.isoformat().replace("+00:00", "Z"),
                "user": user or None,
                "client_ip": "10.0.0.9" if not user else "10.0.0.1",
                "method": "GET",
                "host": f"site{i}.example",
                "path": "/" if page else "/logo.png",
                "decision": "allow",
                "ctype": "text/html; charset=utf-8" if page else "image/png",
            }
            f.write(json.dumps(line) + "\n")
        illegal = {
            "time": (T0 + timedelta(hours=hours)).isoformat(),
            "user": "p.one",
            "client_ip": "10.0.0.1",
            "method": "GET",
            "host": "(withheld)",
            "path": "(withheld)",
            "decision": "block",
            "category": "child_abuse",
        }
        f.write(json.dumps(illegal) + "\n")
        f.write('{"time": "2026-11-23T16:00:0')  # a torn last line, mid-write


def test_the_window_holds_only_the_persons_lines_in_it(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write_log(log)
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=2, minutes=30)
    lines = list(timeline.activity(log, "p.one", since, until))
    assert lines
    assert all(since <= x.at < until and x.user == "p.one" for x in lines)
    assert len(lines) == 30 * 60 // 2 // 3
    pages = [x for x in lines if x.is_page]
    assert pages
    assert all(x.path == "/" for x in pages)
    assert len(pages) < len(lines)
    shared = list(timeline.activity(log, "ip:10.0.0.9", since, until))
    assert shared
    assert all(x.user is None for x in shared)


def test_seeking_reads_a_small_part_of_a_big_log(tmp_path: Path) -> None:
    """A 10-minute window of a 6-hour log is found by reading a few lines, not all of it."""
    log = tmp_path / "access.log"
    write_log(log)
    reads = 0
    real = timeline._parse

    def counting(raw: bytes) -> object:
        nonlocal reads
        reads += 1
        return real(raw)

    timeline._parse = counting  # type: ignore[assignment]
    try:
        since = T0 + timedelta(hours=5)
        list(timeline.activity(log, "p.two", since, since + timedelta(minutes=10)))
    finally:
        timeline._parse = real
    assert reads < 800  # 300 lines in the window + the slack + ~15 probes; the file has 10,801


def test_an_illegal_hit_shows_no_address_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write_log(log, hours=1)
    late = list(
        timeline.activity(log, "p.one", T0 + timedelta(minutes=59), T0 + timedelta(hours=2))
    )
    withheld = [x for x in late if x.withheld]
    assert len(withheld) == 1
    assert withheld[0].is_page
    assert withheld[0].blocked
    assert withheld[0].address == "(address withheld: illegal list)"


def test_rotated_files_are_read_oldest_first(tmp_path: Path) -> None:
    write_log(tmp_path / "access.log.1", hours=1)
    (tmp_path / "access.log").write_text(
        json.dumps(
            {
                "time": (T0 + timedelta(hours=3)).isoformat(),
                "user": "p.one",
                "host": "new.example",
                "path": "/",
                "method": "GET",
            }
        )
        + "\n"
    )
    lines = list(timeline.activity(tmp_path / "access.log", "p.one", T0, T0 + timedelta(hours=4)))
    assert lines[-1].host == "new.example"
    assert lines[0].at < lines[-1].at
