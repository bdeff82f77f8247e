"""What people see carries the school's name: the CA devices trust, and the page for a dead site.

Through the real proxy: the CA that ``schoolgate run`` makes is
"<school> Schoolgate CA"; a site that refuses the connection, or whose TLS
fails, gets the school's page saying what happened, with the reference
that is in the access log, instead of mitmproxy's bare 502; and headless
Debian Chromium renders that page (screenshot under ``artifacts/browser/``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.integration.harness import PUPIL, ROOT, Gateway, Origin, free_port

CHROMIUM = shutil.which("chromium")
ARTIFACTS = ROOT / "artifacts" / "browser"


def test_the_ca_is_named_for_the_school(gateway: Gateway) -> None:
    """The certificate every school device must trust names the school, not mitmproxy."""
    cert = x509.load_pem_x509_certificate(gateway.ca_file.read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [n.value for n in names] == ["Integration Test School Schoolgate CA"]
    assert "mitmproxy" not in cert.subject.rfc4514_string()


def _reference(body: str) -> str:
    found = re.search(r'id="reference">(SG-[0-9A-F]{8})<', body)
    assert found, body
    return found.group(1)


def test_refused_connection_gets_the_school_page(gateway: Gateway) -> None:
    """A server that refuses gets a 502 in the school's name, saying so, with a logged reference."""
    status, body = gateway.get(f"http://127.0.0.1:{free_port()}/homework", client=PUPIL)
    assert status == 502
    assert "This site refused the connection" in body
    assert "Integration Test School" in body
    assert "Not blocked by the filter" in body
    assert "<h1>502 Bad Gateway</h1>" not in body
    reference = _reference(body)
    deadline = time.monotonic() + 5
    while reference not in gateway.access_log.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, "the page's reference is not in the access log"
        time.sleep(0.05)


def test_failed_upstream_tls_gets_the_school_page(gateway: Gateway, origin: Origin) -> None:
    """HTTPS to a server that does not speak TLS: the page says the secure connection failed."""
    status, body = gateway.get(f"https://localhost:{origin.http_port}/", client=PUPIL)
    assert status == 502
    assert "secure connection is not valid" in body
    assert "Integration Test School" in body


def test_chromium_shows_the_upstream_failure_page(gateway: Gateway, tmp_path: Path) -> None:
    """Headless Debian Chromium renders the school's page for a refused connection."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium must be installed in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    url = f"http://127.0.0.1:{free_port()}/homework"

    def run(profile: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert CHROMIUM is not None
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / profile}",
                f"--proxy-server=http://127.0.0.1:{gateway.port}",
                "--proxy-bypass-list=<-loopback>",  # send 127.0.0.1 through the proxy too
                "--window-size=1000,760",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    dom = run("dom", "--dump-dom")
    assert "This site refused the connection" in dom.stdout, dom.stderr[-2000:]
    assert "Integration Test School" in dom.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "upstream-failure.png"
    shot.unlink(missing_ok=True)
    result = run("shot", f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 5000


def test_login_page_is_in_the_school_style(gateway: Gateway) -> None:
    """The login page's sign-in answer names the school, styled like the filter's other pages."""
    status, body = gateway.get("http://login.schoolgate/", client=PUPIL)
    assert status == 401
    assert 'id="school">Integration Test School<' in body
    assert "Sign in with your school user name and password." in body
