"""Nothing lost under store and disk faults: the real proxy, blocked traffic at a known rate.

A pupil's client asks the real proxy for an adult site about ``RATE`` times a
second, and every answer is counted. Meanwhile, in turn, on SQLite and on a
real PostgreSQL (``tests/postgres.py``):

- **refuse**: the store refuses writes for a while (PostgreSQL stopped; SQLite's
  write lock held by another process);
- **hang**: the store hangs (every PostgreSQL process SIGSTOPped; SQLite's lock
  held), the proxy is SIGKILLed during the hang, then the store comes back
  (SIGCONT) and the proxy is started again;
- **disk full**: the data folder's filesystem (a small ext4 loop mount, or a
  tmpfs) is filled, then freed;
- **kill**: the proxy is SIGKILLed in steady traffic and started again.

After each, the incidents stored (the sum of their roll-up counts) must equal
the 403s the client saw, less at most the crash window the README states:
the 403s answered in the last ``WINDOW_S`` before a SIGKILL. More stored than
403s would be a double count (requests in flight at the kill may have been
recorded without their answer arriving; they are the only allowance upward).
The figures of every run are written to ``artifacts/store-faults.txt``, the
proxy's service log to ``artifacts/store-faults-BACKEND.log``.
Needs root (mount); skipped without it locally, a failure in CI.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from proxy.incidents.models import Incident
from proxy.store.engine import StoreDown, make_engine, session
from tests.integration.harness import (
    PUPIL,
    ROOT,
    Gateway,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.postgres import PostgresServer, postgres  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

RATE = 30  # blocked requests a second
WINDOW_S = 0.1  # the crash window the README states
# The proxy's state gauges are refreshed this often (5 s by default): the test reads them
# fresh instead of sitting out the default's staleness.
REFRESH_S = 0.5
# The writer's watchdog for a hung store call (15 s by default), shortened so the hang need
# not last 15 s; still above the SQLite busy timeout and the connect timeout (3 s).
WATCHDOG_S = 4.0
REFUSE_S = 7.0  # the spool's depth is checked half-way
HANG_S = 8.0
KILL_AFTER_S = 6.0  # into the hang: after the writer's watchdog has broken the call
FULL_S = 4.0
BEFORE_KILL_S = 2.0  # steady traffic before the SIGKILL of the last fault
STEADY_S = 4.0  # after its restart: the events whose crash window is measured
STILL_S = 2.0  # the store unchanged this long, with nothing spooled or held: settled
URL = "http://adult-demo.example/"
REPORT = ROOT / "artifacts" / "store-faults.txt"


# --- the parts -----------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(mount: Path, megabytes: int = 48) -> Iterator[str]:
    """A filesystem of its own for the data folder: ext4 on a loop file (real fsyncs), else a
    tmpfs; yields which."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the store fault test must run as root in CI (it mounts a filesystem)")
        pytest.skip("needs root to mount a small filesystem")
    mount.mkdir(parents=True)
    image = mount.with_name(mount.name + ".img")
    kind = "ext4 loop"
    try:
        with image.open("wb") as f:
            f.truncate(megabytes * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    except (OSError, subprocess.CalledProcessError):
        kind = "tmpfs"
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)], check=True
        )
    try:
        yield kind
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)
        image.unlink(missing_ok=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem under ``folder`` to the last block; the file to delete to free it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
    return filler


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started."""
    master = int((server.datadir / "postmaster.pid").read_text().split()[0])
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    pids.append(int(entry.name))
    return pids


@dataclass
class Traffic:
    """A client asking for a blocked page ``RATE`` times a second, noting every answer."""

    proxy: Callable[[], Gateway]
    answers: list[tuple[float, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _go: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(15)

    def resume(self) -> None:
        self._go.set()

    def pause(self) -> None:
        """Stop sending; returns once the request in progress is answered."""
        self._go.clear()
        time.sleep(0.5)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._go.is_set():
                self._go.wait()
                next_at = time.monotonic()
            try:
                status: int | None = self.proxy().get(URL, client=PUPIL)[0]
            except (OSError, http.client.HTTPException):
                # The proxy is down or was killed mid-answer: not a 403 the client saw.
                status = None
            self.answers.append((time.monotonic(), status))
            next_at += 1 / RATE
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def blocked(self, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for at, status in list(self.answers) if status == 403 and since <= at < until)

    def sent(self, since: float) -> int:
        return sum(1 for at, _ in list(self.answers) if at >= since)

    def failed(self, since: float, until: float) -> int:
        return sum(1 for at, s in list(self.answers) if s is None and since <= at < until)


class Scene:
    """The proxy under test (restartable), its store, its traffic and its metrics."""

    def __init__(self, tmp: Path, origin_ca: OriginCA, data: Path, url: str | None) -> None:
        self.tmp, self.origin_ca, self.data = tmp, origin_ca, data
        write_config(tmp / "config", data, free_port())
        if url is not None:
            with (tmp / "config" / "schoolgate.yaml").open("a") as f:
                f.write(f"database: {url}\n")
        self.url = url or f"sqlite:///{data / 'schoolgate.db'}"
        self.logs: list[str] = []
        self.metrics_port = 0
        self.gw = self.start()
        self.traffic = Traffic(lambda: self.gw)

    def start(self) -> Gateway:
        self.metrics_port = free_port()
        return start_gateway(
            self.tmp,
            self.origin_ca,
            "--set",
            f"schoolgate_metrics_listen=127.0.0.1:{self.metrics_port}",
            "--set",
            f"schoolgate_metrics_refresh_ms={int(REFRESH_S * 1000)}",
            "--set",
            f"schoolgate_store_watchdog_ms={int(WATCHDOG_S * 1000)}",
        )

    def kill(self) -> float:
        """SIGKILL the proxy; the moment it was sent."""
        at = time.monotonic()
        self.gw.process.send_signal(signal.SIGKILL)
        self.gw.process.wait(10)
        self.logs.append(self.gw.stderr())
        return at

    def restart(self) -> None:
        self.gw = self.start()

    def stop(self) -> None:
        stop_gateway(self.gw)
        self.logs.append(self.gw.stderr())

    def stored(self) -> int:
        """The incidents in the store: the sum of their roll-up counts."""
        engine = make_engine(self.url)
        try:
            with session(engine, read_only=True) as s:
                return int(s.scalar(select(func.coalesce(func.sum(Incident.count), 0))) or 0)
        except StoreDown:
            return -1
        finally:
            engine.dispose()

    def scrape(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def await_metrics(self, ready: Callable[[dict[str, float]], bool]) -> dict[str, float]:
        """Scrape until ``ready`` (the state gauges are refreshed every ``REFRESH_S``)."""
        deadline = time.monotonic() + 12
        seen = self.scrape()
        while not ready(seen) and time.monotonic() < deadline:
            time.sleep(REFRESH_S / 2)
            seen = self.scrape()
        return seen

    def settle(self, expected: int, timeout: float = 30.0) -> int:
        """Wait until the store holds ``expected``, or stops changing with nothing left to write
        (none spooled, none held: the gauges, ``STILL_S`` after the store last changed, are
        at least ``STILL_S - REFRESH_S`` newer than the traffic, which was paused before)."""
        deadline = time.monotonic() + timeout
        last, since = -2, time.monotonic()
        while time.monotonic() < deadline:
            now = self.stored()
            if now == expected:
                return now
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since > STILL_S:
                seen = self.scrape()
                if (
                    seen["schoolgate_spool_depth"] == 0
                    and seen["schoolgate_store_events_held"] == 0
                ):
                    return now
            time.sleep(0.3)
        return self.stored()


@dataclass
class Figures:
    backend: str
    scenario: str
    sent: int
    blocked: int
    stored: int
    allowance: int
    in_flight: int

    @property
    def lost(self) -> int:
        return max(0, self.blocked - self.stored)

    def line(self) -> str:
        return (
            f"{self.backend:10} {self.scenario:9} sent {self.sent:4}  403s {self.blocked:4}  "
            f"stored {self.stored:4}  lost {self.lost}  (allowed {self.allowance}; "
            f"in flight at a kill {self.in_flight})"
        )


def check(fig: Figures, found: list[Figures]) -> None:
    found.append(fig)
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a", encoding="utf-8") as f:
        f.write(fig.line() + "\n")
    assert fig.lost <= fig.allowance, fig.line()
    assert fig.stored <= fig.blocked + fig.in_flight, f"counted twice? {fig.line()}"


# --- the test ------------------------------------------------------------------------------


@contextlib.contextmanager
def store_for(backend: str, request: pytest.FixtureRequest) -> Iterator[PostgresServer | None]:
    if backend == "sqlite":
        yield None
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    try:
        yield server
    finally:  # the server is shared by the session: always leave it running
        for pid in postgres_pids(server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(RuntimeError):
            server.start()


@contextlib.contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock: every write the proxy tries times out."""
    import sqlite3

    lock = sqlite3.connect(str(path), timeout=5)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()


class Faults:
    """The four faults in turn on one proxy, each measured as it ends."""

    def __init__(
        self, backend: str, scene: Scene, server: PostgresServer | None, tmp: Path
    ) -> None:
        self.backend, self.scene, self.server, self.tmp = backend, scene, server, tmp
        self.traffic = scene.traffic
        self.data = scene.data
        self.found: list[Figures] = []
        self.base = 0  # incidents stored before the fault being measured

    def measure(self, name: str, t0: float, killed: float | None = None) -> None:
        """Pause the traffic, let the store catch up, compare with the 403s since ``t0``."""
        traffic = self.traffic
        traffic.pause()
        blocked = traffic.blocked(t0)
        stored = self.scene.settle(self.base + blocked) - self.base
        window = in_flight = 0
        if killed is not None:
            window = traffic.blocked(killed - WINDOW_S, killed + 0.001)
            in_flight = traffic.failed(killed, killed + 1)
        figures = Figures(self.backend, name, traffic.sent(t0), blocked, stored, window, in_flight)
        check(figures, self.found)
        self.base += stored

    def _store_stopped(self) -> contextlib.AbstractContextManager[None]:
        if self.server is not None:
            self.server.stop("fast")
            return contextlib.nullcontext()
        return sqlite_locked(self.data / "schoolgate.db")

    def steady(self) -> None:
        t0 = time.monotonic()
        self.traffic.resume()
        time.sleep(2)
        self.measure("steady", t0)

    def refuse(self) -> None:
        """The store refuses; the spool's depth shows every 403 since it began."""
        scene, traffic = self.scene, self.traffic
        t0 = time.monotonic()
        traffic.resume()
        with self._store_stopped():
            down = time.monotonic()  # every 403 from here on can only be in the spool
            seen = scene.await_metrics(lambda m: m["schoolgate_store_writer_up"] == 0)
            assert seen["schoolgate_store_writer_up"] == 0
            time.sleep(max(0.0, t0 + REFUSE_S / 2 - time.monotonic()))
            seen = scene.scrape()
            now = time.monotonic()
            # The gauge is refreshed every REFRESH_S: it holds at least the 403s since the
            # store went down until a refresh and 1.5 s (the loop's lag on a loaded machine) ago.
            upper = traffic.blocked(t0)
            lower = traffic.blocked(down, now - REFRESH_S - 1.5)
            assert lower > 0, "the spool's depth was not checked against any 403"
            assert lower <= seen["schoolgate_spool_depth"] <= upper + 1, (seen, lower, upper)
            assert seen["schoolgate_store_oldest_unapplied_seconds"] > 0
            time.sleep(max(0.0, t0 + REFUSE_S - time.monotonic()))
            if self.server is not None:
                self.server.start()
        time.sleep(1)
        self.measure("refuse", t0)

    def hang_and_kill(self) -> None:
        """The store hangs; the proxy is SIGKILLed during the hang; store back; restart."""
        t0 = time.monotonic()
        self.traffic.resume()
        frozen: list[int] = []
        hang: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.server is not None:
            frozen = postgres_pids(self.server)
            for pid in frozen:
                # A backend whose client has just gone may end between listing and signal.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
        else:
            hang = sqlite_locked(self.data / "schoolgate.db")
        with hang:
            if self.server is not None:  # a frozen server answers nothing: the watchdog acts
                seen = self.scene.await_metrics(
                    lambda m: m["schoolgate_store_hung_calls_total"] > 0
                )
                assert seen["schoolgate_store_hung_calls_total"] > 0, seen
            time.sleep(max(0.0, t0 + KILL_AFTER_S - time.monotonic()))
            killed = self.scene.kill()
            time.sleep(HANG_S - KILL_AFTER_S)
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.scene.restart()
        time.sleep(2)
        self.measure("hang+kill", t0, killed)

    def disk_full(self) -> None:
        """The data folder's filesystem fills, then frees; the proxy keeps filtering."""
        scene, traffic = self.scene, self.traffic
        t0 = time.monotonic()
        traffic.resume()
        filler = fill(self.data)
        seen = scene.await_metrics(
            lambda m: m["schoolgate_store_events_held"] > 0 and m["schoolgate_store_writer_up"] == 0
        )
        assert seen["schoolgate_store_events_held"] > 0, seen
        assert seen["schoolgate_store_writer_up"] == 0
        assert traffic.blocked(time.monotonic() - 2) > 0, "the proxy stopped filtering"
        time.sleep(max(0.0, t0 + FULL_S - time.monotonic()))
        filler.unlink()
        time.sleep(1)
        self.measure("disk full", t0)
        assert scene.scrape()["schoolgate_store_events_dropped_total"] == 0

    def kill(self) -> None:
        """SIGKILL in steady traffic, restart; then the crash window's own figures."""
        t0 = time.monotonic()
        self.traffic.resume()
        time.sleep(BEFORE_KILL_S)
        killed = self.scene.kill()
        self.scene.restart()
        time.sleep(STEADY_S)
        self.measure("kill", t0, killed)
        seen = self.scene.scrape()
        # Since the restart, events were fsync'd in the spool within the crash window (one
        # fsync: on a loaded, shared machine a few take longer), and none near a second.
        # 90%: on this VM's loop-mounted ext4, 114 to 121 of 121 were within 0.1 s across
        # runs (the odd slow fsync of the host's disk); 95% failed one run in three.
        within = seen['schoolgate_store_spool_seconds_bucket{le="0.1"}']
        count = seen["schoolgate_store_spool_seconds_count"]
        with REPORT.open("a", encoding="utf-8") as f:
            f.write(
                f"{self.backend:10} window    {int(within)} of {int(count)} events "
                "fsync'd in the spool within 0.1 s of being recorded, "
                f"{int(seen['schoolgate_store_spool_seconds_bucket{le="0.25"}'])} "
                "within 0.25 s\n"
            )
        assert count > 0, seen
        assert count - within <= 0.10 * count, seen
        assert seen['schoolgate_store_spool_seconds_bucket{le="1.0"}'] == count, seen


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_no_incident_lost_under_store_and_disk_faults(
    backend: str, tmp_path: Path, origin_ca: OriginCA, request: pytest.FixtureRequest
) -> None:
    """Refused, hung (with a SIGKILL), full disk, SIGKILL: stored incidents equal the 403s
    seen, less at most the 403s of the last 100 ms before a SIGKILL."""
    data = tmp_path / "data"
    with small_disk(data) as disk, store_for(backend, request) as server:
        url = None
        if server is not None:
            url = server.create_database(f"faults_{os.getpid()}_{int(time.time() * 1000)}")
        scene = Scene(tmp_path, origin_ca, data, url)
        faults = Faults(backend, scene, server, tmp_path)
        try:
            scene.traffic.start()
            faults.steady()
            faults.refuse()
            faults.hang_and_kill()
            faults.disk_full()
            faults.kill()
        finally:
            scene.traffic.stop()
            scene.stop()
            REPORT.with_name(f"store-faults-{backend}.log").write_text("\n".join(scene.logs))
            lines = "\n".join(f.line() for f in faults.found)
            print(f"\n[{backend}, data on {disk}]\n{lines}")
    shutil.rmtree(data, ignore_errors=True)
