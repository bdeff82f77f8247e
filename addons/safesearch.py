"""SafeSearch: lock safe search on for groups with ``safe_search: moderate`` or ``strict``.

Each request to a search engine gets the engine's safe-mode parameter,
header or cookie value forced (``proxy/safesearch.py`` says which); whatever
the user sent for the same setting is replaced. Engines that cannot be
locked are blocked for those groups. Both the address a request goes to and
its ``Host`` header are checked, so a mismatched ``Host`` cannot dodge it.

Failure policy: if locking fails, the exception reaches the pipeline, which
blocks the request (a search that might not be safe is not sent).
"""

from __future__ import annotations

from typing import cast

from mitmproxy import http
from mitmproxy.net.http.url import parse_authority

from addons import facts
from addons.pipeline import serve_block
from blocklists.normalise import BadURL, normalise_host
from proxy.decision import Decision
from proxy.memo import LONGEST_HOST, short_keys
from proxy.safesearch import Level, Lock, force_cookies, force_params, lock_for

SAFESEARCH = "schoolgate.safesearch"


@short_keys(maxsize=16_384, longest=LONGEST_HOST)
def _lock_of(raw: str, level: Level) -> Lock | None:
    """The lock for a host as the request names it (any case, a trailing dot), if any.

    Cached: every allowed request asks, about the same hosts all day, and normalising and
    matching the engines' domains cost about 20 µs a request (python -m bench.proxies,
    the all-protections row). A pure function of its arguments, and ``Lock`` is frozen.
    Only names up to DNS's length are kept (a Host header may be 64 KiB long).
    """
    try:
        return lock_for(normalise_host(raw), level)
    except BadURL:
        return None


class SafeSearch:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader

    def _locks(self, flow: http.HTTPFlow, level: Level) -> list[Lock]:
        hosts = {flow.request.host}
        if flow.request.host_header:
            hosts.add(parse_authority(flow.request.host_header, check=False)[0])
        return [lock for raw in hosts if (lock := _lock_of(raw, level)) is not None]

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if facts.answered_early(flow):
            return
        identity = facts.identity_of(flow)
        if identity is None:
            raise RuntimeError("no identity")
        group = self.loader.filterset.policy.groups[identity.group]
        if group.safe_search == "off":
            return
        level = cast(Level, group.safe_search)
        for lock in self._locks(flow, level):
            if lock.blocked:
                rule = (
                    f"safe search: {lock.engine} cannot be locked to safe search, "
                    f"so it is blocked for group {group.name}"
                )
                serve_block(
                    self.loader,
                    flow,
                    Decision.block(identity, rule, by="safesearch"),
                    "This search engine cannot be kept in safe search mode, so the school's "
                    "filter blocks it. Use Google, Bing or DuckDuckGo instead.",
                )
                return
            self._apply(flow, lock)

    def _apply(self, flow: http.HTTPFlow, lock: Lock) -> None:
        request = flow.request
        if lock.params:
            request.query = force_params(request.query.items(multi=True), lock.params)
        for name, value in lock.headers:
            request.headers[name] = value  # replaces every spelling the client sent
        cookies = force_cookies(request.cookies.items(multi=True), lock.cookies)
        if cookies is not None:
            request.cookies = cookies
        engines = flow.metadata.get(SAFESEARCH, ())
        flow.metadata[SAFESEARCH] = (*engines, lock)

    def request(self, flow: http.HTTPFlow) -> None:
        """A search posted as a form (DuckDuckGo's HTML version) gets the same parameters."""
        locks = flow.metadata.get(SAFESEARCH, ())
        if facts.answered_early(flow) or not locks or flow.request.method != "POST":
            return
        content_type = flow.request.headers.get("content-type", "").lower()
        if "application/x-www-form-urlencoded" not in content_type:
            return
        for lock in locks:
            if lock.params:
                form = flow.request.urlencoded_form.items(multi=True)
                flow.request.urlencoded_form = force_params(form, lock.params)
