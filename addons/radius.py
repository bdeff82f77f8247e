"""RadiusListener: the UDP listener for the Wi-Fi's RADIUS accounting (``radius:`` in settings).

Started in ``running`` when the settings have ``radius``; each datagram is
handed to ``proxy.radius.Accounting`` and its reply, if any, sent back.
Several workers may listen on the one port (``SO_REUSEPORT``): the
bindings they write are the one shared file. A changed ``radius`` section
takes effect at the next start.
"""

from __future__ import annotations

import asyncio
import logging

from addons import facts
from proxy.logins import BINDINGS_FILE
from proxy.radius import Accounting

log = logging.getLogger("schoolgate.radius")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, accounting: Accounting) -> None:
        self.accounting = accounting
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply = self.accounting.handle(data, str(addr[0]))
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class RadiusListener:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.accounting: Accounting | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def running(self) -> None:
        settings = self.loader.filterset.settings
        if settings.radius is None or self._transport is not None:
            return
        try:
            self.accounting = Accounting.from_settings(
                settings.radius, settings.data_dir, BINDINGS_FILE
            )
            host, _, port = settings.radius.listen.rpartition(":")
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Protocol(self.accounting),  # type: ignore[arg-type]
                local_addr=(host.strip("[]"), int(port)),
                reuse_port=True,
            )
        except (OSError, ValueError) as exc:
            # Identity from the Wi-Fi is missing, not wrong: the filter still runs on addresses.
            log.error("RADIUS accounting not started on %s: %s", settings.radius.listen, exc)
            return
        self._transport = transport
        log.info("RADIUS accounting listening on %s", settings.radius.listen)

    def done(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
