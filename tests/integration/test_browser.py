"""A real browser through the real proxy: headless Chromium sees the HTTPS block page.

Debian's ``chromium`` (``.ci/run`` installs it) is started with the flags of
the machine notes, a fresh profile and ``--proxy-server`` pointing at the
proxy. It trusts the proxy's certificates through
``--ignore-certificate-errors-spki-list`` with the SPKI hash of the proxy's
CA key: mitmproxy signs every certificate it makes with that CA and gives
them the CA's key, so only the proxy's own certificates are accepted; no
``--ignore-certificate-errors``. The page text is checked through
``--dump-dom``, and a screenshot is saved under ``artifacts/browser/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.harness import ROOT, Gateway

CHROMIUM = shutil.which("chromium")
ARTIFACTS = ROOT / "artifacts" / "browser"


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    """Skipped locally without Chromium; in CI (``CI=true``) that is a failure, never a skip."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium must be installed in CI (make test installs it)")
        pytest.skip("Debian's chromium is not installed (make test installs it)")


def spki_hash(ca_file: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium wants it."""
    cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium(gateway: Gateway, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{gateway.port}",
            f"--ignore-certificate-errors-spki-list={spki_hash(gateway.ca_file)}",
            "--window-size=1100,900",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_chromium_sees_the_https_block_page(gateway: Gateway, tmp_path: Path) -> None:
    """A blocked HTTPS site in a real browser shows the block page with its review form."""
    url = "https://casino-demo.example/"
    dom = chromium(gateway, tmp_path / "profile-dom", "--dump-dom", url)
    assert "This site is blocked" in dom.stdout, dom.stderr[-2000:]
    assert "gambling" in dom.stdout
    assert 'id="reference">SG-' in dom.stdout
    assert "Request a review" in dom.stdout

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "blocked-https.png"
    shot.unlink(missing_ok=True)
    result = chromium(gateway, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert shot.exists(), result.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert shot.stat().st_size > 5000  # a rendered page, not an empty canvas
