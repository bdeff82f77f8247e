"""URL normalisation: one canonical host and path for every spelling of a URL.

Evasion lives here. Every URL the proxy sees, and every entry a list holds,
goes through these functions, so that ``HTTP://WWW.Example.COM.:80/a/../b``
and ``http://www.example.com/b`` are the same string to the index.

The rules follow what browsers do (the WHATWG URL standard) wherever a
browser would reach the same server by another spelling, and lean towards
"the same" wherever origin servers disagree: two spellings that one server
might treat alike get one key, so the worst a doubtful merge can do is block
a little more, never open a listed site.

- host: parsed by the WHATWG host parser browsers use (``ada-url``): the
  percent-escapes decoded, IDN mapped by UTS #46 *non-transitional*
  processing as browsers do (``faß.de`` is ``xn--fa-hia.de``, a different
  host from ``fass.de``; the stdlib codec's IDNA2003 made them one),
  ``xn--`` labels checked, IPv4 in any notation browsers accept as dotted
  decimal. Then, for the index: lower-case ASCII, no trailing dot, no
  userinfo; IPv6 compressed, without brackets; ``::ffff:a.b.c.d`` and NAT64
  ``64:ff9b::a.b.c.d`` unmapped to IPv4 (the same server, as Safe Browsing
  canonicalises them). A host browsers accept but DNS cannot resolve (an
  empty label, a label over 63 or a name over 253 characters, characters
  outside letters/digits/``-``/``_``) is kept as it is in a request, and
  refused in a list entry. ``www.`` is kept: it is a different host, and a host entry already
  covers its subdomains.
- path: percent-decoded once, ``\\`` as ``/``, lower-cased, repeated
  slashes collapsed, dot segments removed, then re-encoded one fixed way.
- query: kept as given, not used for matching. Fragment: dropped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from ada_url import HostType, parse_url


class BadURL(ValueError):
    """A URL or list entry that cannot be made canonical."""


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A URL as the index sees it.

    ``host`` is lower-case ASCII (punycode), no trailing dot, IPv4 in dotted
    decimal, IPv6 without brackets; ``path`` starts with ``/``, has no dot
    segments and only the percent-escapes that must stay (upper-case hex),
    lower-cased for matching; ``query`` is kept as given (no leading ``?``).
    """

    scheme: str
    host: str
    port: int
    path: str
    query: str = ""

    @property
    def entry(self) -> str:
        """The form list entries take: ``host/path`` (no scheme, port or query)."""
        return self.host + self.path


# Schemes we know the default port of; any other scheme is refused.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}

# Browsers strip leading and trailing C0 controls and spaces (WHATWG); we also
# strip Unicode whitespace and the BOM, which turn up in pasted list lines.
_STRIP = (
    "".join(map(chr, range(0x21)))
    + "".join(ch for ch in map(chr, range(0x80, 0x3001)) if ch.isspace())
    + "\ufeff"
)
# Browsers remove every tab and newline, wherever it is, before parsing.
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")

# An already-canonical domain name: LDH labels (plus "_", which real hosts
# use) of 1-63 characters, none a punycode label (those are round-tripped),
# and a last label that cannot be read as an IPv4 number.
_PLAIN_HOST = re.compile(r"(?:(?!xn--)[a-z0-9_-]{1,63}\.)*(?!xn--)[a-z_-][a-z0-9_-]{0,62}")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# Characters that end a host in a URL; none may appear inside one.
_DELIMITERS = frozenset("/\\?#")
_HOST_PARTS = ("hostname", "host_type")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Characters a canonical path keeps as they are: RFC 3986 unreserved,
# sub-delims, ":" and "@" (and "/" between segments). Everything else is
# percent-encoded as UTF-8 with upper-case hex.
_PATH_SAFE = "/!$&'()*+,;=:@"
# An already-canonical path: lower-case, only safe characters, no empty,
# "." or ".." segments (a trailing "/" is allowed).
_PLAIN_PATH = re.compile(r"/|(?:/(?!\.\.?(?:/|\Z))[-a-z0-9._~!$&'()*+,;=:@]+)+/?")


def _clean(raw: str) -> str:
    """Strip surrounding whitespace and remove embedded tabs and newlines, as browsers do."""
    text = raw.strip(_STRIP)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_TAB_NEWLINE)
    return text


def normalise_host(raw: str) -> str:
    """Canonical form of a host name or IP literal; raises ``BadURL``.

    Accepts what a URL's authority holds, less the port: an optional
    ``user:pass@``, a name (any case, percent-encoded or Unicode), an IPv4
    address in any notation, or an IPv6 address with or without brackets.
    """
    return _host(_clean(raw), raw)


