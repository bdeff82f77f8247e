"""`schoolgate run --workers 2`: two real proxy processes on one port, one metrics endpoint."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    PUPIL,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
)


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA
) -> Iterator[tuple[Gateway, int]]:
    metrics = free_port()
    gw = start_gateway(
        tmp_path_factory.mktemp("workers"),
        origin_ca,
        "--workers",
        "2",
        "--set",
        f"schoolgate_metrics_listen=127.0.0.1:{metrics}",
    )
    yield gw, metrics
    stop_gateway(gw)
    assert gw.process.returncode == 0


def listeners(port: int) -> set[int]:
    """The process ids with a listening socket on ``port``."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def wait_for_listeners(port: int, count: int, timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = listeners(port)
        if len(found) == count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"expected {count} processes listening on {port}, got {listeners(port)}")


def counted(metrics: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("schoolgate_requests_total{")
    )


def test_two_worker_processes_share_the_port(pool: tuple[Gateway, int]) -> None:
    """Two processes other than the supervisor listen on the one port (SO_REUSEPORT)."""
    gw, _ = pool
    pids = wait_for_listeners(gw.port, 2)
    assert gw.process.pid not in pids


def test_the_workers_map_one_index_file(pool: tuple[Gateway, int]) -> None:
    """Each worker maps the same compiled index file (shared page cache, not a copy each):
    the verified private snapshot of lists.idx in data_dir/mapped/, not lists.idx itself."""
    gw, _ = pool
    (index,) = (str(p) for p in (gw.data_dir / "mapped").glob("*.idx"))
    for pid in wait_for_listeners(gw.port, 2):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert index in maps, f"worker {pid} does not map {index}"
        assert str(gw.data_dir / "lists.idx") not in maps


def test_every_worker_filters_and_metrics_are_summed(
    pool: tuple[Gateway, int], origin: Origin
) -> None:
    """Requests on many connections are all filtered; the supervisor's scrape counts them all."""
    gw, metrics = pool
    wait_for_listeners(gw.port, 2)
    before = counted(metrics)
    for _ in range(10):  # each get() is a new connection: the kernel spreads them
        assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
        assert gw.get(f"http://localhost:{origin.http_port}/w", client=PUPIL)[0] == 200
    assert counted(metrics) - before == 20


def test_a_dead_worker_is_started_again(pool: tuple[Gateway, int]) -> None:
    """When a worker is killed the supervisor starts another; the port keeps being served."""
    gw, _ = pool
    victim = min(wait_for_listeners(gw.port, 2))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in listeners(gw.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    # The other worker serves. (Connections the kernel had already queued on the dead
    # worker's socket are reset with it: SO_REUSEPORT cannot hand them over.)
    statuses = []
    for _ in range(3):
        try:
            statuses.append(gw.get("http://adult-demo.example/", client=PUPIL)[0])
            break
        except ConnectionResetError:
            statuses.append(0)
            time.sleep(0.2)
    assert statuses[-1] == 403, statuses
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = listeners(gw.port)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the killed worker was not replaced")
    assert gw.process.poll() is None


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, origin_ca: OriginCA) -> None:
    """A supervisor killed with SIGKILL leaves no worker holding the port."""
    gw = start_gateway(tmp_path, origin_ca, "--workers", "2")
    workers: set[int] = set()
    try:
        workers = wait_for_listeners(gw.port, 2)
        gw.process.kill()
        gw.process.wait()
        deadline = time.monotonic() + 15
        while listeners(gw.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not listeners(gw.port)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
