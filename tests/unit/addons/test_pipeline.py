"""Pipeline: Schoolgate's addons as one chain entry, in order, each hook isolated."""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
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
