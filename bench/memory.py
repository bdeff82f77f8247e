"""``python -m bench.memory``: the proxy's memory under big transfers, headers and uploads.

Starts the real proxy (``schoolgate run``) with the demo lists and a local
origin on 127.0.0.1 that generates bytes, then, one after the other:

* four parallel downloads of ``--size`` (default 1 GiB each) through the proxy
  by a group with no download rules, and four by a group with download rules
  (the stream is sniffed and counted, ``addons/downloads.py``);
* a 512 MiB upload (known length) and a 512 MiB chunked upload;
* a request with 128 MiB of headers (answered 431).

It samples the proxy's resident memory from ``/proc/PID/status`` every 0.1 s
and prints, per phase, the baseline, the peak (VmHWM) and the growth. It
exits 1 if the peak grows more than ``--bound`` MiB over the baseline. The
machine is shared: throughput figures are noisy, memory figures are not.
The helpers are shared with ``tests/integration/test_limits.py``.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
_BLOCK = bytes(range(256)) * 4096  # 1 MiB, not all zeros
# A Windows program's first bytes: what the download rules sniff for.
MZ = b"MZ" + b"\x90" * 510

POLICY = """\
school: Memory Bench School
timezone: Europe/London
identity:
  default_group: guest
  networks:
    - {cidr: 127.0.0.2/32, group: pupil}
    - {cidr: 127.0.0.3/32, group: staff}
categories:
  child_abuse: {lists: [iwf], illegal: true}
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
groups:
  pupil:
    default: acceptable
    allowed_ports: [443, "1024-65535"]
    categories: {adult: unacceptable}
  staff:
    default: acceptable
    allowed_ports: [443, "1024-65535"]
    downloads: {block: [executable], max_mb: 1500}
    categories: {adult: unacceptable}
  guest:
    inherits: pupil
