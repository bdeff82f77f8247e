"""Private files: the real proxy, started under the usual umask 022, writes nothing others can read.

Everything under the data folder (the access log, the SQLite store and its
``-wal``/``-shm``, the spool, login bindings, the list index, the signing
key, the mitmproxy CA) must be the service user's alone: files 0600,
folders 0700 (``proxy/files.py``). The test starts ``schoolgate run`` from a
process whose umask is 022, makes it create each of those files (blocked
and allowed requests, a sign-in at the login page, a CLI command), and reads
every mode under the data folder, while the proxy runs and after it stops.
A file left world-readable by an older install is tightened at start.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.logins import hash_password
from tests.integration.harness import (
    PUPIL,
    STAFF,
    Gateway,
    Origin,
    OriginCA,
    free_port,
    schoolgate_command,
    start_gateway,
    stop_gateway,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Child processes start with umask 022, as from a login shell or cron."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        if not path.is_symlink():
            found[str(path.relative_to(folder))] = stat.S_IMODE(path.stat().st_mode)
    return found


def readable_by_others(folder: Path) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes(folder).items() if mode & 0o077}


def test_every_file_under_data_dir_is_private_under_umask_022(
    tmp_path: Path, origin_ca: OriginCA, origin: Origin, usual_umask: None
) -> None:
    """Under umask 022 every file the proxy and the CLI create in data_dir is 0600 (folders
    0700), and a file an older install left 0644 is made private at start."""
    config, data = tmp_path / "config", tmp_path / "var"
    write_config(config, data, free_port())
    users = tmp_path / "users"
    users.write_text(f"head.teacher:{hash_password('head pass', rounds=4)}\n")
    with (config / "schoolgate.yaml").open("a") as f:
        f.write(f"auth: {{users_file: {users}, login_host: login.schoolgate}}\n")
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    old = data / "access.log.1"
    old.write_text("{}\n")
    assert stat.S_IMODE(old.stat().st_mode) == 0o644  # the umask is really 022 here

    gw: Gateway = start_gateway(tmp_path, origin_ca)
    try:
        assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
        assert gw.get(f"http://localhost:{origin.http_port}/ok", client=PUPIL)[0] == 200
        signed = "Basic " + base64.b64encode(b"head.teacher:head pass").decode()
        status, _ = gw.get(
            "http://login.schoolgate/", client=STAFF, headers={"Authorization": signed}
        )
        assert status == 200
        gw.access_lines(2)
        result = subprocess.run(
            [
                *schoolgate_command(),
                "incidents",
                "list",
                "--status",
                "all",
                "--config",
                str(config),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 15
        while "adult" not in result.stdout and time.monotonic() < deadline:
            time.sleep(0.3)
            result = subprocess.run(
                [
                    *schoolgate_command(),
                    "incidents",
                    "list",
                    "--status",
                    "all",
                    "--config",
                    str(config),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert "adult" in result.stdout
        present = set(modes(data))
        expected = {
            "access.log",
            "access.log.1",
            "schoolgate.db",
            "schoolgate.db-wal",
            "schoolgate.db-shm",
            "spool",
            "spool/events.jsonl.lock",
            "logins.json",
            "mitmproxy",
            "mitmproxy/mitmproxy-ca.pem",
            "lists.idx",
            "review.key",
        }
        assert expected <= present, expected - present
        assert readable_by_others(data) == {}
    finally:
        stop_gateway(gw)
    assert readable_by_others(data) == {}
