"""BrowserHosts: mitmproxy accepts every host name a browser sends.

mitmproxy 12.2 checks request hosts with Python's ``idna`` codec, which is
IDNA2003: a punycode label that IDNA2003 would spell differently fails its
round trip, so ``CONNECT xn--fa-hia.de:443`` and ``GET http://xn--fa-hia.de/``
(``faß.de`` as every browser spells it, UTS #46 non-transitional) are
answered 400 "Bad HTTP request line", a TLS SNI of that name is read as no
SNI at all, and a valid host label such as ``xn--a`` or ``xn--0`` fails the
same way. The checks live in ``mitmproxy.net.check.is_valid_host`` (used by
the HTTP/1 request-line reader through ``mitmproxy.net.http.url.parse`` and
``parse_authority``, by HTTP/2's ``:authority``, by ``ClientHello.sni`` and
by server specs) and in ``parse_authority``'s ``bytes`` branch, which also
decodes an ASCII host to Unicode with the same codec (so a name mitmproxy
accepts could be re-encoded to another host when it connects).

``load`` replaces those two functions, once per process, with versions that
keep mitmproxy's answer and add: an ASCII host the WHATWG host parser
(``ada-url``, what browsers run) accepts is valid, and an ASCII authority is
returned as sent, not decoded. Nothing is loosened that a browser would not
send: spaces, controls, URL delimiters and bad IPv6 are still refused.

The report for mitmproxy upstream is in the README ("Browser-exact hosts").
``tests/unit/blocklists/test_conformance.py`` and
``tests/integration/test_hosts.py`` fail if a mitmproxy upgrade changes what
this relies on.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Callable
from typing import Any

from ada_url import parse_url
from mitmproxy.net import check
from mitmproxy.net.http import url as mitmproxy_url

from proxy.memo import LONGEST_HOST, short_keys

_DELIMITERS = frozenset("/\\?#@:[] \t\r\n")
# Hosts answered from memory: mitmproxy asks about the same host several times a request
# (request line, Host header, pretty_host), and a school asks about the same few thousand
# hosts all day. An ada parse is about 5 µs; the bench's HTTP row (10,000 hosts in turn)
# spent about 5% of the event loop's time here. The answers are pure functions of the
# host, so a bounded LRU cache changes nothing but the time; a pupil sending random
# names only evicts entries. Only names up to DNS's length are kept (proxy.memo).
HOST_CACHE = 32_768
_original_is_valid_host: Callable[[Any], bool] = check.is_valid_host
_original_parse_authority: Callable[[Any, bool], tuple[str, int | None]] = (
    mitmproxy_url.parse_authority
)
_original_parse: Callable[[Any], tuple[bytes, bytes, int, bytes]] = mitmproxy_url.parse


@short_keys(maxsize=HOST_CACHE, longest=LONGEST_HOST)
def browser_accepts(host: str | bytes) -> bool:
    """Whether a browser could send this ASCII host (a name, IPv4 or a bare IPv6 address)."""
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not host or not host.isascii():
        return False
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    if any(ch in _DELIMITERS or ch < " " or ch == "\x7f" for ch in host):
        return False
    try:
        parse_url(f"http://{host}/", attributes=("hostname",))
    except ValueError:
        return False
    return True


def is_valid_host(host: str | bytes) -> bool:
    """mitmproxy's check, plus every ASCII host the WHATWG host parser accepts."""
    return _original_is_valid_host(host) or browser_accepts(host)


@short_keys(maxsize=HOST_CACHE, longest=LONGEST_HOST)
def _ascii_host(host: str) -> str | None:
    """A host as a browser would send it: ASCII as given, Unicode mapped by UTS #46; or None."""
    if host.isascii():
        return host if browser_accepts(host) else None
    try:
        found = str(parse_url(f"http://{host}/", attributes=("hostname",))["hostname"])
    except (ValueError, UnicodeError):
        return None
    return found if browser_accepts(found) else None


def parse_authority(authority: str | bytes, check: bool) -> tuple[str, int | None]:
    """mitmproxy's ``parse_authority`` with browser hosts, and the host always ASCII.

    An ASCII host is returned as sent. A raw UTF-8 host (no browser sends one)
    is mapped as a browser would map it: left to mitmproxy, it would be kept in
    Unicode and re-encoded by IDNA2003 when connecting, so ``faß.de`` would be
    decided as one host and connected to as another (``fass.de``).
    """
    if isinstance(authority, bytes):
        try:
            text = authority.decode("utf-8")
        except UnicodeDecodeError:
            return _original_parse_authority(authority, check)
    else:
        text = authority
    m = mitmproxy_url._authority_re.match(text)
    host = m["host"] if m else ""
    port = int(m["port"]) if m and m["port"] else None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    found = _ascii_host(host) if host else None
    if found is None or (port is not None and not 0 <= port <= 65535):
        if check:
            raise ValueError(f"bad authority {text!r}")
        return text, None
    return found, port


def parse(url: str | bytes) -> tuple[bytes, bytes, int, bytes]:
    """mitmproxy's ``url.parse``, for a host a browser sends that its IDNA2003 encoding refuses.

    The HTTP/1 reader calls it on every absolute-form request line as a last
    check (``host.encode("idna")`` fails on an empty label such as ``-..``).
    """
    try:
        return _original_parse(url)
    except ValueError:
        text = url.decode("ascii") if isinstance(url, bytes) else url
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname or ""
        if not text.isascii() or not browser_accepts(host):
            raise
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
        if not path.startswith("/"):
            path = "/" + path
        return parts.scheme.encode(), host.encode(), port, path.encode()


def install() -> None:
    """Replace mitmproxy's host checks in this process (idempotent)."""
    check.is_valid_host = is_valid_host
    # url.py imported it by name, so its own reference is replaced too.
    mitmproxy_url.is_valid_host = is_valid_host  # type: ignore[attr-defined]
    mitmproxy_url.parse_authority = parse_authority
    mitmproxy_url.parse = parse


class BrowserHosts:
    """Installs the host checks when mitmproxy loads the addons, before any connection."""

    def load(self, loader: object) -> None:
        install()
