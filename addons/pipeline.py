"""Pipeline: Schoolgate's addons as one entry in mitmproxy's chain, same order, less dispatch.

mitmproxy calls every event (about ten per request) on every addon of its
chain, and for each addon it creates a coroutine, two generators and a
context manager, whether or not the addon has that hook. With Schoolgate's
addons as separate chain entries that fixed cost was the largest single item
of a py-spy profile under load. ``Pipeline`` is one chain entry: for each
hook it holds the children's bound methods, found once, and calls them in the
declared order (``schoolgate_addons``).

It keeps mitmproxy's semantics where they matter: each child hook runs in its
own ``try`` (one child's exception is logged, as mitmproxy's ``safecall`` does,
and the next children still run, so a failing protection cannot switch off
the ones after it), async hooks are awaited, a hook is sync when all its
children's are (mitmproxy calls ``load``/``configure``/``done`` synchronously),
and every child is registered under its own name and with its commands, so
``ctx.master.addons.get("identify")`` still finds it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import ctx, exceptions, hooks
from mitmproxy.addonmanager import Loader

log = logging.getLogger("schoolgate.pipeline")


# Raised on purpose, to mitmproxy: a rejected option (rolled back) or a halt.
_PASS_ON = (exceptions.OptionsError, exceptions.AddonHalt)


def _name(addon: Any) -> str:
    """The name mitmproxy registers an addon under (``addonmanager._get_name``)."""
    return str(getattr(addon, "name", type(addon).__name__.lower()))


def _failed(child: Any, hook: str) -> None:
    log.exception("addon %s: %s hook failed", _name(child), hook)


class Pipeline:
    name = "schoolgate"

    def __init__(self, children: Sequence[Any]) -> None:
        self.children = list(children)
        for hook in hooks.all_hooks:
            found = [
                (child, getattr(child, hook))
                for child in self.children
                if callable(getattr(child, hook, None))
            ]
            if hook == "load" or not found:
                continue
            if any(inspect.iscoroutinefunction(func) for _, func in found):
                setattr(self, hook, self._async_dispatcher(hook, found))
            else:
                setattr(self, hook, self._sync_dispatcher(hook, found))

    def load(self, loader: Loader) -> None:
        registry = ctx.master.addons
        for child in self.children:
            name = _name(child)
            if name in registry.lookup:
                raise exceptions.AddonManagerError(f"An addon called '{name}' already exists.")
            registry.lookup[name] = child
            if callable(getattr(child, "load", None)):
                child.load(loader)
            ctx.master.commands.collect_commands(child)

    @staticmethod
    def _sync_dispatcher(hook: str, found: list[tuple[Any, Callable[..., Any]]]) -> Any:
        def dispatch(*args: Any) -> None:
            for child, func in found:
                try:
                    func(*args)
                except _PASS_ON:
                    raise
                except Exception:
                    _failed(child, hook)

        return dispatch

    @staticmethod
    def _async_dispatcher(hook: str, found: list[tuple[Any, Callable[..., Any]]]) -> Any:
        async def dispatch(*args: Any) -> None:
            for child, func in found:
                try:
                    result = func(*args)
                    if inspect.isawaitable(result):
                        await _await(result)
                except _PASS_ON:
                    raise
                except Exception:
                    _failed(child, hook)

        return dispatch


async def _await(result: Awaitable[Any]) -> None:
    await result
