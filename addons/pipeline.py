"""Pipeline: Schoolgate's addons as one entry in mitmproxy's chain, and failing closed once.

mitmproxy calls every event (about ten per request) on every addon of its
chain, and for each addon it creates a coroutine, two generators and a
context manager, whether or not the addon has that hook. With Schoolgate's
addons as separate chain entries that fixed cost was the largest single item
of a py-spy profile under load. ``Pipeline`` is one chain entry: for each
hook it holds the children's bound methods, found once, and calls them in the
declared order (``schoolgate_addons``).

It keeps mitmproxy's semantics where they matter: each child hook runs in its
own ``try`` (one child's exception does not stop the next children, so a
failing protection cannot switch off the ones after it), async hooks are
awaited, a hook is sync when all its children's are (mitmproxy calls
``load``/``configure``/``done`` synchronously), and every child is
registered under its own name and with its commands, so
``ctx.master.addons.get("identify")`` still finds it.

Failure policy, written once here for every addon: mitmproxy logs a hook's
exception and lets the flow go on, which would mean "allow". So when any
child's hook on the request path raises, the pipeline fails closed for that
flow or connection (``fail_closed``): a request gets the 403 block page (a
plain 403 if even the page cannot be made), a CONNECT is refused, a layer
decision becomes a refused connection, a ClientHello's connection is marked
blocked, a server connection is not opened, a TCP or WebSocket flow is
killed. Each failure is logged (the first per addon and hook with its
traceback) and counted for ``schoolgate_hook_errors_total{addon,hook}``
through every child's ``hook_failed(addon, hook)``. Hooks off the request
path (``running``, ``done``, ``configure``...) are only logged, as mitmproxy
does.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import connection, ctx, exceptions, flow, hooks, http, tcp, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import commands, events, layer, server_hooks
from mitmproxy.proxy.context import Context
from mitmproxy.utils import asyncio_utils

from addons import facts
from blocklists.normalise import normalise_url
from proxy import blockpage, review
from proxy.decision import Decision

log = logging.getLogger("schoolgate.pipeline")

# Raised on purpose, to mitmproxy: a rejected option (rolled back) or a halt.
_PASS_ON = (exceptions.OptionsError, exceptions.AddonHalt)

# The hooks a flow or a connection waits on: an exception in any of them blocks.
REQUEST_PATH = frozenset(
    {
        "client_connected",
        "server_connect",
        "next_layer",
        "tls_clienthello",
        "tls_start_client",
        "tls_start_server",
        "http_connect",
        "http_connect_upstream",
        "requestheaders",
        "request",
        "responseheaders",
        "response",
        "tcp_start",
        "tcp_message",
        "websocket_start",
        "websocket_message",
        "udp_start",
        "udp_message",
        "dns_request",
        "dns_response",
    }
)
# A TLS record: fatal alert, access_denied (RFC 8446 §6.2).
ACCESS_DENIED = b"\x15\x03\x01\x00\x02\x02\x31"
PLAIN_403 = b"Blocked by the school's web filter.\n"


def _name(addon: Any) -> str:
    """The name mitmproxy registers an addon under (``addonmanager._get_name``)."""
    return str(getattr(addon, "name", type(addon).__name__.lower()))


# -- answering with a block ----------------------------------------------------------------


def plain_403(reference: str | None = None, *, close: bool = False) -> http.Response:
    """The last resort: a 403 that needs nothing that could fail."""
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    if reference:
        headers["X-Schoolgate-Reference"] = reference
    if close:
        headers["Connection"] = "close"
    return http.Response.make(403, PLAIN_403, headers)


def block_response(
    decision: Decision,
    *,
    school: str,
    reference: str,
    url: str | None,
    reason: str | None = None,
    console_url: str | None = None,
    token: str = "",
) -> http.Response:
    """The 403 block page for ``decision``; a plain 403 if the page itself cannot be made.

    A block must never turn into "no response" (and so an upstream request)
    because a template or an encoding failed.
    """
    try:
        page = blockpage.render(
            decision,
            school=school,
            reference=reference,
            url=None if decision.illegal else url,
            reason=reason,
            console_url=console_url,
            token=token,
        )
        return http.Response.make(
            403,
            page,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Schoolgate-Reference": reference,
            },
        )
    except Exception:
        # A warning: handled, and an error logged at start would stop the proxy (errorcheck).
        log.warning("the block page could not be made; a plain 403 is sent instead", exc_info=True)
        return plain_403(reference)


def review_token(
    loader: facts.Policies, flow: http.HTTPFlow, decision: Decision, reference: str, url: str | None
) -> str:
    """The signed token for this block's review form ("" for an illegal block: no form).

    Signed here, as the page is made, with what the proxy saw: the URL on the page, the
    category, the client's address and the named user (``proxy/review.py``). A key that
    cannot be read leaves the form unsigned (a post is then refused); the block stands.
    """
    if decision.illegal:
        return ""
    identity = facts.identity_of(flow)
    blocked = review.Blocked(
        url,
        decision.category,
        flow.client_conn.peername[0] if flow.client_conn.peername else None,
        identity.user if identity is not None else None,
    )
    try:
        key = review.signing_key(loader.filterset.settings.data_dir)
    except OSError:
        log.warning("the review key cannot be read; the review form goes out unsigned")
        return ""
    return review.sign(key, reference, blocked, int(time.time()))


def serve_block(
    loader: facts.Policies | None,
    flow: http.HTTPFlow,
    decision: Decision,
    reason: str | None = None,
    *,
    show_url: bool = True,
) -> http.Response:
    """Answer ``flow`` with the block page for ``decision``, its review form signed; record why.

    The one place a block page is made, for every addon that blocks and for failing
    closed (``loader`` None: no policy to name the school or sign with). Returns the
    response it set, for a caller that streams it (downloads).
    """
    reference = facts.reference_of(flow)
    if reference is None:
        reference = blockpage.new_reference()
        flow.metadata[facts.REFERENCE] = reference
    flow.metadata[facts.DECISION] = decision
    flow.metadata[facts.ANSWERED] = True
    try:
        url: str | None = None if decision.illegal else normalise_url(flow.request.pretty_url).entry
    except Exception:
        url = None
    school, console_url, token = "School", None, ""
    if loader is not None:
        try:
            school = loader.filterset.policy.school
            console_url = loader.filterset.settings.console_url
            token = review_token(loader, flow, decision, reference, url)
        except Exception:  # the block stands, in the plainest page that can still be made
            log.warning("the block page's details could not be read", exc_info=True)
    flow.response = block_response(
        decision,
        school=school,
        reference=reference,
        url=url if show_url else None,
        reason=reason,
        console_url=console_url,
        token=token,
    )
    return flow.response


class Refuse(layer.Layer):
    """The layer for a refused connection: optionally an alert, then close; ignore the rest."""

    def __init__(self, context: Context, alert: bytes = b"") -> None:
        super().__init__(context)
        self.alert = alert

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            if self.alert:
                yield commands.SendData(self.context.client, self.alert)
            yield commands.CloseConnection(self.context.client)


def drop_chosen_layers(nextlayer: layer.NextLayer) -> None:
    """Undo the layers another addon chose (they registered themselves in the context)."""
    chosen = nextlayer.layer
    stack = nextlayer.context.layers
    while chosen is not None:
        if chosen in stack:
            stack.remove(chosen)
        chosen = getattr(chosen, "child_layer", None)
    nextlayer.layer = None


def refuse_layer(nextlayer: layer.NextLayer, *, alert: bool = False) -> None:
    """Make this layer decision a refused connection (a TLS alert first when ``alert``)."""
    drop_chosen_layers(nextlayer)
    nextlayer.layer = Refuse(nextlayer.context, ACCESS_DENIED if alert else b"")


def fail_closed(hook: str, args: tuple[Any, ...], why: str) -> None:
    """Block whatever ``hook`` was called for, after one of its handlers raised."""
    if not args:
        return
    target = args[0]
    if isinstance(target, http.HTTPFlow):
        _fail_http(hook, target, why)
    elif isinstance(target, layer.NextLayer):
        refuse_layer(target)
    elif isinstance(target, tls.ClientHelloData):
        client = target.context.client
        identity = facts.client_identity(client)
        address = target.context.server.address
        hosts = (str(address[0]).lower(),) if address else ()
        facts.set_host_decision(
            client, facts.HostDecision(hosts, Decision.failed(identity, why), True, "SNI")
        )
        target.ignore_connection = False  # intercept, so every request inside is blocked
    elif isinstance(target, tls.TlsData):
        target.conn.error = f"blocked to be safe: {why}"
    elif isinstance(target, server_hooks.ServerConnectionHookData):
        target.server.error = f"blocked to be safe: {why}"  # the connection is not opened
    elif isinstance(target, tcp.TCPFlow | flow.Flow):
        with contextlib.suppress(exceptions.ControlException):
            target.kill()
    elif isinstance(target, connection.Connection):
        target.error = f"blocked to be safe: {why}"


def _hang_up(f: http.HTTPFlow) -> None:
    """End ``f``'s client connection as if the client had gone: the WebSocket layer then
    closes both sides. The event waits in the layer until the failing hook has returned."""
    try:
        handler = ctx.master.addons.get("proxyserver").connections.get(f.client_conn.id)
    except Exception:
        handler = None
    if handler is not None:
        asyncio_utils.create_task(
            handler.server_event(events.ConnectionClosed(f.client_conn)),
            name="schoolgate hang up",
            keep_ref=True,
        )


def _fail_http(hook: str, f: http.HTTPFlow, why: str) -> None:
    if hook in ("websocket_start", "websocket_message"):
        # mitmproxy does not stop a WebSocket killed in transit (mitmproxy#4711): the message
        # in hand would still be sent on. Drop it, and hang up on the client.
        if hook == "websocket_message" and f.websocket is not None and f.websocket.messages:
            f.websocket.messages[-1].drop()
        _hang_up(f)
        with contextlib.suppress(exceptions.ControlException):
            f.kill()
        return
    decision = Decision.failed(facts.identity_of(f), why)
    f.metadata[facts.DECISION] = decision
    f.metadata[facts.ANSWERED] = True
    if hook in ("http_connect", "http_connect_upstream"):
        f.response = plain_403(close=True)
        return
    if f.response is not None and f.response.stream:
        # Part of the body may be on its way: cut the transfer rather than finish it.
        with contextlib.suppress(exceptions.ControlException):
            f.kill()
        return
    try:
        loader: facts.Policies | None = ctx.master.addons.get("policyloader")
    except Exception:
        loader = None
    # No URL on the page: whatever failed may have been reading it (the form still has it).
    page = serve_block(loader, f, decision, show_url=False)
    if hook == "responseheaders":
        serve_at_headers(f, page)
    f.response = page


def serve_at_headers(flow: http.HTTPFlow, page: http.Response) -> None:
    """Answer ``flow`` with ``page`` from ``responseheaders``: the origin's body is still to
    come and would be read into the page, so the page goes once, as a stream, and every
    chunk of the body is dropped."""
    content = page.content or PLAIN_403
    sent = False

    def drop(chunk: bytes) -> list[bytes]:
        nonlocal sent
        if sent:
            return []
        sent = True
        return [content]

    page.stream = drop
    flow.response = page


# -- the pipeline --------------------------------------------------------------------------


class Pipeline:
    name = "schoolgate"

    def __init__(self, children: Sequence[Any]) -> None:
        self.children = list(children)
        self.hook_errors: dict[tuple[str, str], int] = {}
        self._listeners = [
            child.hook_failed
            for child in self.children
            if callable(getattr(child, "hook_failed", None))
        ]
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

    def failed(self, child: Any, hook: str, args: tuple[Any, ...], exc: Exception) -> None:
        """One child's hook raised: log, count, and fail closed if it is on the request path."""
        addon = _name(child)
        key = (addon, hook)
        count = self.hook_errors.get(key, 0) + 1
        self.hook_errors[key] = count
        if count == 1:
            # A warning, not an error: it is handled (blocked), and mitmproxy's errorcheck
            # would stop the whole proxy for an error logged while it is starting.
            log.warning(
                "addon %s: %s hook failed; blocked (later failures are only counted)",
                *key,
                exc_info=exc,
            )
        if hook not in REQUEST_PATH:
            return
        why = f"{addon} {hook}: {type(exc).__name__}"
        try:
            fail_closed(hook, args, why)
        except Exception:  # failing closed must not itself fail open: kill what we can
            log.warning("failing closed after %s failed; the flow is killed", why, exc_info=True)
            target = args[0] if args else None
            if isinstance(target, flow.Flow):
                with contextlib.suppress(Exception):
                    target.kill()
        for listener in self._listeners:
            try:
                listener(addon, hook)
            except Exception:
                log.warning("counting a hook error failed", exc_info=True)

    def _sync_dispatcher(self, hook: str, found: list[tuple[Any, Callable[..., Any]]]) -> Any:
        def dispatch(*args: Any) -> None:
            for child, func in found:
                try:
                    func(*args)
                except _PASS_ON:
                    raise
                except Exception as exc:
                    self.failed(child, hook, args, exc)

        return dispatch

    def _async_dispatcher(self, hook: str, found: list[tuple[Any, Callable[..., Any]]]) -> Any:
        async def dispatch(*args: Any) -> None:
            for child, func in found:
                try:
                    result = func(*args)
                    if inspect.isawaitable(result):
                        await _await(result)
                except _PASS_ON:
                    raise
                except Exception as exc:
                    self.failed(child, hook, args, exc)

        return dispatch


async def _await(result: Awaitable[Any]) -> None:
    await result
