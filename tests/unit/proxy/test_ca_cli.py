"""The CA school devices trust carries the school's name; rotation keeps the old one aside."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from proxy.cli import cli
from proxy.master import ensure_ca
from proxy.settings import load_settings
from tests.unit.proxy.configs import write_config

POLICY = """\
school: St Aidan's C of E Primary
timezone: Europe/London
identity: {default_group: pupil}
categories:
  child_abuse: {lists: [iwf], illegal: true}
groups:
  pupil: {default: acceptable}
"""


def _subject(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_new_ca_is_named_for_the_school(tmp_path: Path) -> None:
    """With no CA yet, the one made is "<school> Schoolgate CA", not "mitmproxy"."""
    config = write_config(tmp_path, "null", POLICY)
    cert = ensure_ca(load_settings(config), "St Aidan's C of E Primary")
    assert _subject(cert) == "St Aidan's C of E Primary Schoolgate CA"
    assert (cert.parent / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0  # the key is private


def test_an_existing_ca_is_kept(tmp_path: Path) -> None:
    """A CA already trusted by devices is never replaced by starting the filter."""
    config = write_config(tmp_path, "null", POLICY)
    settings = load_settings(config)
    first = ensure_ca(settings, "Old Name School").read_bytes()
    assert ensure_ca(settings, "St Aidan's C of E Primary").read_bytes() == first


def test_ca_rotate_makes_a_new_ca_and_says_what_devices_must_do(tmp_path: Path) -> None:
    """rotate retires the old CA into retired-*/, makes a new one, and gives the device steps."""
    config = write_config(tmp_path, "null", POLICY)
    settings = load_settings(config)
    old = ensure_ca(settings, "Old Name School").read_bytes()
    result = CliRunner().invoke(cli, ["ca", "rotate", "--yes", "--config", str(config)])
    assert result.exit_code == 0, result.output
    new = settings.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    assert new.read_bytes() != old
    assert _subject(new) == "St Aidan's C of E Primary Schoolgate CA"
    retired = list((settings.data_dir / "mitmproxy").glob("retired-*/mitmproxy-ca-cert.pem"))
    assert [p.read_bytes() for p in retired] == [old]
    assert "What devices must do" in result.output
    assert "trusted root" in result.output
    assert "St Aidan's C of E Primary Schoolgate CA" in result.output


def test_ca_rotate_asks_first(tmp_path: Path) -> None:
    """Without --yes, answering no leaves the CA alone."""
    config = write_config(tmp_path, "null", POLICY)
    settings = load_settings(config)
    old = ensure_ca(settings, "Old Name School").read_bytes()
    result = CliRunner().invoke(cli, ["ca", "rotate", "--config", str(config)], input="n\n")
    assert result.exit_code == 1
    assert (settings.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem").read_bytes() == old


def test_ca_show_names_the_ca(tmp_path: Path) -> None:
    """show prints the name and fingerprint a technician compares on a device."""
    config = write_config(tmp_path, "null", POLICY)
    result = CliRunner().invoke(cli, ["ca", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "CN=St Aidan's C of E Primary Schoolgate CA" in result.output
    assert "sha256: " in result.output
