"""``schoolgate run --workers N``: N mitmproxy processes sharing one listen port.

mitmproxy runs one event loop on one core (about 800 plain-HTTP requests a
second here, ../shared/peers/RESULTS.md). The supervisor here starts N worker
processes (``schoolgate run --worker``), each a whole Schoolgate proxy. Each
worker binds the listen port with ``SO_REUSEPORT`` (``proxy.master``), and the
kernel spreads new connections over them. In transparent mode the nftables
redirect goes to that one port, so the same spreading applies.

What the workers share, and how:

- the compiled list index: every worker opens ``DATA_DIR/lists.idx`` with
  mmap, so the pages are the kernel's page cache, held once. The supervisor
  loads the filterset before starting any worker, which compiles the index if
  it is missing or stale, so workers never compile it at the same time;
- the CA: created by the supervisor before the workers start, so they do not
  race to write it;
- metrics: prometheus-client's multiprocess mode (``proxy.metrics``); the
  supervisor serves the sum on ``metrics_listen``;
- transparent logins: the bindings file (``proxy.logins``);
- the access log: each line is one ``write`` to a file opened with
  ``O_APPEND``, so lines from different workers never interleave.

A worker that dies is started again after a second; one that dies within
``FAST_EXIT`` seconds of starting, ``MAX_FAST_EXITS`` times running, stops the
whole service (a broken configuration should not spin). SIGTERM and SIGINT go
to every worker, and the supervisor waits for them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from proxy.metrics import (
    MULTIPROC_ENV,
    MetricsServer,
    aggregate_registry,
    split_listen,
    worker_exited,
)
from proxy.settings import Settings

log = logging.getLogger("schoolgate.workers")
FAST_EXIT = 5.0
MAX_FAST_EXITS = 3
WORKER_ENV = "SCHOOLGATE_WORKER"


@dataclass
class Worker:
    number: int
    process: subprocess.Popen[bytes]
    started: float
    fast_exits: int = 0


@dataclass
class Supervisor:
    settings: Settings
    count: int
    worker_args: Sequence[str]
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False

    @property
    def metrics_dir(self) -> Path:
        return self.settings.data_dir / "metrics"

    def _prepare_metrics_dir(self) -> None:
        # Counts from a previous run would be added to this one: start from nothing.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)

    def _spawn(self, number: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            MULTIPROC_ENV: str(self.metrics_dir),
            WORKER_ENV: str(number),
        }
        command = [sys.executable, "-m", "proxy", *self.worker_args]
        return subprocess.Popen(command, env=env)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Start the workers and keep them running until told to stop; the exit status."""
        self._prepare_metrics_dir()
        server = None
        if self.settings.metrics_listen:
            host, port = split_listen(self.settings.metrics_listen)
            try:
                server = MetricsServer(host, port, aggregate_registry(self.metrics_dir))
            except OSError as exc:
                print(
                    f"schoolgate run: metrics_listen {self.settings.metrics_listen}: {exc}",
                    file=sys.stderr,
                )
                return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        now = time.monotonic()
        self.workers = [Worker(n, self._spawn(n), now) for n in range(self.count)]
        log.info("started %d workers on %s", self.count, self.settings.listen)
        status = 0
        try:
            while True:
                alive = 0
                for worker in self.workers:
                    code = worker.process.poll()
                    if code is None:
                        alive += 1
                        continue
                    if self.stopping or worker.fast_exits < 0:
                        continue
                    status = self._restart(worker, code)
                    if status:
                        self._stop(signal.SIGTERM, None)
                    else:
                        alive += 1
                if alive == 0 and self.stopping:
                    break
                time.sleep(0.2)
        finally:
            for worker in self.workers:
                try:
                    worker.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()
            if server is not None:
                server.stop()
        return status

    def _restart(self, worker: Worker, code: int) -> int:
        worker_exited(worker.process.pid, self.metrics_dir)
        quick = time.monotonic() - worker.started < FAST_EXIT
        worker.fast_exits = worker.fast_exits + 1 if quick else 0
        if worker.fast_exits >= MAX_FAST_EXITS:
            log.error(
                "worker %d exited %d times within %.0f s of starting (status %d): stopping",
                worker.number,
                worker.fast_exits,
                FAST_EXIT,
                code,
            )
            worker.fast_exits = -1  # not to be started again
            return code or 1
        log.warning("worker %d exited with status %d; starting it again", worker.number, code)
        time.sleep(1.0)
        if self.stopping:
            return 0
        worker.process = self._spawn(worker.number)
        worker.started = time.monotonic()
        return 0


def run_workers(settings: Settings, count: int, worker_args: Sequence[str]) -> int:
    """Supervise ``count`` workers run as ``schoolgate WORKER_ARGS``; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return Supervisor(settings, count, worker_args).run()
