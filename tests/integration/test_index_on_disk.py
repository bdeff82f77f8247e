"""The compiled index changed on disk under the real proxy: it never opens, never crashes.

Each test attacks ``DATA_DIR/lists.idx`` (or the snapshot the proxy maps) the
way an operator or a broken tool would: zeroing its filter sections in place,
truncating it, ``cp``-ing another index over it (which writes into the same
inode), corrupting it before a restart. The adult and gambling demo hosts are
sent to the local origin by the test host map, so a filter that failed open
would show up as a connection there; each test checks that none arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocklists.compiled import CompiledBuilder, CompiledIndex, IndexFormatError
from tests.integration.harness import (
    PUPIL,
    ROOT,
    Gateway,
    Origin,
    OriginCA,
    eventually,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.integration.test_workers import listeners, wait_for_listeners

# hosts in blocklists/demo/ut1 adult and gambling; none looked up before an attack, so no
# per-process memo can answer for the damaged index
ADULT = ["adult-demo.example", "www.adult-demo.example", "explicit.example"]
GAMBLING = ["casino-demo.example", "bets.example"]
_HEADER = struct.Struct("<8sIIQQ")


def launch(tmp: Path, origin_ca: OriginCA, origin: Origin, *extra: str) -> Gateway:
    """The real proxy with the demo lists, the demo hosts sent to the local origin."""
    hostmap = {"hosts": ADULT + GAMBLING, "ports": {"80": origin.http_port}}
    return start_gateway(
        tmp,
        origin_ca,
        *extra,
        env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
        command=[sys.executable, "-m", "tests.integration.hostmap"],
    )


@pytest.fixture
def gw(tmp_path: Path, origin_ca: OriginCA, origin: Origin) -> Iterator[Gateway]:
    gateway = launch(tmp_path, origin_ca, origin)
    yield gateway
    stop_gateway(gateway)


def zero_filters(path: Path) -> None:
    """Overwrite the host and base filter sections with zeros, in place (same inode)."""
    with path.open("r+b") as f:
        _, _, meta_len, _, _ = _HEADER.unpack(f.read(_HEADER.size))
        meta = json.loads(f.read(meta_len))
        body = _HEADER.size + meta_len
        for name in ("host.filter", "base.filter"):
            offset, size = meta["sections"][name]
            f.seek(body + offset)
            f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


def assert_blocked(gw: Gateway, origin: Origin, hosts: list[str], *, seconds: float) -> None:
    """Every host answers 403, again and again for ``seconds``; none reached the origin."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while rounds < 2 or time.monotonic() < deadline:
        for host in hosts:
            status, _ = gw.get(f"http://{host}/", client=PUPIL)
            assert status == 403, f"{host}: {status} after the index was damaged"
        rounds += 1
        time.sleep(0.05)
    reached = [h for h in origin.hits if h.split("/", 1)[0].split(":")[0] in hosts]
    assert reached == [], f"the origin saw {reached}"


def index_is_good(path: Path) -> bool:
    try:
        return bool(CompiledIndex.open(path).match("adult-demo.example"))
    except IndexFormatError:
        return False


def snapshots(gw: Gateway) -> list[Path]:
    return sorted((gw.data_dir / "mapped").glob("*.idx"))


def test_the_index_is_written_new_and_mapped_from_a_private_snapshot(gw: Gateway) -> None:
    """The proxy maps a 0400 copy in a 0700 folder, never lists.idx: writes there reach nothing."""
    (snap,) = snapshots(gw)
    assert snap.stat().st_mode & 0o777 == 0o400
    assert (gw.data_dir / "mapped").stat().st_mode & 0o777 == 0o700
    assert snap.stat().st_ino != (gw.data_dir / "lists.idx").stat().st_ino
    maps = Path(f"/proc/{gw.process.pid}/maps").read_text()
    assert str(snap) in maps
    assert str(gw.data_dir / "lists.idx") not in maps


def test_zeroed_filter_sections_in_place_keep_blocking(gw: Gateway, origin: Origin) -> None:
    """lists.idx's filters zeroed in place: adult and gambling stay blocked; it is rebuilt."""
    assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
    index = gw.data_dir / "lists.idx"
    inode = index.stat().st_ino
    zero_filters(index)
    assert index.stat().st_ino == inode  # really in place
    assert not index_is_good(index)
    assert_blocked(gw, origin, ADULT + GAMBLING, seconds=1.5)
    eventually(lambda: index_is_good(index), "lists.idx compiled again from the sources")
    assert "compiling it again from the sources" in gw.stderr()
    # it blocks by the lists, not by blocking everything
    assert gw.get(f"http://localhost:{origin.http_port}/fine", client=PUPIL)[0] == 200
    assert gw.process.poll() is None


