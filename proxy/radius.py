"""RADIUS accounting from the school's Wi-Fi: which named user has which address.

The wireless controller (the NAS) sends an Accounting-Request when a device
joins (Start), periodically (Interim-Update) and when it leaves (Stop), with
the user who signed in to the Wi-Fi (``User-Name``, 802.1X) and the address
the device was given (``Framed-IP-Address``, and ``Framed-IPv6-Address``
where the NAS sends one), and the device itself (``Calling-Station-Id``, its
MAC address, which outlives a DHCP lease: incidents name it, so the school
can find and isolate the device). ``Accounting.handle`` checks a
datagram as RFC 2866 says (a NAS listed in ``radius.clients``, its shared
secret in the Request Authenticator), binds the address to the user in the
same bindings file the login page writes (``proxy/logins.py``), so every
worker and a restarted filter see it, for ``session_minutes`` from each
Start or Interim, and ends it at Stop. The reply (Accounting-Response) is
sent only for a packet that was checked and recorded, so the NAS retries
anything else. Packet parsing and the authenticator are pyrad's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pyrad import packet
from pyrad.dictionary import Dictionary

from proxy.logins import LoginBindings, valid_name
from proxy.settings import Radius

log = logging.getLogger("schoolgate.radius")
_MAC = re.compile(r"[0-9a-f]{2}([-:.]?[0-9a-f]{2}){5}")


def device_of(calling_station: str) -> str | None:
    """The device a ``Calling-Station-Id`` names: a MAC address as ``aa:bb:cc:dd:ee:ff``
    (controllers write ``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` and more), else the id as
    sent when it is a short printable label, else None."""
    text = calling_station.strip()
    if _MAC.fullmatch(text.lower()):
        hexdigits = "".join(c for c in text.lower() if c in "0123456789abcdef")
        return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))
    return text if 0 < len(text) <= 64 and text.isprintable() else None


def load_dictionary() -> Dictionary:
    """The RADIUS attributes accounting carries (``proxy/data/radius-dictionary.txt``)."""
    path = resources.files("proxy").joinpath("data/radius-dictionary.txt")
    return Dictionary(str(path))


def client_secrets(radius: Radius, environ: dict[str, str] | None = None) -> dict[str, bytes]:
    """NAS address -> shared secret; raises ``ValueError`` naming a missing secret variable."""
    env = os.environ if environ is None else environ
    found = {}
    for client in radius.clients:
        secret = client.secret
        if client.secret_env is not None:
            secret = env.get(client.secret_env)
            if not secret:
                raise ValueError(f"radius client {client.address}: ${client.secret_env} is not set")
        assert secret is not None
        found[str(client.address)] = secret.encode()
    return found


@dataclass
class Counts:
    recorded: int = 0
    unknown_nas: int = 0
    bad: int = 0


@dataclass
class Accounting:
    """Checks accounting datagrams and keeps the address bindings they describe."""

    secrets: dict[str, bytes]
    bindings: LoginBindings
    minutes: int
    dictionary: Dictionary = field(default_factory=load_dictionary)
    counts: Counts = field(default_factory=Counts)

    @classmethod
    def from_settings(cls, radius: Radius, data_dir: Path, bindings_file: str) -> Accounting:
        return cls(
            client_secrets(radius), LoginBindings(data_dir / bindings_file), radius.session_minutes
        )

    def handle(self, data: bytes, source: str, now: float | None = None) -> bytes | None:
        """The Accounting-Response to send back, or None to drop the datagram."""
        nas = str(ipaddress.ip_address(source.split("%", 1)[0]))
        secret = self.secrets.get(nas)
        if secret is None:
            self.counts.unknown_nas += 1
            return None
        try:
            request = packet.AcctPacket(packet=data, secret=secret, dict=self.dictionary)
            if request.code != packet.AccountingRequest or not request.VerifyAcctRequest():
                raise packet.PacketError("not an accounting request with this NAS's secret")
            self._record(request, now)
        except Exception as exc:  # a bad packet is dropped, never half-recorded
            self.counts.bad += 1
            if self.counts.bad == 1:
                log.warning("RADIUS packet from %s dropped: %s", nas, exc)
            return None
        self.counts.recorded += 1
        reply: bytes = request.CreateReply().ReplyPacket()
        return reply

    def _record(self, request: packet.AcctPacket, now: float | None) -> None:
        status = request["Acct-Status-Type"][0] if "Acct-Status-Type" in request else None
        if status not in ("Start", "Interim-Update", "Stop"):
            return  # Accounting-On/Off and the rest carry no session to bind
        ips = [
            str(ipaddress.ip_address(request[name][0]))
            for name in ("Framed-IP-Address", "Framed-IPv6-Address")
            if name in request
        ]
        if not ips or "User-Name" not in request:
            return
        user = str(request["User-Name"][0])
        if not valid_name(user):
            raise ValueError("User-Name is not a user name")
        device = (
            device_of(str(request["Calling-Station-Id"][0]))
            if "Calling-Station-Id" in request
            else None
        )
        for ip in ips:
            if status == "Stop":
                if self.bindings.user_at(ip, now) == user:
                    self.bindings.unbind(ip)
                    log.info("RADIUS Stop: %s is no longer %s", ip, user)
                continue
            self.bindings.bind(ip, user, self.minutes, now, device)
            log.info("RADIUS %s: %s is %s for %d minutes", status, ip, user, self.minutes)
