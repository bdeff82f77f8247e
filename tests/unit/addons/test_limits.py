"""The Limits addon: what one connection may make the proxy hold."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addons.limits import HOLD, SAFESEARCH, Limits, head_too_large


def test_a_head_is_too_large_only_when_it_does_not_end_within_the_limit() -> None:
    """A complete head followed by body bytes is fine; an unfinished head past the limit is not."""
    assert not head_too_large(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + b"x" * 5000, 1024)
    assert not head_too_large(b"GET / HTTP/1.1\r\nX: " + b"a" * 500, 1024)
    assert head_too_large(b"GET / HTTP/1.1\r\nX: " + b"a" * 5000, 1024)
    assert head_too_large(b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n", 1024)


def test_an_answered_request_is_not_streamed() -> None:
    """A request a block page answered is read and dropped, not streamed (mitmproxy cannot)."""
    limits = Limits()
    with taddons.context(limits):
        flow = tflow.tflow()
        flow.request.stream = True
        flow.response = http.Response.make(403)
        limits.requestheaders(flow)
        assert flow.request.stream is False


def test_a_search_form_that_safe_search_rewrites_is_held_or_refused() -> None:
    """A locked engine's form post is held whole; one already marked to stream gets 413."""
    limits = Limits()
    with taddons.context(limits):
        flow = tflow.tflow()
        flow.request.method = "POST"
        flow.request.headers["content-type"] = "application/x-www-form-urlencoded"
        flow.metadata[SAFESEARCH] = ("lock",)
        limits.requestheaders(flow)
        assert flow.metadata[HOLD] is True
        assert flow.response is None
        flow.request.stream = True
        limits.requestheaders(flow)
        assert flow.response is not None
        assert flow.response.status_code == 413


def test_only_the_latest_websocket_message_is_kept() -> None:
    """mitmproxy's per-connection list of WebSocket messages does not grow without end."""
    limits = Limits()
    with taddons.context(limits):
        flow = tflow.twebsocketflow()
        assert flow.websocket is not None
        assert len(flow.websocket.messages) > 1
        last = flow.websocket.messages[-1]
        limits.websocket_message(flow)
        assert flow.websocket.messages == [last]