"""
PUPIL, STAFF = "127.0.0.2", "127.0.0.3"


# -- the origin ---------------------------------------------------------------------------


class BytesOrigin(http.server.BaseHTTPRequestHandler):
    """``GET /bytes/N`` sends N bytes (``?chunked``, ``?mz`` for an .exe's first bytes);
    ``POST /sink`` reads the body and answers with its size."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not path.startswith("/bytes/"):
            self.send_error(404)
            return
        size = int(path.rsplit("/", 1)[1])
        chunked = "chunked" in query
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        first = MZ if "mz" in query else b""
        sent = 0
        try:
            while sent < size:
                block = (first + _BLOCK)[: min(MiB, size - sent)] if sent == 0 else _BLOCK
                block = block[: size - sent]
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                else:
                    self.wfile.write(block)
                sent += len(block)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def do_POST(self) -> None:
        count = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                count += self._discard(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            count = self._discard(int(self.headers.get("Content-Length", "0")))
        body = f"{count}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _discard(self, size: int) -> int:
        count = 0
        while count < size and (got := self.rfile.read(min(size - count, MiB))):
            count += len(got)
        return count

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def bytes_origin() -> Iterator[int]:
    """The generating origin on 127.0.0.1; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BytesOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


# -- clients ------------------------------------------------------------------------------


def download(proxy: int, origin: int, size: int, client: str, query: str = "") -> tuple[int, int]:
    """GET ``size`` bytes through the proxy from ``client``; (status, bytes received)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=60, source_address=(client, 0))
    got = 0
    try:
        conn.request("GET", f"http://localhost:{origin}/bytes/{size}{query}")
        response = conn.getresponse()
        try:
            while chunk := response.read(MiB):
                got += len(chunk)
        except (http.client.IncompleteRead, OSError):
            pass  # a transfer the proxy cut
        return response.status, got
    finally:
        conn.close()


def _blocks(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        block = _BLOCK[: size - sent]
        sent += len(block)
        yield block


def upload(
    proxy: int, host: str, size: int, client: str, *, chunked: bool = False
) -> tuple[int, str]:
    """POST ``size`` bytes through the proxy to ``http://HOST/sink``; (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=120, source_address=(client, 0))
    try:
        headers = {"Content-Type": "application/octet-stream"}
        if not chunked:
            headers["Content-Length"] = str(size)
        conn.request(
            "POST",
            f"http://{host}/sink",
            body=_blocks(size),
            headers=headers,
            encode_chunked=chunked,
        )
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def huge_header(proxy: int, origin: int, size: int, client: str) -> tuple[int | None, int]:
    """Send a request whose headers go on for ``size`` bytes; (status answered, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", proxy), timeout=30, source_address=(client, 0))
    sent = 0
    answer = b""
    try:
        sock.sendall(f"GET http://localhost:{origin}/bytes/1 HTTP/1.1\r\nX-Filler: ".encode())
        piece = b"a" * (64 * 1024)
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(piece)
        sock.settimeout(10)
        try:
            while len(answer) < 12 and (data := sock.recv(4096)):
                answer += data
        except OSError:
            pass
    finally:
        sock.close()
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, sent


# -- memory -------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class Sampler:
    """Samples a process's RSS every 0.1 s in a thread; ``peak`` is the largest seen (KiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])
            self._stop.wait(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])


# -- the proxy ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def proxy(
    tmp: Path, *extra: str, policy: str = POLICY, settings_extra: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """``schoolgate run`` with the demo lists on an ephemeral port (``.args[-1]`` is it)."""
    port = free_port()
    config = tmp / "config"
    config.mkdir(parents=True, exist_ok=True)
    demo = ROOT / "blocklists" / "demo"
    (config / "schoolgate.yaml").write_text(
        f"listen: 127.0.0.1:{port}\nmodes: [regular]\ndata_dir: {tmp / 'var'}\n"
        f"sources:\n  ut1: {{path: {demo / 'ut1'}, format: ut1}}\n"
        f"  iwf: {{path: {demo / 'iwf.txt'}, format: iwf}}\n{settings_extra}"
    )
    (config / "policy.yaml").write_text(policy)
    exe = Path(sys.executable).with_name("schoolgate")
    stderr = (tmp / "stderr").open("wb")
    process = subprocess.Popen(
        [str(exe), "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    process.port = port  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"schoolgate run did not start: {(tmp / 'stderr').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()


# -- the bench ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB per download (1024)")
    parser.add_argument("--upload", type=int, default=512, help="MiB per upload (512)")
    parser.add_argument("--header", type=int, default=128, help="MiB of headers (128)")
    parser.add_argument("--bound", type=int, default=64, help="allowed growth in MiB (64)")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="the limits off (mitmproxy as before), for a baseline: use small sizes",
    )
    args = parser.parse_args()
    extra = ["--set", "stream_large_bodies=1000g", "--set", "schoolgate_max_header_kb=0"]
    rows: list[tuple[str, float, int, int]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        bytes_origin() as origin,
        proxy(Path(tmp), *(extra if args.unbounded else [])) as p,
    ):
        port: int = p.port  # type: ignore[attr-defined]
        download(port, origin, MiB, PUPIL)  # warm up: first request loads lazily
        base = memory_kib(p.pid)["VmRSS"]
        sink = f"localhost:{origin}"
        phases: list[tuple[str, Callable[[], object]]] = [
            ("4 x download, no rules", lambda: _parallel(port, origin, args.size, PUPIL, "")),
            ("4 x download, rules", lambda: _parallel(port, origin, args.size, STAFF, "")),
            ("4 x chunked, rules", lambda: _parallel(port, origin, args.size, STAFF, "?chunked")),
            (
                "upload",
                lambda: _check(upload(port, f"localhost:{origin}", args.upload * MiB, PUPIL)),
            ),
            (
                "upload, chunked",
                lambda: _check(upload(port, sink, args.upload * MiB, PUPIL, chunked=True)),
            ),
            ("headers", lambda: _431(huge_header(port, origin, args.header * MiB, PUPIL), args)),
        ]
        for name, phase in phases:
            started = time.monotonic()
            with Sampler(p.pid) as sampler:
                phase()
            rows.append((name, time.monotonic() - started, sampler.peak, sampler.peak - base))
        hwm = memory_kib(p.pid)["VmHWM"]
    print(f"proxy RSS at start (after one request): {base / 1024:.1f} MiB")
    print(f"{'phase':28} {'seconds':>8} {'peak RSS MiB':>13} {'growth MiB':>11}")
    for name, seconds, peak, growth in rows:
        print(f"{name:28} {seconds:8.1f} {peak / 1024:13.1f} {growth / 1024:11.1f}")
    print(f"VmHWM (peak over the whole run): {hwm / 1024:.1f} MiB; bound: start + {args.bound} MiB")
    over = (hwm - base) / 1024 > args.bound
    print("OVER THE BOUND" if over else "within the bound")
    return 1 if over else 0


def _parallel(port: int, origin: int, size_mib: int, client: str, query: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: download(port, origin, size_mib * MiB, client, query), range(4))
        )
    for status, got in results:
        if (status, got) != (200, size_mib * MiB):
            raise RuntimeError(f"download: {status}, {got} bytes of {size_mib * MiB}")


def _check(result: tuple[int, str]) -> None:
    if result[0] != 200:
        raise RuntimeError(f"upload: {result}")


def _431(result: tuple[int | None, int], args: argparse.Namespace) -> None:
    if result[0] != 431 and not args.unbounded:
        raise RuntimeError(f"headers: {result}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
