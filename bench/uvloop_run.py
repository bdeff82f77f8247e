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

import uvloop


def main() -> None:
    # asyncio.run, which mitmproxy and Schoolgate both call, asks the policy for its loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    target, args = sys.argv[1], sys.argv[2:]
    if target == "mitmdump":
        from mitmproxy.tools.main import mitmdump

        mitmdump(args)
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
