"""RADIUS accounting binds a Wi-Fi address to its user, checked as RFC 2866 says."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrad import packet

from proxy.logins import Login, LoginBindings
from proxy.radius import Accounting, client_secrets, device_of, load_dictionary
from proxy.settings import Radius

NAS, SECRET = "10.0.0.2", b"wifi-secret"
DICT = load_dictionary()


def request(
    status: str,
    user: str = "amy.pupil",
    ip: str = "10.10.4.7",
    secret: bytes = SECRET,
    mac: str | None = None,
) -> bytes:
    pkt = packet.AcctPacket(code=packet.AccountingRequest, secret=secret, dict=DICT)
    pkt["Acct-Status-Type"] = status
    pkt["User-Name"] = user
    pkt["Framed-IP-Address"] = ip
    pkt["Acct-Session-Id"] = "S1"
    if mac is not None:
        pkt["Calling-Station-Id"] = mac
    raw: bytes = pkt.RequestPacket()
    return raw


@pytest.fixture
def accounting(tmp_path: Path) -> Accounting:
    return Accounting({NAS: SECRET}, LoginBindings(tmp_path / "logins.json"), minutes=60)


def test_start_binds_and_stop_ends(accounting: Accounting) -> None:
    """Start makes the address the user's and is acknowledged; Stop ends it."""
    reply = accounting.handle(request("Start"), NAS, now=1000.0)
    assert reply is not None
    assert packet.Packet(packet=reply, dict=DICT).code == packet.AccountingResponse
    assert accounting.bindings.user_at("10.10.4.7", now=1001.0) == "amy.pupil"
    assert accounting.handle(request("Stop"), NAS, now=1002.0) is not None
    assert accounting.bindings.user_at("10.10.4.7", now=1003.0) is None


def test_session_times_out_unless_interim_renews_it(accounting: Accounting) -> None:
    """A session with no Interim-Update or Stop ends after session_minutes; an Interim renews it."""
    accounting.handle(request("Start"), NAS, now=0.0)
    accounting.handle(request("Interim-Update"), NAS, now=3000.0)
    assert accounting.bindings.user_at("10.10.4.7", now=3000.0 + 59 * 60) == "amy.pupil"
    assert accounting.bindings.user_at("10.10.4.7", now=3000.0 + 61 * 60) is None


def test_stop_for_another_user_leaves_the_address_alone(accounting: Accounting) -> None:
    """A late Stop for the address's previous user does not end the new user's session."""
    accounting.handle(request("Start", user="old.user"), NAS, now=10.0)
    accounting.handle(request("Start", user="amy.pupil"), NAS, now=20.0)
    accounting.handle(request("Stop", user="old.user"), NAS, now=30.0)
    assert accounting.bindings.user_at("10.10.4.7", now=31.0) == "amy.pupil"


def test_wrong_secret_and_unlisted_nas_are_dropped(accounting: Accounting) -> None:
    """No reply and no binding for a wrong secret or a NAS that is not listed."""
    assert accounting.handle(request("Start", secret=b"guess"), NAS, now=1.0) is None
    assert accounting.handle(request("Start"), "10.0.0.99", now=1.0) is None
    assert accounting.bindings.user_at("10.10.4.7", now=2.0) is None
    assert (accounting.counts.bad, accounting.counts.unknown_nas) == (1, 1)


def test_garbage_is_dropped(accounting: Accounting) -> None:
    """A datagram that is not RADIUS is dropped without a reply."""
    assert accounting.handle(b"\x04\x01\x00\x05x", NAS) is None
    assert accounting.handle(b"hello", NAS) is None


def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    """A new Accounting over the same file (a restarted filter) still knows the session."""
    first = Accounting({NAS: SECRET}, LoginBindings(tmp_path / "logins.json"), minutes=60)
    first.handle(request("Start"), NAS, now=100.0)
    again = LoginBindings(tmp_path / "logins.json")
    assert again.user_at("10.10.4.7", now=200.0) == "amy.pupil"


def test_secret_from_the_environment() -> None:
    """secret_env names an environment variable; a missing one is a clear error."""
    radius = Radius.model_validate(
        {"clients": [{"address": "10.0.0.2", "secret_env": "WIFI_SECRET"}]}
    )
    assert client_secrets(radius, {"WIFI_SECRET": "s3"}) == {"10.0.0.2": b"s3"}
    with pytest.raises(ValueError, match=r"\$WIFI_SECRET is not set"):
        client_secrets(radius, {})


def test_a_client_needs_exactly_one_secret() -> None:
    """Both or neither of secret and secret_env is a settings error."""
    with pytest.raises(ValueError, match="exactly one"):
        Radius.model_validate({"clients": [{"address": "10.0.0.2"}]})


def test_an_ipv6_address_is_bound_too(accounting: Accounting) -> None:
    """Framed-IPv6-Address, where the NAS sends it, is the user's as well (compressed form)."""
    pkt = packet.AcctPacket(code=packet.AccountingRequest, secret=SECRET, dict=DICT)
    pkt["Acct-Status-Type"] = "Start"
    pkt["User-Name"] = "amy.pupil"
    pkt["Framed-IP-Address"] = "10.10.4.7"
    pkt["Framed-IPv6-Address"] = "2001:db8:0:0::7"
    assert accounting.handle(pkt.RequestPacket(), NAS, now=10.0) is not None
    assert accounting.bindings.user_at("2001:db8::7", now=11.0) == "amy.pupil"
    assert accounting.bindings.user_at("10.10.4.7", now=11.0) == "amy.pupil"


def test_the_device_is_bound_with_the_user(accounting: Accounting) -> None:
    """Calling-Station-Id (the Wi-Fi client's MAC) is kept with the binding, and survives a
    reread of the file by another worker; a Start without one binds no device."""
    accounting.handle(request("Start", mac="AC-DE-48-00-11-22"), NAS, now=1000.0)
    want = Login("amy.pupil", "binding", "ac:de:48:00:11:22")
    assert accounting.bindings.login_at("10.10.4.7", now=1001.0) == want
    assert LoginBindings(accounting.bindings.path).login_at("10.10.4.7", now=1001.0) == want
    accounting.handle(request("Start", ip="10.10.4.8"), NAS, now=1002.0)
    assert accounting.bindings.login_at("10.10.4.8", now=1003.0) == Login("amy.pupil", "binding")


@pytest.mark.parametrize(
    ("sent", "device"),
    [
        ("AC-DE-48-00-11-22", "ac:de:48:00:11:22"),
        ("acde.4800.1122", "ac:de:48:00:11:22"),
        ("acde48001122", "ac:de:48:00:11:22"),
        ("AC:DE:48:00:11:22", "ac:de:48:00:11:22"),
        ("lab-pc-07", "lab-pc-07"),
        ("", None),
        ("x" * 65, None),
        ("bad\x00id", None),
    ],
)
def test_calling_station_ids_name_the_device(sent: str, device: str | None) -> None:
    """A MAC in any controller's spelling becomes one form; other short labels stay as sent."""
    assert device_of(sent) == device
