"""``schoolgate ca``: the certificate school devices trust, named for the school.

``ca show`` prints the CA's name, fingerprint and validity; ``ca rotate``
retires the CA (its files move to ``DATA_DIR/mitmproxy/retired-TIME/``, never
deleted, so a mistaken rotation can be undone by moving them back) and makes
a new "<school> Schoolgate CA", then says what every device must do. A
running filter keeps serving certificates from the CA it started with until
it is restarted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from proxy.cli.common import config_option, fail
from proxy.policy import load_policy
from proxy.settings import Settings, load_settings
from proxy.yamlfile import ConfigError


def describe(cert_file: Path) -> str:
    """Name, SHA-256 fingerprint and validity of a CA certificate file, one per line."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    return (
        f"name: {cert.subject.rfc4514_string()}\n"
        f"sha256: {fingerprint}\n"
        f"valid: {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}\n"
        f"file: {cert_file}"
    )


def _load(config_dir: Path) -> tuple[Settings, str]:
    try:
        settings = load_settings(config_dir)
        policy = load_policy(config_dir / "policy.yaml")
    except ConfigError as exc:
        raise fail(str(exc.problems[0])) from None
    return settings, policy.school


@click.group()
def ca() -> None:
    """The certificate authority school devices trust for HTTPS filtering."""


@ca.command()
@config_option
def show(config_dir: Path) -> None:
    """Show the CA's name, fingerprint and validity (made now if there is none)."""
    from proxy.master import ensure_ca

    settings, school = _load(config_dir)
    click.echo(describe(ensure_ca(settings, school)))


@ca.command()
@config_option
@click.option("--yes", is_flag=True, help="Rotate without asking.")
def rotate(config_dir: Path, yes: bool) -> None:
    """Retire the CA and make a new one; every school device must then trust the new one."""
    from proxy.master import rotate_ca

    settings, school = _load(config_dir)
    if not yes:
        click.confirm(
            "Every school device will show certificate errors until it trusts the new CA. "
            "Rotate now?",
            abort=True,
        )
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        new, retired = rotate_ca(settings, school, when)
    except FileExistsError:
        raise fail(f"a CA was already retired at {when}: wait a second and try again") from None
    click.echo(describe(new))
    click.echo(
        f"The old CA is kept in {retired} (move its files back to undo).\n"
        "What devices must do:\n"
        f"  1. Install {new.with_suffix('.cer')} (Android, ChromeOS), "
        f"{new.with_suffix('.p12')} (Windows) or {new} (macOS, iOS, Linux, Firefox)\n"
        "     as a trusted root on every school device: push it with your MDM or group\n"
        "     policy, and remove the old one.\n"
        "  2. Restart the filter (systemctl restart schoolgate), which then issues\n"
        "     certificates from the new CA; until a device trusts it, HTTPS shows errors.\n"
        "  3. Devices that never trusted the school CA (groups with intercept: false)\n"
        "     need nothing."
    )
