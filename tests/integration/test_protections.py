"""The gateway's protections through the real proxy: safe search, downloads, TLS, circumvention.

A local origin plays Google, Bing, DuckDuckGo, YouTube, a file server, a
bank and a DNS-over-HTTPS resolver: the test-only launcher ``hostmap.py``
sends those names to it (nothing leaves 127.0.0.1). Each protection is
shown working for a pupil (127.0.0.2) and, where the policy says so, not
applying to the headteacher (127.0.0.4); 127.0.0.5 is a BYOD device that
does not trust the school's certificate.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.integration.harness import (
    HEAD,
    PUPIL,
    ROOT,
    Gateway,
    OriginCA,
    schoolgate_command,
    serve_origin,
    start_gateway,
    stop_gateway,
    write_config,
)

BYOD = "127.0.0.5"
# The whole UT1 sample where ../shared is beside the repository; otherwise its first lines.
SAMPLE = ROOT.parent / "shared" / "blocklists-sample" / "blacklists"
if not SAMPLE.is_dir():
    SAMPLE = ROOT / "tests" / "fixtures" / "ut1-sample"
MAPPED = [
    "www.google.com",
    "www.google.co.uk",
    "www.bing.com",
    "duckduckgo.com",
    "www.youtube.com",
    "search.yahoo.com",
    "files.example",
    "lesson.example",
    "www.bank-demo.example",
    "resolver.example",
]
PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 1000
MB = 1024 * 1024

POLICY = """\
school: Integration Test School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 127.0.0.2/32, group: pupil}
    - {cidr: 127.0.0.3/32, group: staff}
    - {cidr: 127.0.0.5/32, group: byod}
  users:
    - {name: head.teacher, group: head, ips: [127.0.0.4]}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult, ut1/mixed_adult], incident: deliberate_offensive}
  gambling: {lists: [ut1/gambling]}
  bypass: {lists: [ut1/redirector, sample/vpn], incident: subvert_filtering}
  doh: {lists: [doh, sample/doh], incident: subvert_filtering}
  banking: {lists: [ut1/bank]}
no_decrypt:
  categories: [banking]
