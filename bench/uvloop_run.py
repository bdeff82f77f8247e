"""Run mitmdump or ``schoolgate`` with uvloop as asyncio's event loop, for ``make bench``.

``python -m bench.uvloop_run mitmdump ARGS`` or ``python -m bench.uvloop_run proxy ARGS``.
The product does not use uvloop; the bench measures what it would gain (issue #18)
beside the same commands on the standard loop, in the same run. One process only:
``--workers`` starts its workers without this wrapper.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
from typing import Any

import uvloop

_EAGER = asyncio.eager_task_factory


def _eager_task_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    """Python 3.13's eager task factory, taking the ``eager_start`` uvloop 0.23 passes.

    mitmproxy installs ``asyncio.eager_task_factory`` on its loop; uvloop 0.23 calls a
    task factory with ``eager_start=`` (the Python 3.14 signature), which 3.13's
    factory refuses, so mitmproxy would not start. Eager it stays: the comparison is
    the loop, not the task factory.
    """
    kwargs.pop("eager_start", None)
    return _EAGER(loop, coro, **kwargs)


def main() -> None:
    # asyncio.run, which mitmproxy and Schoolgate both call, asks the policy for its loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.eager_task_factory = _eager_task_factory  # type: ignore[assignment]
    target, args = sys.argv[1], sys.argv[2:]
    if target == "mitmdump":
        from mitmproxy.tools.main import mitmdump

        mitmdump(args)
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
