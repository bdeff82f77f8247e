"""SafeSearchTunnel pins the safe-search names it is given, and touches no other connection."""

from __future__ import annotations

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from addons.safesearch_tunnel import SafeSearchTunnel, parse_addresses
from proxy.safesearch import tunnel_target


def _connect(addon: SafeSearchTunnel, address: tuple[str, int]) -> tuple[str, int] | None:
    server = connection.Server(address=address)
    addon.server_connect(server_hooks.ServerConnectionHookData(server, tflow.tclient_conn()))
    return server.address


def test_pinned_name_goes_to_its_address_and_keeps_the_port() -> None:
    """A pinned name's address replaces the name; without a pinned port, the port stays."""
    addon = SafeSearchTunnel()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            schoolgate_safesearch_addresses=(
                "forcesafesearch.google.com=216.239.38.120, strict.bing.com=[2001:db8::5]:8443"
            ),
        )
        assert _connect(addon, ("forcesafesearch.google.com", 443)) == ("216.239.38.120", 443)
        assert _connect(addon, ("strict.bing.com", 443)) == ("2001:db8::5", 8443)
        assert addon.tunnels == 2


def test_other_connections_are_left_alone() -> None:
    """An unpinned safe-search name is left to DNS; any other host is not touched or counted."""
    addon = SafeSearchTunnel()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, schoolgate_safesearch_addresses="strict.bing.com=127.0.0.9")
        assert _connect(addon, ("safe.duckduckgo.com", 443)) == ("safe.duckduckgo.com", 443)
        assert _connect(addon, ("www.google.com", 443)) == ("www.google.com", 443)
        assert addon.tunnels == 1


@pytest.mark.parametrize(
    "spec",
    ["www.google.com=1.2.3.4", "forcesafesearch.google.com", "strict.bing.com=1.2.3.4:99999"],
)
def test_bad_pins_are_refused(spec: str) -> None:
    """A pin for another name, without an address, or with a bad port is an option error."""
    addon = SafeSearchTunnel()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError):
        tctx.configure(addon, schoolgate_safesearch_addresses=spec)


def test_parse_addresses_reads_names_case_insensitively() -> None:
    """Names are matched in any case and with a trailing dot."""
    assert parse_addresses("Safe.DuckDuckGo.com.=10.0.0.1") == {
        "safe.duckduckgo.com": ("10.0.0.1", None)
    }


@pytest.mark.parametrize(
    ("host", "level", "target"),
    [
        ("www.youtube.com", "strict", "restrict.youtube.com"),
        ("www.youtube.com", "moderate", "restrictmoderate.youtube.com"),
        ("m.youtube.com", "moderate", "restrictmoderate.youtube.com"),
        ("www.google.de", "moderate", "forcesafesearch.google.com"),
        ("www.bing.com", "moderate", "strict.bing.com"),
        ("duckduckgo.com", "strict", "safe.duckduckgo.com"),
        ("mail.google.com", "strict", None),
        ("search.yahoo.com", "strict", None),
        ("lesson.example", "strict", None),
    ],
)
def test_tunnel_target_per_engine_and_level(host: str, level: str, target: str | None) -> None:
    """Each engine's locked service by level; none for other hosts or unlockable engines."""
    assert tunnel_target(host, level) == target  # type: ignore[arg-type]