def _host(text: str, raw: str) -> str:
    """``normalise_host`` after cleaning (``normalise_url`` cleans the whole URL once)."""
    if text.isascii():
        host = text.lower()
        if host.endswith("."):
            host = host.rstrip(".")
        if len(host) <= 253 and _PLAIN_HOST.fullmatch(host):
            return host
    return _slow_host(text, raw)


def _slow_host(text: str, raw: str) -> str:
    """Everything ``_host`` cannot settle with one regex match: the WHATWG host parser."""
    at = text.rfind("@")
    if at != -1:
        text = text[at + 1 :]
    if text.startswith("["):
        if not text.endswith("]"):
            raise BadURL(f"unclosed '[' in host {raw!r}")
        return _ipv6(text[1:-1], raw)
    if ":" in text:
        # mitmproxy gives IPv6 hosts without their brackets.
        return _ipv6(text, raw)
    if any(ch in _DELIMITERS for ch in text):
        # Forbidden in a host (WHATWG); refused here so that wrapping the host
        # in a URL below cannot change where it ends.
        raise BadURL(f"host {raw!r} contains a URL delimiter")
    try:
        # The WHATWG host parser, as browsers run it: percent-decoding, UTS #46
        # non-transitional mapping and checks, forbidden code points, and
        # "ends in a number" hosts read as IPv4 in any notation.
        parsed = parse_url(f"http://{text}/", attributes=_HOST_PARTS)
    except (ValueError, UnicodeError):
        raise BadURL(f"host {raw!r} is not a host a browser accepts") from None
    host = str(parsed["hostname"])
    if parsed["host_type"] == HostType.IPV4:
        return host
    host = host.rstrip(".")
    if not host:
        raise BadURL(f"empty host in {raw!r}")
    return host


def _dns_name(host: str, raw: str) -> None:
    """Refuse a list entry whose host no DNS name can be (``BadURL``); IP addresses pass.

    Browsers accept such hosts (``a..b``, ``*.example``, 64-character labels)
    and so do requests here, keyed as they are; DNS never resolves them, so
    no server is reached by them. In a list they are list syntax read wrongly
    (``*.`` or a leading ``.``) or a typo, and the reader says so.
    """
    if ":" in host or (host[-1:].isdigit() and host.replace(".", "").isdigit()):
        return
    if len(host) > 253:
        raise BadURL(f"host longer than 253 characters: {raw!r}")
    bad = set(host) - _HOST_CHARS
    if bad:
        raise BadURL(f"host {raw!r} contains {''.join(sorted(bad))!r}")
    for label in host.split("."):
        if not label:
            raise BadURL(f"empty label in host {raw!r}")
        if len(label) > 63:
            raise BadURL(f"label longer than 63 characters in host {raw!r}")


def _ipv6(text: str, raw: str) -> str:
    """Compressed IPv6, or dotted IPv4 for an IPv4-mapped address; raises ``BadURL``."""
    if "%" in text:
        raise BadURL(f"zone identifier in IPv6 host {raw!r}")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise BadURL(f"bad IPv6 address in host {raw!r}") from None
    mapped = address.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    if address in _NAT64:
        # The NAT64 well-known prefix (RFC 6052) reaches the IPv4 address in its last 32 bits.
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return str(address)


def _port(text: str, scheme: str, raw: str) -> int:
    """The port as an int, the scheme's default when absent; raises ``BadURL``."""
    if not text:
        return _DEFAULT_PORTS[scheme]
    if not (text.isascii() and text.isdigit()):
        raise BadURL(f"bad port {text!r} in {raw!r}")
    digits = text.lstrip("0")
    if len(digits) > 5 or (digits and int(digits) > 65535):
        raise BadURL(f"port out of range in {raw!r}")
    return int(digits) if digits else 0


def _canonical_path(path: str) -> str:
    """Canonical matching key for a URL path (see the module docstring)."""
    if not path:
        return "/"
    if path.isascii():
        low = path.lower()
        if _PLAIN_PATH.fullmatch(low):
            return low
    # Decode every escape once, so that each character has one spelling in
    # the key: "%61" and "a", "%21" and "!" alike. That includes "%2F" and
    # "%5C": many servers (nginx, IIS) decode them before routing, so
    # "/allowed/..%2Fblocked" must not slip past a "/blocked" entry.
    data = unquote_to_bytes(path.encode("utf-8", "surrogatepass"))
    text = data.decode("utf-8", "surrogateescape").replace("\\", "/")
    # Lower-cased because list entries are lower-case and some origins (IIS,
    # anything on a case-insensitive file system) serve /Bad and /bad alike:
    # a case trick must not open a listed page.
    text = text.lower()
    if not text.startswith("/"):
        text = "/" + text
    segments: list[str] = []
    trailing = False
    for segment in text.split("/")[1:]:
        if segment in ("", ".", ".."):
            # "" is a repeated slash, collapsed: most servers (nginx's
            # merge_slashes, Apache's file mapping) serve //a//b as /a/b, so
            # "//" must not dodge an entry. Collapsing comes before ".."
            # (nginx's order), so "/a//../b" is "/b".
            if segment == ".." and segments:
                segments.pop()
            trailing = True
        else:
            segments.append(segment)
            trailing = False
    canonical = "/" + "/".join(segments)
    if trailing and segments:
        canonical += "/"
    return quote(canonical, safe=_PATH_SAFE, errors="surrogateescape")


