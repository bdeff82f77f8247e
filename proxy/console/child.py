"""``schoolgate run`` starts the console as a child process and keeps it running.

The console is a separate process (``schoolgate console --supervised``) so that
nothing it does (a slow page, an upload, a crash) can touch the filter's event
loop. A thread here starts it and starts it again when it exits, waiting longer
after each quick exit (up to ``MAX_BACKOFF`` seconds: a port in use must not
spin); the console itself stops when its parent is gone. The filter never
depends on the console: if it cannot start, pupils are filtered as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("schoolgate.console")
MAX_BACKOFF = 30.0
QUICK = 5.0


class ConsoleChild:
    def __init__(self, config_dir: Path) -> None:
        self.command = [
            sys.executable,
            "-m",
            "proxy",
            "console",
            "--config",
            str(config_dir),
            "--supervised",
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="schoolgate console", daemon=True)

    def start(self) -> None:
        self._thread.start()
        atexit.register(self.stop)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
            self.starts += 1
            code = self.process.wait()
            if self._stopping.is_set():
                return
            quick = time.monotonic() - started < QUICK
            backoff = min(backoff * 2, MAX_BACKOFF) if quick else 1.0
            log.warning("the console exited with status %d; starting it again", code)
            self._stopping.wait(backoff)

    def stop(self) -> None:
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def stop_when_orphaned(parent: int) -> None:
    """In the console: exit when the ``run`` that started it is gone (killed with SIGKILL)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning("schoolgate run (%d) is gone: the console stops", parent)
        os._exit(0)

    threading.Thread(target=watch, name="orphan watch", daemon=True).start()