def test_a_zeroed_mapped_snapshot_fails_closed_then_is_replaced(
    gw: Gateway, origin: Origin
) -> None:
    """Damage to the very file the proxy maps is caught by the reload timer's checksum."""
    assert gw.get(f"http://localhost:{origin.http_port}/before", client=PUPIL)[0] == 200
    # mitmproxy exits on an ERROR logged before every addon's running() has returned
    # (errorcheck); the checksum failure is logged as one, so let start-up finish first
    time.sleep(3)
    (snap,) = snapshots(gw)
    os.chmod(snap, 0o600)  # root could; the service user cannot without this
    zero_filters(snap)
    eventually(lambda: "changed in place while mapped" in gw.stderr(), "the checksum failure")
    assert_blocked(gw, origin, ADULT + GAMBLING, seconds=1.0)
    eventually(lambda: any(index_is_good(p) for p in snapshots(gw)), "a good snapshot")
    eventually(
        lambda: gw.get(f"http://localhost:{origin.http_port}/after", client=PUPIL)[0] == 200,
        "the rebuilt index in use",
    )
    assert gw.process.poll() is None


def test_cp_of_another_index_over_it_keeps_blocking(
    gw: Gateway, origin: Origin, tmp_path: Path
) -> None:
    """``cp other.idx lists.idx`` (same inode, truncate then write): no crash, still blocks."""
    other = tmp_path / "other.idx"
    builder = CompiledBuilder()
    builder.add("ut1/games", "other.example")
    builder.write(other)
    index = gw.data_dir / "lists.idx"
    inode = index.stat().st_ino
    subprocess.run(["cp", str(other), str(index)], check=True)
    assert index.stat().st_ino == inode
    assert_blocked(gw, origin, ADULT + GAMBLING, seconds=1.5)
    eventually(lambda: index_is_good(index), "lists.idx compiled again (the copy was stale)")
    assert gw.process.poll() is None


def test_truncated_under_two_workers_neither_crashes(
    tmp_path: Path, origin_ca: OriginCA, origin: Origin
) -> None:
    """Truncating lists.idx under --workers 2: the same two workers live on and block."""
    gw = launch(tmp_path, origin_ca, origin, "--workers", "2")
    try:
        workers = wait_for_listeners(gw.port, 2)
        index = gw.data_dir / "lists.idx"
        for size in (100, 0):
            os.truncate(index, size)
            assert_blocked(gw, origin, ADULT + GAMBLING, seconds=1.0)
            assert listeners(gw.port) == workers, "a worker died"
        eventually(lambda: index_is_good(index), "lists.idx compiled again")
        assert listeners(gw.port) == workers
        assert gw.process.poll() is None
        assert "SIGBUS" not in gw.stderr()
        maps = [Path(f"/proc/{pid}/maps").read_text() for pid in workers]
        (snap,) = snapshots(gw)
        assert all(str(snap) in m for m in maps)  # one file, shared by both
    finally:
        stop_gateway(gw)


def test_corrupt_then_restart_rebuilds_from_the_sources(
    tmp_path: Path, origin_ca: OriginCA, origin: Origin
) -> None:
    """A corrupt lists.idx at start is compiled again from the sources, and the proxy starts."""
    gw = launch(tmp_path, origin_ca, origin)
    stop_gateway(gw)
    index = gw.data_dir / "lists.idx"
    zero_filters(index)
    shutil.rmtree(
        gw.data_dir / "mapped", ignore_errors=True
    )  # a fresh start: no snapshot to fall back on
    gw = launch(tmp_path, origin_ca, origin)
    try:
        assert index_is_good(index)
        assert_blocked(gw, origin, ADULT + GAMBLING, seconds=0.5)
    finally:
        stop_gateway(gw)


def test_corrupt_with_unusable_sources_refuses_to_start_in_one_line(
    tmp_path: Path, origin_ca: OriginCA, origin: Origin
) -> None:
    """With the index corrupt and the sources gone, run exits 1 with one line saying both."""
    lists = tmp_path / "lists"
    shutil.copytree(ROOT / "blocklists" / "demo", lists)
    write_config(tmp_path / "config", tmp_path / "var", 1)
    settings = tmp_path / "config" / "schoolgate.yaml"
    settings.write_text(settings.read_text().replace(str(ROOT / "blocklists" / "demo"), str(lists)))
    gw = launch(tmp_path, origin_ca, origin)
    stop_gateway(gw)
    zero_filters(gw.data_dir / "lists.idx")
    shutil.rmtree(lists / "ut1")
    run = subprocess.run(
        [sys.executable, "-m", "proxy", "run", "--config", str(gw.config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, run.stderr
    assert "checksum mismatch" in errors[0]
    assert "cannot be compiled again" in errors[0]
    assert "not a directory" in errors[0] or "not found" in errors[0]
    assert signal.SIGBUS not in (-run.returncode,)