groups:
  pupil:
    default: acceptable
    safe_search: strict
    downloads: {block: [executable, script], max_mb: 1}
    doh: unacceptable
    categories:
      adult: unacceptable
      gambling: unacceptable
      bypass: unacceptable
      doh: unacceptable
  byod:
    inherits: pupil
    intercept: false
  staff:
    inherits: pupil
    safe_search: moderate
  head:
    default: acceptable
    safe_search: off
    allowed_ports: [443, "1024-65535"]
    https_without_sni: filter
    categories:
      adult: unacceptable
  guest:
    inherits: pupil
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Transfer-Encoding" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if "Transfer-Encoding" in headers:
            for i in range(0, len(body), 64 * 1024):
                part = body[i : i + 64 * 1024]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        record = {
            "method": self.command,
            "host": self.headers.get("Host"),
            "path": url.path,
            "query": urllib.parse.parse_qsl(url.query, keep_blank_values=True),
            "youtube": self.headers.get_all("YouTube-Restrict") or [],
            "cookie": self.headers.get("Cookie"),
            "body": body.decode("latin-1"),
        }
        self.seen.append(record)
        path = url.path
        if path == "/download/notes.txt":
            self._reply(200, PE, {"Content-Type": "text/plain"})
        elif path == "/download/setup.exe":
            self._reply(200, b"not really", {"Content-Type": "application/octet-stream"})
        elif path == "/download/big.bin":
            self._reply(200, b"a" * (2 * MB), {"Content-Type": "application/octet-stream"})
        elif path == "/download/chunked.bin":
            self._reply(
                200,
                b"a" * (2 * MB),
                {"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
            )
        elif path == "/download/chunked-tool.txt":
            self._reply(200, PE, {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        else:
            self._reply(
                200,
                json.dumps(record).encode(),
                {"Content-Type": "application/json", "Alt-Svc": 'h3=":443"; ma=86400'},
            )

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Origin:
    http_port: int
    https_port: int
    seen: list[dict[str, Any]]

    def last(self) -> dict[str, Any]:
        return self.seen[-1]


@pytest.fixture(scope="module")
def search_origin(
    origin_ca: OriginCA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Origin]:
    """One HTTP and one HTTPS origin answering for every mapped name."""
    seen: list[dict[str, Any]] = []

    class Handler(_Handler):
        pass

    Handler.seen = seen
    cert, key = origin_ca.issue(tmp_path_factory.mktemp("search-origin"), "localhost", *MAPPED)
    with serve_origin(Handler, cert, key) as (http_port, https_port):
        yield Origin(http_port, https_port, seen)


def _copy_sample(target: Path) -> Path:
    """UT1's doh and vpn categories (the shared sample, else a few lines kept in tests/)."""
    for name in ("doh", "vpn"):
        shutil.copytree(SAMPLE / name, target / name)
    return target


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA, search_origin: Origin
) -> Iterator[Gateway]:
    """The real proxy with the protections policy, the sample lists and the test host map."""
    tmp = tmp_path_factory.mktemp("protections")
    config = tmp / "config"
    write_config(config, tmp / "var", 1, POLICY)
    sample = _copy_sample(tmp / "sample")
    with (config / "schoolgate.yaml").open("a", encoding="utf-8") as settings:
        settings.write(
            f"  sample: {{path: {sample}, format: ut1}}\n"
            f"  doh: {{path: {ROOT / 'config' / 'doh-endpoints.txt'}, format: plain}}\n"
        )
    hostmap = {
        "hosts": MAPPED,
        "ports": {"80": search_origin.http_port, "443": search_origin.https_port},
    }
    gateway = start_gateway(
        tmp,
        origin_ca,
        env={"SCHOOLGATE_TEST_HOSTMAP": json.dumps(hostmap), "PYTHONPATH": str(ROOT)},
        command=[sys.executable, "-m", "tests.integration.hostmap"],
    )
    yield gateway
    stop_gateway(gateway)


def fetch(
    gw: Gateway,
    url: str,
    *,
    client: str = PUPIL,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the proxy; HTTPS trusts the proxy's CA."""
    parts = urllib.parse.urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=str(gw.ca_file))
        conn = http.client.HTTPSConnection(
            "127.0.0.1", gw.port, timeout=10, context=context, source_address=(client, 0)
        )
        conn.set_tunnel(parts.hostname or "", parts.port or 443)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    else:
        conn = http.client.HTTPConnection(
            "127.0.0.1", gw.port, timeout=10, source_address=(client, 0)
        )
        target = url
    try:
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, target or "/", body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def echoed(body: bytes) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(body)
    return found


def connect(gw: Gateway, host: str, port: int, client: str) -> tuple[int, socket.socket]:
    """Send a CONNECT and return the proxy's status and the open socket."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(client, 0))
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, sock


def log_lines(gw: Gateway) -> list[dict[str, Any]]:
    text = gw.access_log.read_text(encoding="utf-8") if gw.access_log.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def logged(gw: Gateway, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The last access-log line matching ``predicate``, waiting for it (written off-thread)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for line in log_lines(gw) if predicate(line)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError("no such line in the access log")
        time.sleep(0.1)


# --- safe search ---------------------------------------------------------------------------


def test_google_is_locked_for_pupils_and_not_for_the_head(gw: Gateway, search_origin) -> None:
    """A pupil's safe=off becomes safe=active (on every Google domain); the head's stays off."""
    status, _, body = fetch(gw, "https://www.google.co.uk/search?q=volcano&safe=off&SAFE=off")
    assert status == 200
    query = echoed(body)["query"]
    assert [p for p in query if p[0].lower() == "safe"] == [["safe", "active"]]
    assert ["q", "volcano"] in query
    status, _, body = fetch(gw, "https://www.google.com/search?q=volcano&safe=off", client=HEAD)
    assert status == 200
    assert ["safe", "off"] in echoed(body)["query"]


def test_bing_parameter_and_cookie_are_forced(gw: Gateway) -> None:
    """Bing gets adlt=strict, and the ADLT in its settings cookie cannot turn it off."""
    status, _, body = fetch(
        gw,
        "https://www.bing.com/search?q=x&adlt=off",
        headers={"Cookie": "SRCHHPGUSR=SRCHLANG=en&ADLT=OFF; other=1"},
    )
    assert status == 200
    seen = echoed(body)
    assert ["adlt", "strict"] in seen["query"]
    assert ["adlt", "off"] not in seen["query"]
    assert "ADLT=STRICT" in str(seen["cookie"])
    assert "ADLT=OFF" not in str(seen["cookie"])


def test_duckduckgo_levels_follow_the_group(gw: Gateway) -> None:
    """DuckDuckGo gets kp=1 for pupils, kp=-1 for staff (moderate), kp as sent for the head."""
    assert ["kp", "1"] in echoed(fetch(gw, "https://duckduckgo.com/?q=x&kp=-2")[2])["query"]
    staff = echoed(fetch(gw, "https://duckduckgo.com/?q=x&kp=-2", client="127.0.0.3")[2])
    assert ["kp", "-1"] in staff["query"]
    head = echoed(fetch(gw, "https://duckduckgo.com/?q=x&kp=-2", client=HEAD)[2])
    assert head["query"] == [["q", "x"], ["kp", "-2"]]


def test_duckduckgo_form_posts_are_locked_too(gw: Gateway) -> None:
    """The HTML version posts its search as a form; the form's kp is forced as well."""
    status, _, body = fetch(gw, "https://duckduckgo.com/html/", method="POST", body="q=x&kp=-2")
    assert status == 200
    assert "kp=1" in str(echoed(body)["body"])
    assert "kp=-2" not in str(echoed(body)["body"])


def test_a_search_form_too_large_to_rewrite_is_refused(gw: Gateway) -> None:
    """A form padded past the streaming threshold would stream past safe search: it gets 413,
    with a length or chunked (addons/limits.py)."""
    form = "q=x&kp=-2&pad=" + "a" * (2 * MB)
    status, _, _ = fetch(gw, "https://duckduckgo.com/html/", method="POST", body=form)
    assert status == 413
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", gw.port, timeout=10, context=context, source_address=(PUPIL, 0)
    )
    conn.set_tunnel("duckduckgo.com", 443)
    try:
        pieces = (form[i : i + 65536].encode() for i in range(0, len(form), 65536))
        conn.request(
            "POST",
            "/html/",
            body=pieces,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_youtube_gets_restricted_mode_header(gw: Gateway) -> None:
    """YouTube-Restrict: Strict replaces what the pupil sent; the head's request is untouched."""
    pupil = echoed(
        fetch(gw, "https://www.youtube.com/watch?v=1", headers={"YouTube-Restrict": "Off"})[2]
    )
    assert pupil["youtube"] == ["Strict"]
    head = echoed(fetch(gw, "https://www.youtube.com/watch?v=1", client=HEAD)[2])
    assert head["youtube"] == []


def test_unlockable_engines_are_blocked_for_pupils_only(gw: Gateway) -> None:
    """An engine with no lockable safe mode gets the block page for pupils; the head may use it."""
    status, _, body = fetch(gw, "http://search.yahoo.com/search?p=x")
    assert status == 403
    assert b"cannot be kept in safe search mode" in body
    assert fetch(gw, "http://search.yahoo.com/search?p=x", client=HEAD)[0] == 200


# --- downloads -----------------------------------------------------------------------------


def test_renamed_executable_is_blocked_by_its_bytes(gw: Gateway) -> None:
    """An .exe served as notes.txt, text/plain, is blocked for a pupil; the head gets it."""
    status, _, body = fetch(gw, "https://files.example/download/notes.txt")
    assert status == 403
    assert b"executable" in body
    assert b"Windows executable" in body
    status, _, body = fetch(gw, "https://files.example/download/notes.txt", client=HEAD)
    assert (status, body) == (200, PE)


def test_executable_by_name_is_blocked_from_the_headers(gw: Gateway) -> None:
    """A file named setup.exe is blocked before its body is read."""
    status, _, body = fetch(gw, "https://files.example/download/setup.exe")
    assert status == 403
    assert b"setup.exe" in body


def test_content_length_over_the_limit_gets_the_block_page(gw: Gateway) -> None:
    """A 2 MB file is over the pupil's 1 MB limit; the head has no limit."""
    status, _, body = fetch(gw, "https://files.example/download/big.bin")
    assert status == 403
    assert b"larger than the school allows" in body
    status, _, body = fetch(gw, "https://files.example/download/big.bin", client=HEAD)
    assert (status, len(body)) == (200, 2 * MB)


def test_chunked_bodies_are_counted_and_cut(gw: Gateway) -> None:
    """A chunked 2 MB body never arrives whole for a pupil; the head gets all of it."""
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        fetch(gw, "https://files.example/download/chunked.bin")
    status, _, body = fetch(gw, "https://files.example/download/chunked.bin", client=HEAD)
    assert (status, len(body)) == (200, 2 * MB)


def test_chunked_executable_is_cut_before_a_byte_arrives(gw: Gateway) -> None:
    """A streamed executable is sniffed in the stream: the pupil receives none of it."""
    with pytest.raises((http.client.IncompleteRead, ConnectionError)) as caught:
        fetch(gw, "https://files.example/download/chunked-tool.txt")
    if isinstance(caught.value, http.client.IncompleteRead):
        assert caught.value.partial == b""


def test_download_blocks_are_logged(gw: Gateway) -> None:
    """Each blocked download is an access-log line with the rule saying why."""
    fetch(gw, "https://files.example/download/notes.txt")
    logged(gw, lambda x: "download blocked (executable): Windows executable" in str(x.get("rule")))


# --- TLS -----------------------------------------------------------------------------------


def _tls(sock: socket.socket, server_hostname: str | None, ca: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca))
    # The test origin CA is minimal (no key identifiers); Python 3.13's strict mode wants them.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    if server_hostname is None:
        context.check_hostname = False
    return context.wrap_socket(sock, server_hostname=server_hostname)


def _issuer(tls: ssl.SSLSocket) -> str:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def test_byod_tls_passes_through_undecrypted(gw: Gateway, origin_ca: OriginCA) -> None:
    """A BYOD device talks TLS with the origin itself: the certificate is the origin's."""
    status, sock = connect(gw, "lesson.example", 443, BYOD)
    assert status == 200
    with _tls(sock, "lesson.example", origin_ca.cert_path) as tls:
        assert "Schoolgate test origin CA" in _issuer(tls)
        tls.sendall(b"GET /byod HTTP/1.1\r\nHost: lesson.example\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")


def test_byod_blocked_host_is_refused_at_connect(gw: Gateway) -> None:
    """The host alone blocks it, so the CONNECT is refused: no TLS handshake at all."""
    status, sock = connect(gw, "adult-demo.example", 443, BYOD)
    sock.close()
    assert status == 403


def test_byod_blocked_sni_is_refused_cleanly(gw: Gateway, origin_ca: OriginCA) -> None:
    """An allowed CONNECT host with a blocked SNI gets a TLS alert, and the refusal is logged."""
    status, sock = connect(gw, "lesson.example", 443, BYOD)
    assert status == 200
    with pytest.raises(ssl.SSLError, match=r"ACCESS_DENIED|access denied"):
        _tls(sock, "adult-demo.example", origin_ca.cert_path)
    sock.close()
    logged(gw, lambda x: (x.get("tls"), x["client_ip"], x["group"]) == ("refused", BYOD, "byod"))
    # The refusal is a safeguarding incident too, though no request was ever decrypted.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        listed = subprocess.run(
            [*schoolgate_command(), "incidents", "list", "--json", "--config", str(gw.config_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        incidents = [json.loads(line) for line in listed.splitlines() if line.strip()]
        if any("byod" in json.dumps(i) and "adult" in json.dumps(i) for i in incidents):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no incident for the refused SNI: {listed}")


def test_byod_search_engines_are_refused_without_decryption(gw: Gateway) -> None:
    """An engine with no locked service (Yahoo) cannot be made safe undecrypted: refused for BYOD.

    Google, Bing, YouTube and DuckDuckGo are tunnelled to their locked service instead
    (tests/integration/test_safesearch_tunnel.py).
    """
    status, sock = connect(gw, "search.yahoo.com", 443, BYOD)
    sock.close()
    assert status == 403


def test_no_decrypt_category_passes_untouched_for_pupils(gw: Gateway, origin_ca: OriginCA) -> None:
    """The bank is on the no-decrypt list: even a pupil's connection is not intercepted."""
    status, sock = connect(gw, "www.bank-demo.example", 443, PUPIL)
    assert status == 200
    with _tls(sock, "www.bank-demo.example", origin_ca.cert_path) as tls:
        assert "Schoolgate test origin CA" in _issuer(tls)
    logged(gw, lambda x: (x.get("tls"), x["host"]) == ("passthrough", "www.bank-demo.example"))


def test_intercepted_block_costs_no_upstream_connection(gw: Gateway, search_origin) -> None:
    """A blocked HTTPS host is decided at CONNECT: the block page, and the origin is never asked."""
    before = len(search_origin.seen)
    status, _, body = fetch(gw, "https://adult-demo.example/")
    assert status == 403
    assert b"adult" in body
    assert len(search_origin.seen) == before


def test_https_to_a_raw_ip_without_sni_follows_the_policy(gw: Gateway) -> None:
    """No SNI to an IP: refused for a pupil; for the head it is intercepted and decided."""
    status, sock = connect(gw, "127.0.0.9", 443, PUPIL)
    assert status == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _tls(sock, None, gw.ca_file)
    sock.close()
    status, sock = connect(gw, "127.0.0.9", 443, HEAD)
    with _tls(sock, None, gw.ca_file) as tls:
        assert "Schoolgate CA" in _issuer(tls)  # the proxy's CA, named for the school


# --- circumvention -------------------------------------------------------------------------


def test_connect_only_to_allowed_ports(gw: Gateway, search_origin) -> None:
    """A pupil may tunnel to 443 only; the head's policy also allows high ports."""
    status, sock = connect(gw, "localhost", search_origin.https_port, PUPIL)
    sock.close()
    assert status == 403
    status, sock = connect(gw, "localhost", search_origin.https_port, HEAD)
    sock.close()
    assert status == 200


def test_listed_doh_resolvers_are_blocked(gw: Gateway) -> None:
    """Resolvers from config/doh-endpoints.txt and UT1's doh list are blocked as doh."""
    sample_host = (SAMPLE / "doh" / "domains").read_text().split()[3]
    for url in ("https://dns.google/dns-query", f"http://{sample_host}/"):
        status, _, body = fetch(gw, url)
        assert status == 403, url
        assert b"<strong>doh</strong>" in body
        assert b"This request has been recorded" in body


def test_doh_shaped_requests_are_blocked_on_any_host(gw: Gateway) -> None:
    """A DNS query over HTTPS to an unlisted host is blocked for a pupil, not for the head."""
    headers = {"Accept": "application/dns-message"}
    url = "https://resolver.example/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB"
    status, _, body = fetch(gw, url, headers=headers)
    assert status == 403
    assert b"DNS-over-HTTPS" in body
    assert fetch(gw, url, headers=headers, client=HEAD)[0] == 200
    line = logged(gw, lambda x: x.get("client_ip") == PUPIL and "dns-query" in str(x.get("path")))
    assert line["incident"] == "unacceptable"


def test_vpn_sites_raise_subvert_filtering(gw: Gateway) -> None:
    """A VPN site from UT1's vpn list is blocked as bypass, an incident of subvert_filtering."""
    vpn_host = (SAMPLE / "vpn" / "domains").read_text().split()[5]
    status, _, body = fetch(gw, f"http://{vpn_host}/")
    assert status == 403
    assert b"<strong>bypass</strong>" in body
    explained = subprocess.run(
        [
            *schoolgate_command(),
            "explain",
            f"http://{vpn_host}/",
            "--group",
            "pupil",
            "--json",
            "--config",
            str(gw.config_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(explained.stdout)["incident_type"] == "subvert_filtering"


def test_http3_is_not_advertised(gw: Gateway) -> None:
    """The origin's Alt-Svc (h3) never reaches the browser, so it stays on TCP."""
    status, headers, _ = fetch(gw, "https://lesson.example/")
    assert status == 200
    assert not any(name.lower() == "alt-svc" for name in headers)


# --- review requests -----------------------------------------------------------------------


def _reference(body: bytes) -> str:
    text = body.decode()
    start = text.index('id="reference">') + len('id="reference">')
    return text[start : text.index("<", start)]


def _token(body: bytes) -> str:
    """The signed token the proxy put in the page's review form."""
    return body.decode().split('name="token" value="', 1)[1].split('"', 1)[0]


def test_review_form_files_a_request(gw: Gateway) -> None:
    """The page's form posts to the proxy, which records one JSON line and says what's next."""
    status, _, body = fetch(gw, "https://adult-demo.example/page")
    assert status == 403
    assert b'action="/_schoolgate/review"' in body
    reference = _reference(body)
    form = urllib.parse.urlencode(
        {"reference": reference, "token": _token(body), "reason": "Biology\nlesson"}
    )
    status, _, reply = fetch(
        gw, "https://adult-demo.example/_schoolgate/review", method="POST", body=form
    )
    assert status == 200
    assert b"Your request has been sent" in reply
    assert reference.encode() in reply
    lines = (gw.data_dir / "review-requests.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[-1])
    assert set(record) == {
        "time",
        "user",
        "group",
        "client_ip",
        "url",
        "category",
        "reason",
        "reference",
    }
    assert record["reference"] == reference
    assert record["url"] == "adult-demo.example/page"
    assert (record["group"], record["client_ip"], record["category"]) == ("pupil", PUPIL, "adult")
    assert record["reason"] == "Biology lesson"
    datetime.datetime.fromisoformat(str(record["time"]))


def test_review_of_someone_elses_block_is_not_filed(gw: Gateway) -> None:
    """A post from another client, for another reference, or without the token files nothing."""
    _, _, body = fetch(gw, "http://adult-demo.example/")
    reference, token = _reference(body), _token(body)
    path = gw.data_dir / "review-requests.jsonl"
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    for ref, tok, client in (
        (reference, token, "127.0.0.3"),
        ("SG-00000000", token, PUPIL),
        (reference, "", PUPIL),
    ):
        form = urllib.parse.urlencode({"reference": ref, "token": tok, "reason": "x"})
        status, _, reply = fetch(
            gw,
            "http://adult-demo.example/_schoolgate/review",
            method="POST",
            body=form,
            client=client,
        )
        assert status == 404
        assert b"could not be sent" in reply
    assert (path.read_text(encoding="utf-8") if path.exists() else "") == before


def test_illegal_block_has_no_form_and_files_nothing(gw: Gateway) -> None:
    """The IWF page has no form, and its reference can never be filed."""
    status, _, body = fetch(gw, "http://iwf-test.example/abuse/test-image.jpg")
    assert status == 403
    assert b"<form" not in body
    form = urllib.parse.urlencode({"reference": _reference(body), "reason": "x"})
    status, _, reply = fetch(
        gw, "http://iwf-test.example/_schoolgate/review", method="POST", body=form
    )
    assert status == 404  # illegal blocks are never remembered, so there is nothing to file
    assert b"iwf-test" not in reply
    path = gw.data_dir / "review-requests.jsonl"
    assert "iwf-test" not in (path.read_text(encoding="utf-8") if path.exists() else "")
