"""The two ends of the transparent-mode test, run inside their network namespaces.

``python netns_peer.py origin CERT KEY``: an HTTP origin on port 80 and an HTTPS
origin on 443 (all addresses of its namespace), answering ``origin ok HOST PATH``.

``python netns_peer.py get http|https ADDRESS HOST PATH [CAFILE] [HEADER=VALUE...]``:
one request straight to ADDRESS (no proxy setting: the gateway's nftables
redirect is what sends it through Schoolgate), the ``Host`` and TLS SNI set to
HOST; prints the status on the first line and the body after it.
``post`` instead of ``get`` sends a form: the last argument is its urlencoded body.
"""

from __future__ import annotations

import http.client
import http.server
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"origin ok {self.headers.get('Host')} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def origin(cert: str, key: str) -> None:
    plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    secure = http.server.ThreadingHTTPServer(("0.0.0.0", 443), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=secure.serve_forever, daemon=True).start()
    print("ready", flush=True)
    plain.serve_forever()


def get(
    scheme: str, address: str, host: str, path: str, rest: list[str], form: str | None = None
) -> None:
    cafile = rest[0] if rest and "=" not in rest[0] else None
    headers = {"Host": host}
    headers.update(item.split("=", 1) for item in rest if "=" in item)  # type: ignore[misc]
    conn: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = True
        conn = http.client.HTTPSConnection(address, 443, timeout=10, context=context)
        # connect by address, but send HOST as the SNI and check the certificate against it
        sock = __import__("socket").create_connection((address, 443), timeout=10)
        conn.sock = context.wrap_socket(sock, server_hostname=host)
    else:
        conn = http.client.HTTPConnection(address, 80, timeout=10)
    if form is None:
        conn.request("GET", path, headers=headers)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request("POST", path, body=form.encode(), headers=headers)
    response = conn.getresponse()
    print(response.status)
    print(response.read().decode("utf-8", "replace"))


if __name__ == "__main__":
    if sys.argv[1] == "origin":
        origin(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "post":
        get(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:-1], sys.argv[-1])
    else:
        get(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
