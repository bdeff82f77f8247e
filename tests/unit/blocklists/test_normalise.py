"""Every spelling of a URL that reaches the same place gets one canonical form."""

from __future__ import annotations

import pytest

from blocklists.normalise import (
    BadURL,
    CanonicalURL,
    normalise_entry,
    normalise_host,
    normalise_url,
)

HOSTS = [
    # case, trailing dots, userinfo
    ("example.com", "example.com"),
    ("WWW.Example.COM", "www.example.com"),
    ("www.example.com.", "www.example.com"),
    ("www.example.com...", "www.example.com"),
    ("user:pass@Example.com", "example.com"),
    ("a@b@evil.example", "evil.example"),
    ("  example.com\n", "example.com"),
    ("exa\tmple.com", "example.com"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    ("www.example", "www.example"),
    # percent-encoded host bytes
    ("%77ww.example.com", "www.example.com"),
    ("%57%57%57.EXAMPLE.com", "www.example.com"),
    ("b%C3%BCcher.de", "xn--bcher-kva.de"),
    # IDN
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.DE", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
    ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com"),
    ("example。com。", "example.com"),
    # UTS #46 non-transitional, as browsers: faß.de and fass.de are two hosts
    ("faß.de", "xn--fa-hia.de"),
    ("Faß.DE", "xn--fa-hia.de"),
    ("xn--fa-hia.de", "xn--fa-hia.de"),
    ("fass.de", "fass.de"),
    ("βόλος.com", "xn--nxasmm1c.com"),
    # browsers take a label that merely looks like punycode as it is (WHATWG toascii.json)
    ("xn--zzzzzzzzzzzzzzzzzz.com", "xn--zzzzzzzzzzzzzzzzzz.com"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    # IPv4 in every notation inet_aton and browsers accept
    ("192.168.1.1", "192.168.1.1"),
    ("3232235777", "192.168.1.1"),
    ("0xC0A80101", "192.168.1.1"),
    ("0xc0.0xa8.1.1", "192.168.1.1"),
    ("0300.0250.01.01", "192.168.1.1"),
    ("0300.0xa8.257", "192.168.1.1"),
    ("192.168.257", "192.168.1.1"),
    ("192.11010305", "192.168.1.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0x7f.0.0.00001", "127.0.0.1"),
    ("0x", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("4294967295", "255.255.255.255"),
    ("%31%32%37.0.0.1", "127.0.0.1"),
    ("１２７．０．０．１", "127.0.0.1"),
    ("1.2.3.com", "1.2.3.com"),
    ("example.0x1g", "example.0x1g"),
    # IPv6
    ("[::FFFF:192.168.1.1]", "192.168.1.1"),
    ("[::ffff:c0a8:101]", "192.168.1.1"),
    ("::ffff:192.168.1.1", "192.168.1.1"),
    ("[2001:DB8:0:0:0:0:0:1]", "2001:db8::1"),
    ("[0:0:0:0:0:0:0:1]", "::1"),
    ("2001:0db8::0001", "2001:db8::1"),
    ("[::192.168.1.1]", "::c0a8:101"),
    # NAT64 well-known prefix: the IPv4 address it reaches
    ("[64:ff9b::1.2.3.4]", "1.2.3.4"),
    ("[64:FF9B::102:304]", "1.2.3.4"),
    ("[64:ff9b:1::1.2.3.4]", "64:ff9b:1::102:304"),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTS)
def test_host_has_one_canonical_spelling(raw: str, expected: str) -> None:
    """Every spelling of a host normalises to the same lower-case ASCII name or IP."""
    assert normalise_host(raw) == expected


@pytest.mark.parametrize("expected", sorted({expected for _, expected in HOSTS}))
def test_canonical_host_is_a_fixed_point(expected: str) -> None:
    """A canonical host normalises to itself."""
    assert normalise_host(expected) == expected


BAD_HOSTS = [
    "",
    "   ",
    ".",
    "...",
    "user@",
    "exa mple.com",
    "exa\x00mple.com",
    "exa\x0bmple.com",
    "exa\x7fmple.com",
    "example.com:8080",
    "evil.com/.good.com",
    "evil.com／.good.com",
    "evil%2Fgood.com",
    "%2577ww.example.com",
    "%ff.example.com",
    "evil.com%40good.com",
    "256.1.1.1",
    "1.2.3.256",
    "1.2.65536",
    "4294967296",
    "0x100000000",
    "1.2.3.4.5",
    "08.1.1.1",
    "1.2.3.09",
    "0x1g.1.1.1",
    "1..2.3",
    "example.123",
    "1_0.0.0.1",
    "١٢٧.0.0.1",
    "[::1",
    "[]",
    "[fe80::1%25eth0]",
    "[1::2::3]",
    "[::ffff:256.1.1.1]",
    "a\u200db.example",
    "xn--tešla.com",
    "\ud800.com",
]


# Hosts a browser accepts (WHATWG) but DNS cannot resolve: a request keeps them as they are
# (until ada-url they were refused, so the filter blocked them as "filter error"); a list
# entry refuses them, since there they are list syntax read wrongly or a typo.
NOT_DNS_NAMES = [
    ("a..example.com", "a..example.com"),
    (".example.com", ".example.com"),
    ("*.example.com", "*.example.com"),
    ("a" * 64 + ".com", "a" * 64 + ".com"),
    (("a" * 63 + ".") * 4 + "com", ("a" * 63 + ".") * 4 + "com"),
    ("⑷.four", "(4).four"),
]


@pytest.mark.parametrize(("raw", "expected"), NOT_DNS_NAMES)
def test_host_browsers_accept_but_dns_cannot_resolve(raw: str, expected: str) -> None:
    """Such a host is kept as browsers spell it in a request, and refused as a list entry."""
    assert normalise_host(raw) == expected
    with pytest.raises(BadURL):
        normalise_entry(raw)


@pytest.mark.parametrize("raw", BAD_HOSTS)
def test_bad_host_is_refused(raw: str) -> None:
    """A host that is empty, malformed, out of range or hides a separator raises BadURL."""
    with pytest.raises(BadURL):
        normalise_host(raw)


URLS = [
    (
        "HTTP://WWW.Example.COM.:80/a/../b",
        CanonicalURL("http", "www.example.com", 80, "/b"),
    ),
    ("https://example.com", CanonicalURL("https", "example.com", 443, "/")),
    ("https://example.com:443/", CanonicalURL("https", "example.com", 443, "/")),
    ("https://example.com:0443/", CanonicalURL("https", "example.com", 443, "/")),
    ("http://example.com:/", CanonicalURL("http", "example.com", 80, "/")),
    ("http://example.com:8080/x", CanonicalURL("http", "example.com", 8080, "/x")),
    ("https://example.com:80/", CanonicalURL("https", "example.com", 80, "/")),
    ("wss://example.com/chat", CanonicalURL("wss", "example.com", 443, "/chat")),
    (
        "http://user:pass@example.com:8080/p?q=1",
        CanonicalURL("http", "example.com", 8080, "/p", "q=1"),
    ),
    ("http://good.example@evil.example/", CanonicalURL("http", "evil.example", 80, "/")),
    ("http://evil.example#@good.example/", CanonicalURL("http", "evil.example", 80, "/")),
    (
        "http://evil.example?@good.example/",
        CanonicalURL("http", "evil.example", 80, "/", "@good.example/"),
    ),
    (
        "http://evil.example\\@good.example/",
        CanonicalURL("http", "evil.example", 80, "/@good.example/"),
    ),
    # no scheme, or a special scheme with any run of slashes
    ("example.com/path", CanonicalURL("http", "example.com", 80, "/path")),
    ("//example.com/x", CanonicalURL("http", "example.com", 80, "/x")),
    ("example.com:8080", CanonicalURL("http", "example.com", 8080, "/")),
    ("http:example.com/x", CanonicalURL("http", "example.com", 80, "/x")),
    ("http:\\\\example.com\\x", CanonicalURL("http", "example.com", 80, "/x")),
    ("http:///\\example.com/x", CanonicalURL("http", "example.com", 80, "/x")),
    # whitespace, tabs and newlines
    ("  \thttp://example.com/\n", CanonicalURL("http", "example.com", 80, "/")),
    ("ht\ntp://exa\tmple.com/pa\rth", CanonicalURL("http", "example.com", 80, "/path")),
    # fragment dropped, query kept as given
    ("http://example.com/p#frag", CanonicalURL("http", "example.com", 80, "/p")),
    ("http://example.com/P?Q=%41&b#x", CanonicalURL("http", "example.com", 80, "/p", "Q=%41&b")),
    ("http://example.com?x", CanonicalURL("http", "example.com", 80, "/", "x")),
    # IP literals
    ("http://3232235777/", CanonicalURL("http", "192.168.1.1", 80, "/")),
    ("http://[::FFFF:192.168.1.1]:8080/", CanonicalURL("http", "192.168.1.1", 8080, "/")),
    ("https://[2001:db8::1]/a", CanonicalURL("https", "2001:db8::1", 443, "/a")),
    ("http://%77ww.example.com/", CanonicalURL("http", "www.example.com", 80, "/")),
    ("http://bücher.de/", CanonicalURL("http", "xn--bcher-kva.de", 80, "/")),
]


@pytest.mark.parametrize(("raw", "expected"), URLS)
def test_url_has_one_canonical_form(raw: str, expected: CanonicalURL) -> None:
    """Scheme, host, port, path and query come out canonical from any spelling."""
    assert normalise_url(raw) == expected


PATHS = [
    ("", "/"),
    ("/", "/"),
    ("/a/b/", "/a/b/"),
    ("/Path/To/PAGE.html", "/path/to/page.html"),
    # dot segments, plain and encoded
    ("/a/./b/../c", "/a/c"),
    ("/../../a", "/a"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/a/%2e%2E/b", "/b"),
    ("/a/.%2e/b", "/b"),
    ("/a/%2E/b", "/a/b"),
    ("/a/.../b", "/a/.../b"),
    ("/a/..b/c", "/a/..b/c"),
    # repeated slashes and backslashes
    ("//a///b//", "/a/b/"),
    ("/a//../b", "/b"),
    ("\\a\\b", "/a/b"),
    ("/a\\..\\b", "/b"),
    # encoded separators are separators
    ("/allowed/..%2Fblocked", "/blocked"),
    ("/a%2fb", "/a/b"),
    ("/a%5Cb", "/a/b"),
    # escapes: unreserved decoded, others one fixed spelling with upper-case hex
    ("/%7e%41%62%2D%2e%5F", "/~ab-._"),
    ("/a%3fb%23c", "/a%3Fb%23c"),
    ("/a%3Fb", "/a%3Fb"),
    ("/a%21b!", "/a!b!"),
    ("/100%25", "/100%25"),
    ("/100%", "/100%25"),
    ("/%zz", "/%25zz"),
    ("/%252e%252e/x", "/%252e%252e/x"),
    ("/a b", "/a%20b"),
    ("/a%20b", "/a%20b"),
    ('/<"{|}>^`[]', "/%3C%22%7B%7C%7D%3E%5E%60%5B%5D"),
    ("/a%00b", "/a%00b"),
    ("/!$&'()*+,;=:@~", "/!$&'()*+,;=:@~"),
    # non-ASCII as lower-cased UTF-8, whether raw or already encoded
    ("/Über", "/%C3%BCber"),
    ("/%C3%9Cber", "/%C3%BCber"),
    ("/%c3%bcber", "/%C3%BCber"),
    ("/%FF", "/%FF"),
]


@pytest.mark.parametrize(("raw", "expected"), PATHS)
def test_path_has_one_canonical_spelling(raw: str, expected: str) -> None:
    """A path is decoded once, lower-cased, collapsed, rid of dot segments and re-encoded."""
    assert normalise_url("http://example.com" + raw).path == expected


@pytest.mark.parametrize("expected", sorted({expected for _, expected in PATHS}))
def test_canonical_path_is_a_fixed_point(expected: str) -> None:
    """A canonical path normalises to itself."""
    assert normalise_url("http://example.com" + expected).path == expected


BAD_URLS = [
    "",
    "http://",
    "http:///",
    "https://:443/",
    "http://user@/",
    "http://exa mple.com/",
    "http:// example.com/",
    "http://example.com:65536/",
    "http://example.com:-1/",
    "http://example.com:8o/",
    "http://example.com:８０/",
    "http://example.com:80:80/",
    "http://example.com: 80/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[::1]:99999/",
    "http://::1/",
    "javascript://example.com/",
    "file:///etc/passwd",
    "ｈｔｔｐ://example.com/",
    "http://256.0.0.1/",
]


@pytest.mark.parametrize("raw", BAD_URLS)
def test_bad_url_is_refused(raw: str) -> None:
    """A URL with no host, a bad host, a bad port or an unsupported scheme raises BadURL."""
    with pytest.raises(BadURL):
        normalise_url(raw)


@pytest.mark.parametrize(
    ("raw", "default_scheme", "expected"),
    [
        ("example.com/x", "https", CanonicalURL("https", "example.com", 443, "/x")),
        ("//example.com", "HTTPS", CanonicalURL("https", "example.com", 443, "/")),
        ("http://example.com/", "https", CanonicalURL("http", "example.com", 80, "/")),
    ],
)
def test_default_scheme_applies_only_without_a_scheme(
    raw: str, default_scheme: str, expected: CanonicalURL
) -> None:
    """A URL without a scheme gets the default scheme and its default port."""
    assert normalise_url(raw, default_scheme=default_scheme) == expected


def test_unknown_default_scheme_is_refused() -> None:
    """A default scheme with no known default port raises BadURL."""
    with pytest.raises(BadURL, match="unsupported default scheme"):
        normalise_url("example.com", default_scheme="gopher")


ENTRIES = [
    ("example.com", "example.com"),
    ("www.example.com", "www.example.com"),
    ("Example.COM/Path/", "example.com/path/"),
    ("Example.COM/Path", "example.com/path"),
    ("example.com/", "example.com"),
    ("example.com//", "example.com"),
    ("http://example.com/a", "example.com/a"),
    ("https://Example.com:8443/", "example.com"),
    ("http://user@example.com/a/../b/", "example.com/b/"),
    ("example.com/a?x=1#top", "example.com/a"),
    ("1.2.3.4", "1.2.3.4"),
    ("0x01020304", "1.2.3.4"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("bücher.de/Straße", "xn--bcher-kva.de/stra%C3%9Fe"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8::1/Path", "2001:db8::1/path"),
    ("[::ffff:1.2.3.4]/x", "1.2.3.4/x"),
    ("  example.com  \r\n", "example.com"),
    ("\ufeffexample.com", "example.com"),
]


@pytest.mark.parametrize(("raw", "expected"), ENTRIES)
def test_entry_is_host_or_host_and_path(raw: str, expected: str) -> None:
    """An entry is its canonical host, plus its canonical path unless that is the root."""
    assert normalise_entry(raw) == expected


@pytest.mark.parametrize("expected", sorted({expected for _, expected in ENTRIES}))
def test_canonical_entry_is_a_fixed_point(expected: str) -> None:
    """A canonical entry normalises to itself."""
    assert normalise_entry(expected) == expected


BAD_ENTRIES = [
    "",
    "   ",
    "*",
    ".",
    "http://",
    "# a comment",
    "bad host.com",
    "bad host.com/path",
    "*.example.com",
    ".example.com",
    "example..com",
    "example.com:http/",
    "1.2.3.4.5",
    "a:b:c",
]


@pytest.mark.parametrize("raw", BAD_ENTRIES)
def test_garbage_entry_is_refused(raw: str) -> None:
    """An entry that names no single host raises BadURL."""
    with pytest.raises(BadURL):
        normalise_entry(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://www.example.com/a/b", "www.example.com/a/b"),
        ("http://[::1]:8080/A", "::1/a"),
        ("http://example.com/?q", "example.com/"),
    ],
)
def test_entry_property_joins_host_and_path(raw: str, expected: str) -> None:
    """CanonicalURL.entry is host then path, without scheme, port or query."""
    assert normalise_url(raw).entry == expected


def test_bad_url_is_a_value_error() -> None:
    """BadURL is a ValueError, so callers that catch ValueError also catch it."""
    with pytest.raises(ValueError, match="empty host"):
        normalise_url("http:///")
