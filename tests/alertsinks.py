"""Local receivers for alerts in tests: an SMTP server (aiosmtpd) and a webhook, on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MailSink:
    port: int
    messages: list[Message] = field(default_factory=list)
    refuse: int = 0  # answer this many messages with a temporary failure first

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 try again later"
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"


@dataclass
class WebhookSink:
    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    fail: int = 0  # answer this many calls with 503 first


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    """An SMTP server on 127.0.0.1 that keeps what it is sent."""
    sink = MailSink(_free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""
    sink = WebhookSink("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if sink.fail > 0:
                sink.fail -= 1
                self.send_response(503)
            else:
                sink.calls.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
