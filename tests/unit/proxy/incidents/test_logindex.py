"""The access log's index by person: it finds exactly what a full scan finds, it is deleted
with its log, and a log changed under it is indexed again, never trusted."""

from __future__ import annotations

import json
import os
import random
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.incidents import logindex, retention, timeline

KEY = b"k" * 32
DAY = datetime(2026, 11, 2, tzinfo=UTC)
PEOPLE = ["p.one", "p.two", "staff.x", 'o\'brien "quoted"', "zoë", None, None]
ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def write_log(path: Path, rng: random.Random, n: int, start: datetime) -> None:
    """``n`` lines over a day in the proxy's format (time first, nearly in order), with
    now and then an unusual one: compact separators, a nested "user", a torn line."""
    lines = []
    at = start
    for _ in range(n):
        at += timedelta(seconds=rng.random() * 86400 * 1.8 / n)
        jitter = timedelta(seconds=rng.random() * 5)
        fields: dict[str, object] = {
            "time": (at + jitter).isoformat().replace("+00:00", "Z"),
            "ref": "SG-1",
            "user": rng.choice(PEOPLE),
            "group": "pupil",
            "client_ip": rng.choice(ADDRESSES),
            "method": "GET",
            "host": "www.example.org",
            "path": "/" + "x" * rng.randrange(0, 300),
            "decision": rng.choice(["allow", "block"]),
            "ctype": "text/html",
        }
        roll = rng.random()
        if roll < 0.05:
            lines.append(json.dumps(fields, separators=(",", ":")))
        elif roll < 0.1:
            fields["extra"] = {"user": rng.choice(PEOPLE)}
            lines.append(json.dumps(fields))
        elif roll < 0.12:
            lines.append(json.dumps(fields)[:40])  # damaged: neither reader keeps it
        else:
            lines.append(json.dumps(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def subjects() -> list[str]:
    return [p for p in PEOPLE if p] + [f"ip:{a}" for a in ADDRESSES] + ["nobody"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_finds_exactly_what_a_full_scan_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Random logs, several people, lines across the build's block boundaries (a block of
    4 KiB here), rotated files and the live one, windows of every length."""
    monkeypatch.setattr(logindex, "BLOCK", 4096)
    rng = random.Random(seed)
    log = tmp_path / "access.log"
    for k in (2, 1):
        write_log(log.with_name(f"access.log.{k}"), rng, 2000, DAY - timedelta(days=k))
    write_log(log, rng, 2000, DAY)
    for _ in range(20):
        since = DAY - timedelta(days=2, hours=2) + timedelta(minutes=rng.randrange(0, 4500))
        until = since + timedelta(minutes=rng.choice([1, 60, 600, 4000]))
        for subject in subjects():
            full = list(timeline.activity(log, subject, since, until))
            indexed = list(logindex.activity(log, subject, since, until, KEY))
            assert indexed == full
    assert any(timeline.activity(log, "zoë", DAY - timedelta(days=3), DAY + timedelta(days=2)))
    for idx in (tmp_path / "index").iterdir():
        assert stat.S_IMODE(idx.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o700


def test_the_live_log_is_indexed_from_where_it_got_to(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write_log(log, random.Random(5), 500, DAY)
    whole = (DAY - timedelta(days=1), DAY + timedelta(days=3))
    before = list(logindex.activity(log, "p.one", *whole, KEY))
    (idx,) = (tmp_path / "index").iterdir()
    end = json.loads(idx.read_bytes().split(b"\n")[1])["end"]
    more = tmp_path / "more.log"
    write_log(more, random.Random(6), 300, DAY + timedelta(days=1))
    with log.open("ab") as f:
        f.write(more.read_bytes())
        f.write(b'{"time": "2026-11-03T23:59:59Z", "user": "p.one"')  # torn: being written
    after = list(logindex.activity(log, "p.one", *whole, KEY))
    assert after[: len(before)] == before
    assert len(after) > len(before)
    assert after == list(timeline.activity(log, "p.one", *whole))
    assert json.loads(idx.read_bytes().split(b"\n")[1])["end"] > end
    with log.open("ab") as f:
        f.write(b', "client_ip": "10.0.0.1"}\n')  # the torn line finished
    assert len(list(logindex.activity(log, "p.one", *whole, KEY))) == len(after) + 1


def test_a_purged_rotated_log_takes_its_index_with_it(tmp_path: Path) -> None:
    """``purge`` deletes a rotated log past retention, and its index goes too; the index of
    a log still kept stays."""
    log = tmp_path / "access.log"
    write_log(log.with_name("access.log.1"), random.Random(7), 300, DAY - timedelta(days=40))
    write_log(log, random.Random(8), 300, DAY)
    old = log.with_name("access.log.1")
    os.utime(old, (0, (DAY - timedelta(days=39)).timestamp()))
    whole = (DAY - timedelta(days=41), DAY + timedelta(days=2))
    assert list(logindex.activity(log, "p.one", *whole, KEY))
    old_index = logindex.index_path(log, old.stat())
    assert old_index.exists()
    assert logindex.index_path(log, log.stat()).exists()
    retention.purge_access_log(log, DAY - timedelta(days=30))
    assert not old.exists()
    assert not old_index.exists()  # the rotated log's index went with it
    assert list(logindex.activity(log, "p.one", *whole, KEY)) == list(
        timeline.activity(log, "p.one", *whole)
    )
    assert [p.name for p in (tmp_path / "index").iterdir()] == [
        logindex.index_path(log, log.stat()).name
    ]


def test_a_changed_log_invalidates_its_index(tmp_path: Path) -> None:
    """A log rewritten in place (same inode, same size, other lines) or cut shorter is
    indexed again: what the index says is never trusted over the log."""
    log = tmp_path / "access.log"
    write_log(log, random.Random(9), 400, DAY)
    whole = (DAY - timedelta(days=1), DAY + timedelta(days=3))
    assert list(logindex.activity(log, "p.one", *whole, KEY))
    body = log.read_bytes()
    swapped = body.replace(b'"p.one"', b'"p.zzz"').replace(b'"p.two"', b'"p.one"')
    with log.open("r+b") as f:  # same inode, same size
        f.write(swapped)
    os.utime(log, ns=(log.stat().st_atime_ns, log.stat().st_mtime_ns + 1_000_000))
    assert list(logindex.activity(log, "p.one", *whole, KEY)) == list(
        timeline.activity(log, "p.one", *whole)
    )
    with log.open("r+b") as f:
        f.truncate(len(body) // 2)
    assert list(logindex.activity(log, "p.two", *whole, KEY)) == list(
        timeline.activity(log, "p.two", *whole)
    )
    idx = logindex.index_path(log, log.stat())
    idx.write_bytes(b"not an index")  # damaged: rebuilt
    assert list(logindex.activity(log, "p.one", *whole, KEY)) == list(
        timeline.activity(log, "p.one", *whole)
    )


def test_the_index_names_nobody_in_clear(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write_log(log, random.Random(10), 200, DAY)
    logindex.build(log, KEY)
    (idx,) = (tmp_path / "index").iterdir()
    assert b"p.one" not in idx.read_bytes()
    assert b"10.0.0.1" not in idx.read_bytes()
