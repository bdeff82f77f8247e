"""The console as ``schoolgate run`` starts it: over HTTPS, started again when it dies, and
stopped with the filter."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    Gateway,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def console_pid(gateway: Gateway) -> int:
    for pid in children(gateway.process.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"console" in cmdline:
            return pid
    raise AssertionError("no console child process")


def get(port: int, ca: Path, path: str = "/login") -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(ca))
    # The test CA's certificates lack extensions Python 3.13's strict mode asks for.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=5)
    conn.request("GET", path)
    return conn.getresponse()


def wait_for(port: int, ca: Path, timeout: float = 40.0) -> http.client.HTTPResponse:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(port, ca)
        except ssl.SSLCertVerificationError:
            raise
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def tls_console(tmp_path: Path, origin_ca: OriginCA) -> Iterator[tuple[Gateway, int]]:
    config_dir, data_dir = tmp_path / "config", tmp_path / "var"
    write_config(config_dir, data_dir, free_port())
    cert, key = origin_ca.issue(tmp_path, "localhost")
    port = free_port()
    settings = config_dir / "schoolgate.yaml"
    settings.write_text(
        settings.read_text("utf-8")
        + f"console_listen: 127.0.0.1:{port}\nconsole_tls: {{cert: {cert}, key: {key}}}\n",
        "utf-8",
    )
    gateway = start_gateway(tmp_path, origin_ca, "--console")
    yield gateway, port
    stop_gateway(gateway)


def test_run_serves_the_console_over_https_and_restarts_it(
    tls_console: tuple[Gateway, int], origin_ca: OriginCA
) -> None:
    """HTTPS with the named certificate, Secure cookies; a killed console comes back; the
    console ends with the filter."""
    gateway, port = tls_console
    response = wait_for(port, origin_ca.cert_path)
    assert response.status == 200
    cookie = response.getheader("Set-Cookie") or ""
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert response.getheader("Strict-Transport-Security")
    assert "default-src 'self'" in (response.getheader("Content-Security-Policy") or "")
    first = console_pid(gateway)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.5)
    assert wait_for(port, origin_ca.cert_path).status == 200
    second = console_pid(gateway)
    assert second != first
    assert gateway.process.poll() is None  # the filter never stopped
    gateway.process.send_signal(signal.SIGTERM)
    gateway.process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    status = Path(f"/proc/{second}/status")
    assert not status.exists() or "zombie" in status.read_text()
