"""URL normalisation: one canonical host and path for every spelling of a URL.

Evasion lives here. Every URL the proxy sees, and every entry a list holds,
goes through these functions, so that ``HTTP://WWW.Example.COM.:80/a/../b``
and ``http://www.example.com/b`` are the same string to the index.

The rules follow what browsers do (the WHATWG URL standard) wherever a
browser would reach the same server by another spelling, and lean towards
"the same" wherever origin servers disagree: two spellings that one server
might treat alike get one key, so the worst a doubtful merge can do is block
a little more, never open a listed site.

- host: lower-case ASCII, no trailing dot, no userinfo; percent-escapes
  decoded; IDN as punycode (IDNA2003, the stdlib codec), ``xn--`` labels
  round-tripped through the same codec so that every spelling of a name
  meets; IPv4 in any ``inet_aton`` notation as dotted decimal; IPv6
  compressed, without brackets, ``::ffff:a.b.c.d`` unmapped to IPv4.
  ``www.`` is kept: it is a different host, and a host entry already covers
  its subdomains.
- path: percent-decoded once, ``\\`` as ``/``, lower-cased, repeated
  slashes collapsed, dot segments removed, then re-encoded one fixed way.
- query: kept as given, not used for matching. Fragment: dropped.
"""

from __future__ import annotations

import encodings.idna
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes


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
_DIGITS = {8: frozenset("01234567"), 10: frozenset("0123456789"), 16: frozenset("0123456789abcdef")}

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
    """Everything ``_host`` cannot settle with one regex match."""
    at = text.rfind("@")
    if at != -1:
        text = text[at + 1 :]
    if text.startswith("["):
        if not text.endswith("]"):
            raise BadURL(f"unclosed '[' in host {raw!r}")
        return _ipv6(text[1:-1], raw)
    if "%" in text:
        # Browsers decode the host once (%77ww.example.com is www.example.com);
        # what that yields must then pass every check below.
        try:
            text = unquote_to_bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8")
        except UnicodeError:
            raise BadURL(f"host {raw!r} is not UTF-8 once percent-decoded") from None
    if ":" in text:
        # mitmproxy gives IPv6 hosts without their brackets.
        return _ipv6(text, raw)
    if any(ch <= " " or ch == "\x7f" for ch in text):
        raise BadURL(f"space or control character in host {raw!r}")
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadURL(f"host {raw!r} is not a valid IDN: {exc}") from None
    host = text.lower().rstrip(".")
    if not host:
        raise BadURL(f"empty host in {raw!r}")
    if "xn--" in host:
        host = ".".join(_round_trip(label, raw) for label in host.split("."))
    if len(host) > 253:
        raise BadURL(f"host longer than 253 characters: {raw!r}")
    if _ends_in_number(host):
        return _ipv4(host, raw)
    bad = set(host) - _HOST_CHARS
    if bad:
        raise BadURL(f"host {raw!r} contains {''.join(sorted(bad))!r}")
    for label in host.split("."):
        if not label:
            raise BadURL(f"empty label in host {raw!r}")
        if len(label) > 63:
            raise BadURL(f"label longer than 63 characters in host {raw!r}")
    return host


def _round_trip(label: str, raw: str) -> str:
    """Decode a punycode label and encode it again with the codec Unicode input goes through.

    Browsers encode with IDNA2008 (``faß`` → ``xn--fa-hia``), the stdlib with
    IDNA2003 (``faß`` → ``fass``); without this step a list entry typed in
    Unicode would miss the punycode host the browser sends.
    """
    if not label.startswith("xn--"):
        return label
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
        return encodings.idna.ToASCII(decoded).decode("ascii").lower()
    except (UnicodeError, ValueError, OverflowError):
        raise BadURL(f"bad punycode label {label!r} in host {raw!r}") from None


def _ends_in_number(host: str) -> bool:
    """Whether browsers would parse this host as IPv4 (WHATWG "ends in a number")."""
    last = host[host.rfind(".") + 1 :]
    if not last:
        return False
    if last.startswith("0x"):
        return all(ch in _DIGITS[16] for ch in last[2:])
    return all(ch in _DIGITS[10] for ch in last)


def _ipv4(host: str, raw: str) -> str:
    """Dotted decimal for any notation ``inet_aton`` and browsers accept; raises ``BadURL``."""
    parts = host.split(".")
    if len(parts) > 4:
        raise BadURL(f"more than four parts in IPv4 address {raw!r}")
    numbers = [_ipv4_number(part, raw) for part in parts]
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        raise BadURL(f"IPv4 address out of range: {raw!r}")
    value = last
    for i, n in enumerate(numbers):
        value += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(part: str, raw: str) -> int:
    """One part of an IPv4 address: decimal, ``0x`` hex or ``0`` octal."""
    if not part:
        raise BadURL(f"empty part in IPv4 address {raw!r}")
    if part.startswith("0x"):
        base, digits = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        base, digits = 8, part[1:]
    else:
        base, digits = 10, part
    # Checked by hand: int() would also take "_", "+", spaces and non-ASCII digits.
    if not all(ch in _DIGITS[base] for ch in digits):
        raise BadURL(f"bad number {part!r} in IPv4 address {raw!r}")
    digits = digits.lstrip("0")
    if len(digits) > 12:  # far beyond 2**32 in any base; keeps int() cheap
        raise BadURL(f"IPv4 address out of range: {raw!r}")
    return int(digits, base) if digits else 0


def _ipv6(text: str, raw: str) -> str:
    """Compressed IPv6, or dotted IPv4 for an IPv4-mapped address; raises ``BadURL``."""
    if "%" in text:
        raise BadURL(f"zone identifier in IPv6 host {raw!r}")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise BadURL(f"bad IPv6 address in host {raw!r}") from None
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else str(address)


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
    return url.host if url.path == "/" else url.entry
