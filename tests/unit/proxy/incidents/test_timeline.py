"""The timeline reads the access log by seeking to a time; pages, not images; nothing illegal."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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


def _decoding_all(log: Path, subject: str, since: datetime, until: datetime) -> list[object]:
    """The reader without its byte pre-filter: every line in the window decoded."""
    return [
        line
        for path in timeline.log_files(log)
        for line in timeline.read_window(path, since, until)
        if timeline.matches(line, subject)
    ]


def test_only_lines_naming_the_person_are_decoded(tmp_path: Path) -> None:
    """Everyone else's lines in the window are passed over by their bytes; none is lost."""
    log = tmp_path / "access.log"
    write_log(log)
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=3)
    reads = 0
    real = timeline._parse

    def counting(raw: bytes) -> object:
        nonlocal reads
        reads += 1
        return real(raw)

    timeline._parse = counting  # type: ignore[assignment]
    try:
        found = list(timeline.activity(log, "p.two", since, until))
    finally:
        timeline._parse = real
    assert found == _decoding_all(log, "p.two", since, until)
    assert len(found) == 600
    # 1,800 lines in the hour (+ the slack): only p.two's 600 and the probes are decoded.
    assert reads < 700
    shared = list(timeline.activity(log, "ip:10.0.0.9", since, until))
    assert shared == _decoding_all(log, "ip:10.0.0.9", since, until)
    assert len(shared) == 600


def test_the_real_writers_lines_are_found_for_any_name(tmp_path: Path) -> None:
    """Lines as proxy/accesslog.py writes them: a name inside another, an accented name."""
    from proxy.accesslog import AccessLog

    path = tmp_path / "access.log"
    log = AccessLog(path)
    log.start()
    before = datetime.now(UTC) - timedelta(seconds=1)
    for user in ("ann", "anna", "Zoë O'Brien", 'x"y', None):
        log.write(user=user, client_ip="10.0.0.7", method="GET", host="a.example", path="/")
    log.stop()
    after = datetime.now(UTC) + timedelta(seconds=1)
    lines = path.read_bytes().splitlines()
    assert all(raw.startswith(timeline.TIME_PREFIX) for raw in lines)
    for subject in ("ann", "anna", "Zoë O'Brien", 'x"y', "ip:10.0.0.7"):
        found = list(timeline.activity(path, subject, before, after))
        assert len(found) == 1, subject
        assert found == _decoding_all(path, subject, before, after)


def test_the_window_ends_at_the_first_line_past_it(tmp_path: Path) -> None:
    """Passing over other people's lines still stops at the window's end, not the file's."""
    log = tmp_path / "access.log"
    write_log(log, hours=2)
    marker = b'{"not": "time first"}\n'  # never passed over by bytes: decoded if reached
    with log.open("ab") as f:
        f.write(b"\n" + marker)
    seen: list[bytes] = []
    real = timeline._parse

    def recording(raw: bytes) -> object:
        seen.append(raw)
        return real(raw)

    timeline._parse = recording  # type: ignore[assignment]
    try:
        # Nobody called p.none: nothing is found, and the reader stops at the window's end.
        assert not list(timeline.activity(log, "p.none", T0, T0 + timedelta(minutes=10)))
        assert marker not in seen
        assert len(seen) < 40  # the probes only
        # The same file read to its end does reach the marker (the check can fail).
        list(timeline.activity(log, "p.none", T0, T0 + timedelta(hours=8)))
        assert marker in seen
    finally:
        timeline._parse = real


@pytest.mark.parametrize("block", [97, 4096, 8 << 20])
def test_searching_in_blocks_finds_what_decoding_every_line_finds(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any window, any person, lines cut across block ends: the same lines as the slow way."""
    log = tmp_path / "access.log"
    write_log(log, hours=3)
    monkeypatch.setattr(timeline, "BLOCK", block)
    rng = random.Random(13)
    for _ in range(20):
        since = T0 + timedelta(seconds=rng.randrange(4 * 3600) - 1800)
        until = since + timedelta(seconds=rng.randrange(1, 3600))
        for subject in ("p.one", "p.two", "ip:10.0.0.9", "p.none"):
            fast = list(timeline.activity(log, subject, since, until))
            assert fast == _decoding_all(log, subject, since, until), (since, until, subject)
