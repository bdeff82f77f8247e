"""Thin mitmproxy addons, one concern each, and the order they run in.

Each hook reads the flow, calls the core in ``proxy``, and acts. The order
is declared once, in ``schoolgate_addons``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from addons.audit import Audit
from addons.browserhosts import BrowserHosts
from addons.circumvention import Circumvention
from addons.content import ContentAnalysis
from addons.directory import DirectoryLookup
from addons.downloads import Downloads
from addons.earlyconnect import EarlyConnect
from addons.filter import Filter
from addons.identify import Identify
from addons.images import ImageAnalysis
from addons.incidents import Incidents
from addons.limits import Limits
from addons.login import ProxyLogin
from addons.metrics import Metrics
from addons.overrides import Overrides
from addons.pipeline import Pipeline
from addons.policyload import PolicyLoader
from addons.radius import RadiusListener
from addons.redact import Redact
from addons.review import Review
from addons.safesearch import SafeSearch
from addons.safesearch_tunnel import SafeSearchTunnel
from addons.store import StoreWriter
from addons.tlspolicy import TlsPolicy
from addons.upstream import UpstreamChain
from addons.upstream_errors import UpstreamErrors
from proxy.filterset import Filterset

__all__ = ["Pipeline", "schoolgate_addons"]


def schoolgate_addons(config_dir: Path, filterset: Filterset) -> list[Any]:
    """Schoolgate's addons in request order."""
    loader = PolicyLoader(config_dir, filterset)
    store = StoreWriter(loader)
    login = ProxyLogin(loader)
    directory = DirectoryLookup(loader)
    identify = Identify(loader, login.login_of_client, directory.identity)
    return [
        # First: owns the filterset every later addon reads, and its hot reload.
        loader,
        # Loaded before any connection: mitmproxy accepts every host a browser sends (UTS #46).
        BrowserHosts(),
        # The one writer to the SQL store (spools while it is down); running before any recorder.
        store,
        # Keeps the overrides and suspensions in force in memory, for the filter's decisions.
        Overrides(loader, store),
        # Binds Wi-Fi addresses to users from RADIUS accounting, read back as logins below.
        RadiusListener(loader),
        # Checks proxy logins (407 on wrong ones) and trusted headers before anyone is named.
        login,
        # Asks the directory (in a thread) for a named user's groups, for Identify to read.
        directory,
        # Who is asking must be known before anything is decided.
        identify,
        # The one decision: on the CONNECT/SNI host first, then on each request; blocks.
        Filter(loader),
        # Right after the decision: an illegal host and its address are withheld from every
        # log line from now on, before mitmproxy can log a TLS failure naming them.
        Redact(),
        # The protections from here on only tighten what the filter let through, never open.
        # Tunnels to ports other than the group's, QUIC, DNS-over-HTTPS: before incidents
        # are raised, so a DNS-over-HTTPS request raises subvert_filtering like a DoH host.
        Circumvention(loader),
        # Reads the filter's decision: raises incidents (alerting at once for illegal hits)
        # and logs searches, through the store's writer; never changes a flow.
        Incidents(loader, store),
        # What a tunnel may carry, before any upstream connection: TLS (intercepted, passed
        # through undecrypted, or refused, on the filter's host decision), HTTP, or nothing.
        TlsPolicy(loader),
        # Where the TLS policy sent an undecrypted search engine's tunnel: pins those names.
        SafeSearchTunnel(),
        # After every addon that can refuse a CONNECT or decide its host: meets the server
        # before the client's TLS handshake only for a tunnel allowed on its names alone.
        EarlyConnect(loader),
        # On each allowed request: force the engine's safe mode, or block an unlockable engine.
        SafeSearch(loader),
        # At the response: file kinds and sizes the group may not download.
        Downloads(loader),
        # At the response, after downloads: scores the text of pages for the groups that ask.
        ContentAnalysis(loader),
        # After content analysis (which refuses learned images first): hands delivered images
        # to the background nudity pool; never holds or changes a response.
        ImageAnalysis(loader),
        # After every addon that can block: answers the block page's (signed) review form.
        Review(loader),
        # With a parent proxy: closes surplus parent connections, never touches a decision.
        UpstreamChain(),
        # When the site cannot be reached: the school's page instead of mitmproxy's bare 502.
        UpstreamErrors(loader),
        # After every addon that can answer or rewrite a request: a request answered while its
        # large body still arrives is read and dropped, not streamed (mitmproxy cannot stream it
        # then), and a search form safe search rewrites is held whole or refused, never streamed.
        Limits(),
        # Records what was decided, after the response is known (and each decided tunnel,
        # after TlsPolicy).
        Audit(loader),
        # After the decision and the response: only counts, never changes a flow.
        Metrics(
            loader,
            auth_failures=lambda: login.refused,
            login_lockouts=lambda: login.throttle.lockouts,
            writer=store.writer,
        ),
    ]
