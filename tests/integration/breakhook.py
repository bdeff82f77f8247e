"""For tests only: ``schoolgate run`` with every request-path hook of every addon able to fail.

``python -m tests.integration.breakhook run ...`` runs the real command line
(with ``hostmap``'s host map, from ``SCHOOLGATE_TEST_HOSTMAP``) after
wrapping, on each of Schoolgate's addons, every hook on the request path
(``addons.pipeline.REQUEST_PATH``): the wrapper raises ``RuntimeError`` when
the flow or connection goes to ``ADDON--HOOK.break.example`` and otherwise
calls the real hook. One proxy process can so be made to fail in any one
hook of any one addon, chosen by the host a test asks for. Nothing in
Schoolgate's own code knows this module exists.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from mitmproxy import http, tcp, tls
from mitmproxy.proxy import layer, server_hooks

from proxy.filterset import Filterset

SUFFIX = ".break.example"


def break_host(addon: str, hook: str) -> str:
    return f"{addon}--{hook.replace('_', '-')}{SUFFIX}"


def _host(args: tuple[Any, ...]) -> str | None:
    """The host a hook's flow or connection goes to, however the hook is called."""
    target = args[0] if args else None
    address = None
    if isinstance(target, http.HTTPFlow):
        # The name the client asked for, from the Host header (or HTTP/2 authority): in a
        # tunnel, request.host is already the mapped 127.0.0.1 when requestheaders, request
        # and the WebSocket hooks run (the upstream connection is opened at CONNECT).
        return target.request.pretty_host
    if isinstance(target, layer.NextLayer | tls.ClientHelloData):
        address = target.context.server.address
    elif isinstance(target, tcp.TCPFlow):
        address = target.server_conn.address
    elif isinstance(target, server_hooks.ServerConnectionHookData):
        address = target.server.address
    return str(address[0]) if address else None


def breakable(children: list[Any]) -> list[Any]:
    """Wrap the request-path hooks of ``children`` (instance attributes shadow the methods)."""
    from addons.pipeline import REQUEST_PATH, _name

    for child in children:
        for hook in REQUEST_PATH:
            real = getattr(child, hook, None)
            if not callable(real):
                continue
            target = break_host(_name(child), hook)
            if inspect.iscoroutinefunction(real):

                async def wrapper(*args: Any, _real: Any = real, _target: str = target) -> None:
                    if _host(args) == _target:
                        raise RuntimeError(f"injected failure for {_target}")
                    await _real(*args)

            else:

                def wrapper(*args: Any, _real: Any = real, _target: str = target) -> None:  # type: ignore[misc]
                    if _host(args) == _target:
                        raise RuntimeError(f"injected failure for {_target}")
                    _real(*args)

            setattr(child, hook, wrapper)
    return children


def main() -> None:
    from proxy import master
    from tests.integration import hostmap

    real = master.schoolgate_addons  # type: ignore[attr-defined]

    import os

    from proxy import cli

    spec = os.environ.get("SCHOOLGATE_TEST_HOSTMAP", '{"hosts": [], "ports": {}}')

    def with_breakable_hooks(config_dir: Path, filterset: Filterset) -> list[Any]:
        # The host map goes last, after every Schoolgate addon's server_connect, not before
        # them as hostmap.main() puts it: else a server_connect hook (SafeSearchTunnel's)
        # would only ever see 127.0.0.1 and could never be made to fail.
        return [*breakable(real(config_dir, filterset)), hostmap.HostMap(spec)]

    master.schoolgate_addons = with_breakable_hooks  # type: ignore[attr-defined]
    cli.main()


if __name__ == "__main__":
    main()
