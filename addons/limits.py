"""Limits: what one connection may make the proxy hold in memory.

mitmproxy holds a message's head until it is complete, with no limit (its
HTTP/1 reader says ``FIXME: protect against header size DoS``), and holds
every body whole unless ``stream_large_bodies`` is set. A few pupils sending
128 MiB of headers or a 512 MiB upload could take the school offline.

- **Bodies** larger than ``limits.stream_body_kb`` stream through for every
  group: the settings set mitmproxy's ``stream_large_bodies`` option
  (``proxy/master.py``), which streams a body whose length is known at the
  headers, and switches a chunked one to streaming once that much arrived.
  The download rules then run on the stream (``addons/downloads.py``).
- **Heads**: a request head not complete within ``limits.max_header_kb`` is
  answered ``431 Request Header Fields Too Large`` and the connection closed;
  an origin's response head over the limit closes the origin connection (the
  browser gets mitmproxy's 502). A chunked body's chunk-size line or trailer
  that goes on past the same limit closes the connection (h11's reader would
  hold it whole). Data a client sends while it waits for an answer
  (pipelining) is capped at the same size plus the streaming threshold.
- **Answered early**: a request the proxy answers itself (a block page) while
  its body is still arriving never streams (mitmproxy cannot stream a request
  it has answered); its body is read and dropped chunk by chunk, never held.
- **WebSocket messages**: mitmproxy holds a message whole until its last
  fragment; one over ``limits.max_websocket_message_kb`` closes the
  connection (code 1009). It also keeps every message of a connection in
  ``flow.websocket.messages`` for its whole life; only the latest is kept
  (no Schoolgate addon reads older ones).
- **Pages content analysis holds** (``addons/content.py``): a page of
  unknown length (chunked) is held up to ``schoolgate_content_hold_kb`` rather
  than the streaming threshold, and streams past it, scored as it goes by the
  content addon's streaming scorer (``CONTENT_STREAM``, set up here before the
  head is sent: it may decode the body).
- **Bodies the filter must rewrite** (a search form posted to an engine whose
  safe search is forced, ``addons/safesearch.py``) cannot stream, or they
  would pass unrewritten: one over the threshold is answered 413, fail closed.

mitmproxy 12 offers no option for the head limit nor a hook before a head is
complete, so ``install`` wraps four methods of its HTTP/1 layer and one of its
HTTP stream, and one of its WebSocket layer, as ``proxy/master.py`` does for
``reuse_port``. The wrappers only ever close a connection or drop bytes no one
will read; with the options at 0 they do nothing. HTTP/2 heads are bounded by
h2 itself (64 KiB of decoded headers, 64 CONTINUATION frames).
``tests/integration/test_limits.py`` proves each limit through the real
proxy, and fails if mitmproxy changes these methods.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http import HttpStream, _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    ErrorCode,
    RequestProtocolError,
    ResponseData,
    ResponseProtocolError,
)
from mitmproxy.proxy.layers.websocket import WebsocketEndHook, WebsocketLayer
from mitmproxy.utils import human
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

log = logging.getLogger("schoolgate.limits")
# The end of an HTTP/1 head, as h11 finds it (a blank line, with or without CR).
_HEAD_END = re.compile(rb"\n\r?\n")
# Set on a flow whose request body was read and dropped (answered by the proxy meanwhile).
DROPPED = "schoolgate.limits.body_dropped"
# Set on a flow whose request body an addon rewrites at `request`: it must not stream.
HOLD = "schoolgate.limits.hold_body"
# The safe-search addon's fact: the engines whose parameters it forces on this request.
SAFESEARCH = "schoolgate.safesearch"
# The content-analysis addon's fact: it holds this response (up to its own bound) to score it.
CONTENT_HOLD = "schoolgate.content_hold"
# Its way to score such a page as it streams once it is past that bound: called with no
# arguments, it sets the response's stream to its scorer (and may drop Content-Encoding).
CONTENT_STREAM = "schoolgate.content_stream_past_hold"


def _header_limit(layer: Any) -> int:
    kb = getattr(layer.context.options, "schoolgate_max_header_kb", 0)
    return int(kb) * 1024 if kb else 0


def _stream_limit(layer: Any) -> int:
    return human.parse_size(layer.context.options.stream_large_bodies) or 0


def head_too_large(buffered: bytes, limit: int) -> bool:
    """True when ``buffered`` holds more than ``limit`` bytes and no head ends within them."""
    return len(buffered) > limit and _HEAD_END.search(buffered, 0, limit + 3) is None


Steps = Generator[commands.Command, Any, None]


# mitmproxy's own methods, kept by ``install`` for the wrappers to call.
_ORIGINAL: dict[str, Any] = {}


def _server_heads(self: Any, event: events.ConnectionEvent) -> Steps:
    limit = _header_limit(self)
    if limit and isinstance(event, events.DataReceived) and head_too_large(bytes(self.buf), limit):
        peer = self.conn.peername[0]
        log.warning("request head over %d KiB from %s: answered 431", limit // 1024, peer)
        yield commands.SendData(
            self.conn,
            _http1.make_error_response(431, "The request's headers are too large."),
        )
        yield commands.CloseConnection(self.conn)
        self.state = self.done
        return
    yield from _ORIGINAL["server_read_headers"](self, event)


def _client_heads(self: Any, event: events.ConnectionEvent) -> Steps:
    limit = _header_limit(self)
    if (
        limit
        and isinstance(event, events.DataReceived)
        and self.stream_id is not None
        and head_too_large(bytes(self.buf), limit)
    ):
        yield commands.CloseConnection(self.conn)
        yield ReceiveHttp(
            ResponseProtocolError(
                self.stream_id,
                f"the origin's response head is over {limit // 1024} KiB",
                ErrorCode.GENERIC_SERVER_ERROR,
            )
        )
        self.state = self.done
        return
    yield from _ORIGINAL["client_read_headers"](self, event)


def _capped_wait(self: Any, event: events.Event) -> Steps:
    limit = _header_limit(self)
    if (
        limit
        and isinstance(event, events.DataReceived)
        and len(self.buf) > limit + _stream_limit(self)
    ):
        yield commands.CloseConnection(self.conn)
        error = (
            RequestProtocolError if isinstance(self, _http1.Http1Server) else ResponseProtocolError
        )
        why = "too much data while waiting for an answer"
        yield ReceiveHttp(error(self.stream_id, why, ErrorCode.GENERIC_CLIENT_ERROR))
        self.state = self.done
        return
    yield from _ORIGINAL["wait"](self, event)


def _capped_body(self: Any, event: events.Event) -> Steps:
    yield from _ORIGINAL["read_body"](self, event)
    limit = _header_limit(self)
    # Still in the body with more than a head's worth unread: a chunk-size line or a
    # trailer that does not end (body data itself is always taken out as it comes).
    if limit and self.state == self.read_body and len(self.buf) > limit:
        yield commands.CloseConnection(self.conn)
        yield ReceiveHttp(
            self.ReceiveProtocolError(
                self.stream_id,
                f"a chunk header or trailer over {limit // 1024} KiB",
                code=ErrorCode.GENERIC_CLIENT_ERROR,
            )
        )
        self.state = self.done


def _drop_answered(self: Any, request: bool) -> Generator[commands.Command, Any, bool]:
    limit = _stream_limit(self)
    held = self.flow.metadata.get(HOLD) and self.flow.response is None
    if request and held and limit and len(self.request_body_buf) > limit:
        self.flow.response = too_large()  # and dropped below, like any answered body
    if not request and limit and self.flow.metadata.get(CONTENT_HOLD):
        # Content analysis holds a page of unknown length up to its own bound, a setting.
        hold_kb = getattr(self.context.options, "schoolgate_content_hold_kb", 0)
        if len(self.response_body_buf) <= hold_kb * 1024:
            return False
        # Past it: what was held and the rest are scored as they go on (cut where they cross),
        # not passed unscored. The scorer is in place before the head goes to the client.
        start_scoring = self.flow.metadata.pop(CONTENT_STREAM, None)
        if callable(start_scoring) and self.flow.response is not None:
            start_scoring()
            if callable(self.flow.response.stream):
                held = bytes(self.response_body_buf)
                self.response_body_buf.clear()
                yield from self.start_response_stream()
                yield from self.handle_event(ResponseData(self.stream_id, held))
                return False
    if request and self.flow.response is not None and limit:
        # Answered by the proxy while the body arrives: keep none of it past the threshold.
        if len(self.request_body_buf) > limit:
            self.request_body_buf.clear()
            self.flow.metadata[DROPPED] = True
        return False
    stop: bool = yield from _ORIGINAL["check_body_size"](self, request)
    return stop


def _capped_messages(self: Any, event: events.Event) -> Steps:
    yield from _ORIGINAL["relay_messages"](self, event)
    kb = getattr(self.context.options, "schoolgate_max_websocket_message_kb", 0)
    if not kb or self._handle_event != self.relay_messages:
        return
    held = max(sum(map(len, ws.frame_buf)) for ws in (self.client_ws, self.server_ws))
    if held > kb * 1024:
        # One message larger than anyone needs, still arriving: end the connection.
        assert self.flow.websocket is not None
        self.flow.websocket.close_code = 1009  # RFC 6455: message too big
        self.flow.websocket.close_reason = f"a message over {kb} KiB"
        for ws in (self.client_ws, self.server_ws):
            ws.frame_buf = [b""]
            if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                yield ws.send2(CloseConnection(code=1009, reason="message too big"))
            yield commands.CloseConnection(ws.conn)
        yield WebsocketEndHook(self.flow)
        self.flow.live = False
        self._handle_event = self.done


def install() -> None:
    """Wrap mitmproxy's HTTP/1 head and body readers, its waiting state and its body-size
    check (once per process)."""
    if _ORIGINAL:
        return
    _ORIGINAL.update(
        server_read_headers=_http1.Http1Server.read_headers,
        client_read_headers=_http1.Http1Client.read_headers,
        wait=_http1.Http1Connection.wait,
        read_body=_http1.Http1Connection.read_body,
        check_body_size=HttpStream.check_body_size,
        relay_messages=WebsocketLayer.relay_messages,
    )
    _http1.Http1Server.read_headers = _server_heads  # type: ignore[method-assign]
    _http1.Http1Client.read_headers = _client_heads  # type: ignore[method-assign]
    _http1.Http1Connection.wait = _capped_wait  # type: ignore[method-assign]
    _http1.Http1Connection.read_body = _capped_body  # type: ignore[method-assign]
    HttpStream.check_body_size = _drop_answered  # type: ignore[method-assign]
    WebsocketLayer.relay_messages = _capped_messages  # type: ignore[method-assign]


def too_large() -> http.Response:
    """The answer to a body the filter must rewrite but that is too large to hold."""
    return http.Response.make(
        413,
        "The school's filter cannot check a form this large, so it was not sent.\n",
        {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"},
    )


class Limits:
    def __init__(self) -> None:
        install()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "schoolgate_max_header_kb",
            int,
            0,
            "Largest HTTP/1 message head, in KiB (431 for a request over it); 0: no limit.",
        )
        loader.add_option(
            "schoolgate_max_websocket_message_kb",
            int,
            0,
            "Largest WebSocket message, in KiB (the connection is closed); 0: no limit.",
        )

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # mitmproxy marks a request whose length is over stream_large_bodies for streaming
        # before any hook runs; an addon that then answered it (a block page) cannot stream
        # it (mitmproxy raises). Read it instead; the wrapper above drops what arrives.
        if flow.response is not None and flow.request.stream:
            flow.request.stream = False
        request = flow.request
        if (
            flow.response is None
            and flow.metadata.get(SAFESEARCH)
            and request.method == "POST"
            and "application/x-www-form-urlencoded" in request.headers.get("content-type", "")
        ):
            # The safe-search addon rewrites this form at `request`: it must arrive whole.
            flow.metadata[HOLD] = True
            if request.stream:
                request.stream = False
                flow.response = too_large()

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        # A chat left open all day would otherwise hold every message it ever carried.
        if flow.websocket is not None and len(flow.websocket.messages) > 1:
            del flow.websocket.messages[:-1]

    def configure(self, updated: set[str]) -> None:
        if "schoolgate_max_header_kb" in updated and ctx.options.schoolgate_max_header_kb < 0:
            raise exceptions.OptionsError("schoolgate_max_header_kb must be 0 or more")
