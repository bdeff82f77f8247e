"""Pipeline: Schoolgate's addons as one chain entry, in order, each hook isolated."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from addons.pipeline import Pipeline


class Recorder:
    def __init__(self, name: str, calls: list[str], fail: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.calls.append(self.name)
        if self.fail:
            raise RuntimeError("boom")


class AsyncRecorder(Recorder):
    async def requestheaders(self, flow: http.HTTPFlow) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(self.name)


class WithOption:
    def load(self, loader: Loader) -> None:
        loader.add_option("pipeline_test_limit", int, 1, "a test option")

    def configure(self, updated: set[str]) -> None:
        if "pipeline_test_limit" in updated and ctx.options.pipeline_test_limit < 0:
            raise exceptions.OptionsError("pipeline_test_limit must not be negative")


def test_children_run_in_order_and_async_ones_are_awaited() -> None:
    """Sync and async hooks of the children run in the declared order."""
    calls: list[str] = []
    pipeline = Pipeline([Recorder("a", calls), AsyncRecorder("b", calls), Recorder("c", calls)])
    with taddons.context(pipeline):
        asyncio.run(pipeline.requestheaders(tflow.tflow()))  # type: ignore[attr-defined]
    assert calls == ["a", "b", "c"]


def test_a_failing_child_does_not_stop_the_next(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in one child is logged and the later children still run."""
    calls: list[str] = []
    pipeline = Pipeline([Recorder("a", calls, fail=True), Recorder("b", calls)])
    with taddons.context(pipeline):
        pipeline.requestheaders(tflow.tflow())  # type: ignore[attr-defined]
    assert calls == ["a", "b"]
    assert "addon a: requestheaders hook failed" in caplog.text


def test_children_are_registered_by_name_with_their_options() -> None:
    """Each child is found by its own name, and its options exist and are checked."""
    calls: list[str] = []
    child = Recorder("identify", calls)
    with taddons.context(Pipeline([child, WithOption()])) as tctx:
        assert ctx.master.addons.get("identify") is child
        assert ctx.master.addons.get("withoption") is not None
        tctx.configure(ctx.master.addons.get("withoption"), pipeline_test_limit=5)
        assert ctx.options.pipeline_test_limit == 5
        with pytest.raises(exceptions.OptionsError):
            ctx.options.update(pipeline_test_limit=-1)
        assert ctx.options.pipeline_test_limit == 5


def test_hooks_no_child_has_are_absent() -> None:
    """The pipeline answers only the hooks some child implements."""
    pipeline = Pipeline([Recorder("a", [])])
    assert callable(getattr(pipeline, "requestheaders", None))
    assert getattr(pipeline, "response", None) is None


class Failing:
    """Every request-path hook it has raises."""

    name = "failing"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        raise RuntimeError("boom")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        raise RuntimeError("boom")

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        raise RuntimeError("boom")

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        raise RuntimeError("boom")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        raise RuntimeError("boom")


def out(chunks: Iterable[bytes] | bytes) -> bytes:
    return chunks if isinstance(chunks, bytes) else b"".join(chunks)


class Counting:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def hook_failed(self, addon: str, hook: str) -> None:
        self.seen.append((addon, hook))


def test_a_failure_at_the_response_headers_never_delivers_the_origin_body() -> None:
    """The block page replaces the response, and every chunk of the origin's body is dropped."""
    counting = Counting()
    pipeline = Pipeline([Failing(), counting])
    flow = tflow.tflow(resp=True)
    with taddons.context(pipeline):
        pipeline.responseheaders(flow)  # type: ignore[attr-defined]
    assert flow.response is not None
    assert flow.response.status_code == 403
    stream = flow.response.stream
    assert callable(stream)
    assert b"origin secret" not in out(stream(b"origin secret"))
    assert out(stream(b"more origin")) == b""
    assert counting.seen == [("failing", "responseheaders")]


def test_a_failure_at_connect_refuses_the_tunnel() -> None:
    """An exception at CONNECT is a 403 to the CONNECT: no tunnel opens."""
    pipeline = Pipeline([Failing()])
    flow = tflow.tflow()
    flow.request.method = "CONNECT"
    with taddons.context(pipeline):
        pipeline.http_connect(flow)  # type: ignore[attr-defined]
    assert flow.response is not None
    assert flow.response.status_code == 403


def test_a_failure_before_a_server_connection_stops_it() -> None:
    """An exception in server_connect sets the server's error, so mitmproxy does not connect."""
    pipeline = Pipeline([Failing()])
    data = server_hooks.ServerConnectionHookData(tflow.tserver_conn(), tflow.tclient_conn())
    with taddons.context(pipeline):
        pipeline.server_connect(data)  # type: ignore[attr-defined]
    assert data.server.error is not None


def test_a_failure_on_a_tcp_message_kills_the_flow() -> None:
    """Raw TCP the filter cannot check does not go on."""
    pipeline = Pipeline([Failing()])
    flow = tflow.ttcpflow()
    with taddons.context(pipeline):
        pipeline.tcp_message(flow)  # type: ignore[attr-defined]
    assert flow.error is not None


def test_a_failure_on_a_websocket_message_drops_it() -> None:
    """Killing alone would not stop it (mitmproxy sends a killed WebSocket's message on)."""
    pipeline = Pipeline([Failing()])
    flow = tflow.twebsocketflow()
    assert flow.websocket is not None
    with taddons.context(pipeline):
        pipeline.websocket_message(flow)  # type: ignore[attr-defined]
    assert flow.websocket.messages[-1].dropped
    assert flow.error is not None


def test_the_block_page_failing_still_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """If rendering the page raises, a plain 403 is the answer, never none."""

    def broken(*args: object, **kwargs: object) -> str:
        raise KeyError("template")

    monkeypatch.setattr("proxy.blockpage.render", broken)
    pipeline = Pipeline([Failing()])
    flow = tflow.tflow(resp=True)
    with taddons.context(pipeline):
        pipeline.responseheaders(flow)  # type: ignore[attr-defined]
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert b"Blocked by the school's web filter" in (flow.response.content or b"")
