"""A throwaway PostgreSQL for the store tests, started from the server binaries.

``initdb`` and ``pg_ctl`` (Debian's ``postgresql`` package; ``.ci/run``
installs it where missing) run in a temporary folder on a free 127.0.0.1
port, as the ``postgres`` system user when the tests run as root (initdb
refuses root). The server lives for the test session. Locally, a machine
without the binaries skips the PostgreSQL half of the suite; in CI
(``CI=true``) that is a failure, so CI can never pass without it.

``store_url`` is the fixture store tests take: each test gets an empty
database, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    bindir: Path
    base: Path
    port: int
    as_user: list[str]

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -F",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_postgres() -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("no initdb found: install the postgresql package")
    base = Path(tempfile.mkdtemp(prefix="schoolgate-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: the server runs as the postgres system user.
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bindir, base, _free_port(), as_user)
    server.init()
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; skipped locally without binaries, never in CI."""
    try:
        server = start_postgres()
    except (RuntimeError, KeyError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL must run in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    with contextlib.suppress(RuntimeError):
        server.stop("immediate")
    shutil.rmtree(server.base, ignore_errors=True)


_numbers = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: SQLite in a temporary folder, or a new database on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"test_{os.getpid()}_{next(_numbers)}")