def _split_scheme(text: str, default_scheme: str, raw: str) -> tuple[str, str]:
    """``(scheme, rest)``: the URL's own scheme if it has a known one, else the default."""
    colon = text.find(":")
    if colon > 0:
        candidate = text[:colon].lower()
        if candidate in _DEFAULT_PORTS:
            return candidate, text[colon + 1 :]
        if text.startswith("//", colon + 1):
            raise BadURL(f"unsupported scheme {text[:colon]!r} in {raw!r}")
    scheme = default_scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadURL(f"unsupported default scheme {default_scheme!r}")
    if text[:1] in ("/", "\\") and text[1:2] not in ("/", "\\"):
        # "/path" is a path with no host, not the host "path" (which "//host" is).
        raise BadURL(f"no host in {raw!r}")
    return scheme, text


def normalise_url(raw: str, *, default_scheme: str = "http") -> CanonicalURL:
    """Canonical form of an absolute URL (or ``host/path`` without a scheme); raises ``BadURL``."""
    text = _clean(raw)
    hash_at = text.find("#")
    if hash_at != -1:
        text = text[:hash_at]
    scheme, rest = _split_scheme(text, default_scheme, raw)
    # Browsers skip any run of "/" and "\" after a special scheme
    # ("http:\\/example.com" is http://example.com/).
    rest = rest.lstrip("/\\")
    end = len(rest)
    for stop in "/\\?":
        found = rest.find(stop, 0, end)
        if found != -1:
            end = found
    authority, tail = rest[:end], rest[end:]
    path, _, query = tail.partition("?")

    hostport = authority[authority.rfind("@") + 1 :]  # userinfo is never part of the host
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise BadURL(f"unclosed '[' in {raw!r}")
        host_text, after = hostport[: close + 1], hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise BadURL(f"junk after IPv6 address in {raw!r}")
        port_text = after[1:]
    else:
        host_text, _, port_text = hostport.partition(":")
    if not host_text:
        raise BadURL(f"empty host in {raw!r}")
    host = _host(host_text, raw)
    port = _port(port_text, scheme, raw)
    return CanonicalURL(scheme, host, port, _canonical_path(path), query)


def normalise_parts(scheme: str, host: str, port: int, target: str) -> CanonicalURL:
    """Canonical form of a request held as parts, as a proxy holds it; raises ``BadURL``.

    ``host`` may be a bare IPv6 address (mitmproxy keeps it without brackets,
    so its ``request.url`` reads ``http://::1:8080/``, which no URL parser can
    split); ``target`` is the path with its query.
    """
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadURL(f"unsupported scheme {scheme!r}")
    if not 0 <= port <= 65535:
        raise BadURL(f"port out of range: {port}")
    hash_at = target.find("#")
    if hash_at != -1:
        target = target[:hash_at]
    path, _, query = target.partition("?")
    return CanonicalURL(scheme, normalise_host(host), port, _canonical_path(path), query)


def normalise_entry(raw: str) -> str:
    """Canonical form of a list entry (``host`` or ``host/path``); raises ``BadURL``.

    An entry may be written as a URL; its scheme, port, query and fragment
    are dropped, since the index matches host and path only (so
    ``a.example/p?x=1`` becomes ``a.example/p``, broader than written). A
    trailing ``/`` is kept when written, except for the root. List syntax
    such as ``*.`` or a leading ``.`` is the list parser's to interpret, and
    is refused here.
    """
    text = _clean(raw)
    if not text:
        raise BadURL("empty entry")
    # A bare IPv6 entry ("2001:db8::1" or "2001:db8::1/path") would read as a
    # host and port: give it the brackets a URL would have.
    head, slash, tail = text.partition("/")
    if head.count(":") >= 2 and "@" not in head and "[" not in head:
        text = f"[{head}]{slash}{tail}"
    url = normalise_url(text)
    _dns_name(url.host, raw)
    return url.host if url.path == "/" else url.entry
