"""``make bench`` (proxies): bare mitmdump beside Schoolgate with 1 and 2 workers, one run.

Run from the repository root: ``.venv/bin/python -m bench.proxies`` (``--quick`` for
short runs and one round, ``--profile`` to add a cProfile of one worker under the same
load, ``--spy ROW`` to sample every thread of one row with py-spy and print where its
CPU went, thread by thread).

Set-up, after ../shared/peers/bench_proxies.sh so the figures compare with
../shared/peers/RESULTS.md:

* origin: nginx (nginx-light), one worker, ``return 200`` with a 10-byte body, on
  127.0.0.1 (an ephemeral port);
* load: wrk, ``-c50`` connections, with ``bench/rotate.lua`` replaying the first
  10,000 hosts of ../shared/traffic/umbrella-top-100k.txt as absolute-form
  ``GET http://127.0.0.1:ORIGIN/`` requests carrying ``Host: <real host>`` (the
  peers' ``TARGET=`` mode: no DNS anywhere, and Schoolgate decides on the Host);
* Schoolgate: the UT1 sample lists of ../shared/blocklists-sample (about 650k
  domains; the demo lists when the sample is absent), compiled once before the
  runs; the bench client 127.0.0.1 is a guest with pupil rules, so some hosts
  are blocked (403 without an upstream request, counted as "non-2xx") and,
  being "unacceptable" for pupils, each raises an incident (a store row). Two
  more rows separate the costs: "schoolgate-1w-allow" runs the same lookups
  with a policy that blocks nothing, and "schoolgate-1w-noincident" blocks the
  same requests as "blocked" (no incident); "schoolgate-1w-all-protections" adds
  every protection the demo policy gives pupils (safe search, downloads, HTTPS
  without SNI, DNS-over-HTTPS, the escalation table and concerning search
  terms). The access log is written as in production, with the default SQLite
  store in the run's data folder.
* HTML with content analysis (``html_section``): the same origin serves 20 HTML
  pages of about 100 KB made from this machine's HTML documentation (as
  ``bench.content`` measures them) under a unique path per request
  (``/u/N/pK.html``), so no response is answered from the per-URL score cache:
  every HTML response is analysed. Rows: bare mitmdump, Schoolgate 1 worker with
  the filtering policy, and the same with ``content: {analyse: [pages]}`` for the
  group; the access log is read afterwards to count the responses analysed.
* HTTPS (``https_section``): intercepted through CONNECT with curl against an
  nginx TLS origin, keep-alive and a new connection per request, bare mitmdump
  with the default (eager) and lazy strategies beside Schoolgate 1 and 2 workers.
* the peer (``bench/peer.py``): squid 5 with squidGuard on the same UT1 categories,
  on HTTP (the real host in the request line, the origin as squid's parent) and on
  HTTPS with ssl-bump (squidGuard sees every decrypted request). Its rows are for
  scale, with no target; left out, with the reason printed, when squid-openssl or
  squidGuard is missing (``tools/install-bench-deps``, run by ``make bench``).
* tunnels relayed, not decrypted (``tunnel_section``): a large download (MB/s, CPU
  per MB) and small requests (SNI-only HTTPS) through Schoolgate's ``no_decrypt``
  pass-through, bare mitmdump with ``--ignore-hosts`` and squid's CONNECT; curl
  trusts only the origin's certificate, so an intercepted tunnel fails the row.
* cores (``pin_cores``): wrk, curl and nginx run on the first CPU, and a one-process
  proxy (bare mitmdump, Schoolgate 1 worker) on the others, so a row is not slowed by
  its proxy moving between cores the load is using; 2 workers and squid (several
  processes) get every CPU.
* rounds (``Bench.rounds``): the HTTP, HTML and HTTPS rows run ``--rounds`` times (3;
  1 with ``--quick``) in turn, and each row's median run is the one compared.
* 2 workers / 1 worker, judged by CPU per request (``scaling_line``): with wrk, nginx
  and other work on the same 2 cores, req/s cannot show what a free core gives. The
  1 worker it is compared with runs on every CPU too ("schoolgate-1w, every CPU").
* ``--also-python PYTHON``: bare mitmdump and 1 worker again on a second CPython
  build (another venv with Schoolgate installed), in the same run.

Every row prints the load average as it ended. Every process listens on 127.0.0.1
only; every wrk run is bounded by ``-d``; all processes started here are stopped at
the end; curl runs are bounded in count and by ``--max-time``. Targets from the issue:
1 worker >= 97% of bare mitmdump's req/s (HTTP), all protections >= 90%, intercepted
keep-alive HTTPS >= 95% of bare mitmdump with its default strategy; every HTML
response analysed >= 90% of the same Schoolgate without analysis; 2 workers >= 1.8x
one worker (judged by CPU per request). Each ratio is also given by CPU per request,
steadier than req/s when other work shares the host. The figures are printed as
measured, with MET or MISSED, never adjusted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench import peer
from bench.content import html_pages

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LUA = Path(__file__).with_name("rotate.lua")
TRAFFIC = SHARED / "traffic" / "umbrella-top-100k.txt"
SAMPLE = SHARED / "blocklists-sample" / "blacklists"
DEMO = ROOT / "blocklists" / "demo"

POLICY = """\
school: Benchmark School
timezone: Europe/London
identity:
  default_group: guest
categories:
  adult: {{lists: [ut1/adult, ut1/mixed_adult]}}
  gambling: {{lists: [ut1/gambling]}}
  games: {{lists: [ut1/games]}}
  social: {{lists: [ut1/social_networks, ut1/chat]}}
  bypass: {{lists: [ut1/redirector]}}
groups:
  guest:
    default: acceptable
    allowed_ports: [443, "1024-65535"]  # the TLS origin listens on an ephemeral port
{protections}{content}    categories:
      adult: {action}
      gambling: {action}
      games: {action}
      social: {action}
      bypass: {action}
"""


# The protections the demo policy gives pupils, for the "all protections" row (with the
# escalation table and concerning search terms copied from config/).
ALL_PROTECTIONS = """\
    safe_search: strict
    downloads: {block: [executable, installer, script], max_mb: 100}
    https_without_sni: block
    doh: unacceptable
"""


# The TLS origin's host, passed through undecrypted, for the tunnel rows.
NO_DECRYPT = "no_decrypt:\n  hosts: [localhost]\n"

# Content analysis of every page, for the HTML row (``content-phrases.yaml`` copied from config/).
CONTENT = "    content: {analyse: [pages], threshold: 100, action: block}\n"
HTML_PAGES = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Cores (set by ``pin_cores``): wrk, curl and nginx on LOAD_CORES, a one-process proxy on
# PROXY_CORES. None: not pinned (one CPU, or no taskset).
LOAD_CORES: set[int] | None = None
PROXY_CORES: set[int] | None = None


def pin_cores() -> str:
    """Pin this process (and so wrk, curl and nginx, started from it) to the first core, and
    leave the others to the proxy under test; returns a line saying what was done.

    Unpinned, the one-worker rows of the same proxy varied by a third from run to run on
    this 2-CPU machine (1.48 against 2.04 ms CPU per request, the same configuration, one
    after the other), as the proxy's thread moved between the cores wrk and nginx were
    using; pinned, by under a tenth. A school's gateway has its cores to itself (the
    clients and the origins are elsewhere), which pinning is closer to as well.
    """
    global LOAD_CORES, PROXY_CORES
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or shutil.which("taskset") is None:
        return "cores: not pinned (one CPU, or no taskset)"
    LOAD_CORES, PROXY_CORES = {cores[0]}, set(cores[1:])
    os.sched_setaffinity(0, LOAD_CORES)
    return (
        f"cores: wrk, curl and nginx on CPU {cores[0]}; a one-process proxy (mitmdump, "
        f"Schoolgate 1 worker) on CPU {','.join(map(str, cores[1:]))}; Schoolgate 2 workers "
        "and the peer (squid with its helpers) on every CPU"
    )


def proxy_cores(command: list[str]) -> set[int] | None:
    """The cores for a proxy command: one-process proxies get the proxy cores; more get all."""
    workers = int(command[command.index("--workers") + 1]) if "--workers" in command else 1
    one_process = "squid" not in Path(command[0]).name and workers == 1
    return PROXY_CORES if one_process and PROXY_CORES is not None else every_core()


def every_core() -> set[int] | None:
    """Every core (None when not pinned)."""
    return None if LOAD_CORES is None or PROXY_CORES is None else LOAD_CORES | PROXY_CORES


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw.rpartition(")")[2].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += (int(stats[p][11]) + int(stats[p][12])) / ticks
        todo.extend(children.get(p, []))
    return total


@dataclass
class Row:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    errors: str
    cpu_pct: float
    start_s: float
    seconds: float = 0.0
    # The 1-minute load average as the row ended: how much else wanted the CPUs.
    load: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds the proxy spent per request: steadier than req/s on a busy host."""
        return self.cpu_pct / 100 * self.seconds * 1000 / max(self.requests, 1)


class Bench:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.origin_port = free_port()
        self.tls_port = free_port()
        self.started: list[subprocess.Popen[bytes]] = []
        self.requests = tmp / "requests.txt"
        self.html_requests = tmp / "html-requests.txt"
        self.html_warmup = tmp / "html-warmup.txt"
        self.pages = tmp / "pages"
        self.lists = SAMPLE if SAMPLE.is_dir() else DEMO / "ut1"
        self.squid: peer.Squid | None = None
        self.big = tmp / "big.bin"  # the large download for the tunnel rows
        self.origin_cert = tmp / "origin.pem"

    # -- parts -------------------------------------------------------------------------

    def start_origin(self) -> None:
        cert, key = self.tmp / "origin.pem", self.tmp / "origin.key"
        with self.big.open("wb") as big:
            # Sparse: read from the page cache, so the disk is not what is measured.
            big.truncate(self.args.tunnel_mb * 1024 * 1024)
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            "worker_processes 1;\ndaemon off;\n"
            f"pid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/nginx-error.log warn;\n"
            "events { worker_connections 8192; }\n"
            "http {\n  access_log off;\n  keepalive_requests 10000000;\n"
            "  keepalive_timeout 300s;\n"
            f"  server {{\n    listen 127.0.0.1:{self.origin_port} default_server backlog=4096;\n"
            '    location / { default_type text/plain; return 200 "ok origin\\n"; }\n'
            # /u/N/pK.html: page K under a path of its own (N), so no cache answers it
            f"    location ~ ^/[uw]/[0-9]+/(p[0-9]+\\.html)$ {{\n      alias {self.pages}/$1;\n"
            "      default_type text/html; charset utf-8;\n    }\n  }\n"
            f"  server {{\n    listen 127.0.0.1:{self.tls_port} ssl backlog=4096;\n"
            f"    listen [::1]:{self.tls_port} ssl backlog=4096;\n"
            f"    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
            f"    location = /big {{ default_type application/octet-stream; alias {self.big}; }}\n"
            '    location / { default_type text/plain; return 200 "ok origin\\n"; }\n  }\n}\n'
        )
        self.started.append(subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL))
        self.wait_http(self.origin_port, proxy=False)

    def write_requests(self) -> None:
        hosts = []
        with TRAFFIC.open() as f:
            for line in f:
                host = line.strip()
                if host and not host.startswith("#"):
                    hosts.append(host)
                if len(hosts) >= self.args.requests:
                    break
        self.requests.write_text("".join(f"{h} /\n" for h in hosts))
        # HTML: the same hosts, each request for one of the pages under a path of its own;
        # the warm-up's paths (/w/) differ from the measured run's (/u/), since each wrk run
        # starts the list again.
        for path, prefix in ((self.html_warmup, "w"), (self.html_requests, "u")):
            lines = (
                f"{hosts[n % len(hosts)]} /{prefix}/{n}/p{n % HTML_PAGES}.html\n"
                for n in range(self.args.html_requests)
            )
            path.write_text("".join(lines))

    def write_pages(self) -> int:
        """HTML_PAGES pages of about 100 KB from the installed documentation; their mean size."""
        # nginx's workers run as an unprivileged user: they may pass through the private
        # temporary folder (x only) and read the pages, nothing else.
        self.tmp.chmod(0o711)
        self.pages.mkdir(mode=0o755)
        pages = html_pages(HTML_PAGES)
        for number, page in enumerate(pages):
            path = self.pages / f"p{number}.html"
            path.write_text(page, encoding="utf-8")
            path.chmod(0o644)
        return sum(len(p.encode()) for p in pages) // len(pages)

    def write_config(
        self,
        name: str,
        action: str,
        *,
        everything: bool = False,
        content: bool = False,
        extra: str = "",
    ) -> Path:
        """A configuration; ``everything``: the demo policy's protections all on as well;
        ``content``: content analysis of every page the group reads; ``extra``: top-level
        policy keys added at the end (``no_decrypt`` for the tunnel rows).
        """
        config = self.tmp / name
        config.mkdir()
        protections = ""
        if content:
            shutil.copy(ROOT / "config" / "content-phrases.yaml", config / "content-phrases.yaml")
        if everything:
            protections = ALL_PROTECTIONS
            for copied in ("escalation.yaml", "concerning-terms.yaml"):
                shutil.copy(ROOT / "config" / copied, config / copied)
        (config / "schoolgate.yaml").write_text(
            "listen: 127.0.0.1:8080\nmodes: [regular]\n"
            # No web console: it is not what is measured, its start-up CPU landed in the
            # first rows' cpu/req, and its default port is fixed.
            "console_listen: null\n"
            f"data_dir: {self.tmp / 'var'}\n"
            "sources:\n"
            f"  ut1: {{path: {self.lists}, format: ut1}}\n"
            f"  iwf: {{path: {DEMO / 'iwf.txt'}, format: iwf}}\n"
        )
        policy = (
            POLICY.format(
                action=action, protections=protections, content=CONTENT if content else ""
            )
            + extra
        )
        (config / "policy.yaml").write_text(policy)
        return config

    def wait_http(self, port: int, *, proxy: bool, timeout: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                target = f"http://127.0.0.1:{self.origin_port}/ready" if proxy else "/ready"
                conn.request("GET", target, headers={"Host": "probe.example"})
                if conn.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing answered on 127.0.0.1:{port} in {timeout} s")

    def wrk(
        self, port: int, seconds: int, requests: Path | None = None, *, target: bool = True
    ) -> str:
        """wrk through the proxy on ``port``; ``target``: the origin's address in the URL.

        Without ``target`` the request line names the real host (``GET http://host/``), for
        the peer, which filters on the URL and forwards everything to the origin as parent.
        """
        env = {**os.environ, "REQS": str(requests or self.requests)}
        if target:
            env["TARGET"] = f"127.0.0.1:{self.origin_port}"
        return subprocess.run(
            [
                "wrk",
                f"-t{self.args.threads}",
                f"-c{self.args.connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(LUA),
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=seconds + 60,
            check=True,
        ).stdout

    def measure(
        self,
        name: str,
        command: list[str] | Callable[[int], list[str]],
        requests: Path | None = None,
        warmup: Path | None = None,
        *,
        target: bool = True,
        pinned: bool = True,
    ) -> Row:
        port = free_port()
        command = expand(command, port)
        log = (self.tmp / f"{name}.log").open("wb")
        process = self.start_proxy(command, log, pinned=pinned)
        try:
            start_s = self.wait_http(port, proxy=True)
            self.wrk(port, self.args.warmup, warmup or requests, target=target)
            spy = self.spy(name, process.pid)
            cpu0, t0 = tree_cpu_seconds(process.pid), time.monotonic()
            out = self.wrk(port, self.args.duration, requests, target=target)
            cpu = (tree_cpu_seconds(process.pid) - cpu0) / (time.monotonic() - t0) * 100
            if spy is not None:
                spy_report(name, spy)
        finally:
            self.stop(process)
        found = re.search(r"^RESULT (.*)$", out, re.M)
        if not found:
            raise RuntimeError(f"{name}: wrk printed no RESULT line:\n{out}")
        values = dict(item.split("=", 1) for item in found.group(1).split())
        seconds = int(values["requests"]) / max(float(values["rps"]), 1e-9)
        row = Row(
            name,
            float(values["rps"]),
            float(values["p50_ms"]),
            float(values["p99_ms"]),
            int(values["requests"]),
            int(values["non2xx3xx"]),
            values["errors"],
            cpu,
            start_s,
            seconds,
        )
        print_row(row)
        return row

    def spy(
        self, name: str, pid: int
    ) -> tuple[subprocess.Popen[bytes], Path, int, dict[int, float]] | None:
        """py-spy sampling every thread of the row named by ``--spy`` through its measured run.

        Unlike ``--profile`` (cProfile: the event-loop thread only, and several times
        slower) this sees the store writer's and the access log's threads too, whose CPU
        the rows count, at little cost to the run.
        """
        # A row's name is its words ("schoolgate-1w", "html schoolgate-1w-content").
        if self.args.spy is None or self.args.spy not in name.split():
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        out = self.tmp / f"{name.replace(' ', '-')}.spy"
        command = [spy, "record", "--pid", str(pid), "--duration", str(self.args.duration)]
        command += [
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--rate",
            "400",
            "-o",
            str(out),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return process, out, pid, thread_cpu(pid)

    def start_proxy(
        self, command: list[str], log: IO[bytes], *, pinned: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start a proxy under test on the cores ``pin_cores`` gives it (every core if not
        ``pinned``)."""
        cores = proxy_cores(command) if pinned else every_core()
        if cores is not None:
            command = ["taskset", "-c", ",".join(map(str, sorted(cores))), *command]
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
        self.started.append(process)
        return process

    def rounds(
        self, plan: list[tuple[str, str, list[str] | Callable[[int], list[str]], dict[str, bool]]]
    ) -> dict[str, Row]:
        """Each row of ``plan`` measured ``--rounds`` times, in turn, and its median kept."""

        def one_round() -> dict[str, Row]:
            return {
                key: self.measure(
                    name,
                    command,
                    target=options.get("target", True),
                    pinned=options.get("pinned", True),
                )
                for key, name, command, options in plan
            }

        return self.in_rounds(one_round)

    def in_rounds[K](self, one_round: Callable[[], dict[K, Row]]) -> dict[K, Row]:
        """``one_round`` (every row of a section, in turn) run ``--rounds`` times, and each
        row's median run kept (``median_row``).

        One run of a row varies by up to a fifth from the next on this machine, even
        pinned; in turn, a slow minute slows every row of a round alike, and the median
        of each row drops the odd run out. Each run is printed as it ends, and the
        median rows at the end.
        """
        runs: dict[K, list[Row]] = {}
        for n in range(self.args.rounds):
            if self.args.rounds > 1:
                print(f"round {n + 1} of {self.args.rounds}:")
            for key, row in one_round().items():
                runs.setdefault(key, []).append(row)
        rows = {key: median_row(found) for key, found in runs.items()}
        if self.args.rounds > 1:
            print(f"the median of {self.args.rounds} runs of each row (by CPU per request):")
            for row in rows.values():
                print_row(row)
        return rows

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.started)):
            self.stop(process)

    # -- HTTPS through CONNECT, intercepted ----------------------------------------------

    def curl(self, port: int, ca: Path, count: int, *, fresh: bool) -> tuple[Row, float]:
        """``count`` HTTPS GETs through the proxy with curl (20 at a time), and the wall time.

        Keep-alive: curl keeps its 20 tunnels and sends request after request in them.
        ``fresh``: a new connection (CONNECT and two TLS handshakes) for every request.
        """
        config = self.tmp / f"curl-{count}.cfg"
        if not config.exists():
            # A host name, so the client sends SNI (Schoolgate refuses HTTPS without it).
            line = f'url = "https://localhost:{self.tls_port}/"\noutput = "/dev/null"\n'
            config.write_text(line * count)
        command = [
            "curl",
            "--parallel",
            "--parallel-max",
            str(self.args.https_parallel),
            # No --http1.1: curl offers h2 and http/1.1, as a browser does, and speaks
            # what the proxy picks (HTTP/2 multiplexes the 20 transfers on one tunnel).
            "-s",
            "--proxy",
            f"http://127.0.0.1:{port}",
            "--cacert",
            str(ca),
            "--max-time",
            "30",
            "-w",
            "%{http_code} %{time_total} %{num_connects} %{http_version}\\n",
            # curl 7.88 has no --fresh-connect: "Connection: close" ends each tunnel after
            # its one response, and no session id means a full handshake every time.
            # HTTP/1.1 there, since HTTP/2 has no "Connection: close" to end a tunnel with.
            *(["--http1.1", "-H", "Connection: close", "--no-sessionid"] if fresh else []),
            "-K",
            str(config),
        ]
        t0 = time.monotonic()
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False
        ).stdout
        wall = time.monotonic() - t0
        codes, times, connects, versions = [], [], 0, set()
        for line in out.splitlines():
            code, total, opened, version = line.split()
            codes.append(code)
            times.append(float(total) * 1000)
            connects += int(opened)
            versions.add(version)
        if not codes:
            raise RuntimeError(f"curl answered nothing: {' '.join(command)}")
        times.sort()
        ok = sum(1 for c in codes if c == "200")

        def pct(q: float) -> float:
            return times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")

        row = Row("", ok / wall, pct(0.5), pct(0.99), len(codes), len(codes) - ok, "", 0, 0, wall)
        row.errors = f"{connects} connections, HTTP/{'+'.join(sorted(versions))}"
        return row, wall

    def measure_https(
        self, name: str, command: list[str] | Callable[[int], list[str]], ca: Path
    ) -> dict[str, Row]:
        """Keep-alive and new-connection HTTPS rows for one proxy, started once."""
        port = free_port()
        command = expand(command, port)
        log = (self.tmp / f"{name}.log").open("wb")
        process = self.start_proxy(command, log)
        rows: dict[str, Row] = {}
        try:
            start_s = self.wait_http(port, proxy=True)
            for mode, fresh, count in (
                ("keepalive", False, self.args.https_requests),
                ("newconn", True, self.args.https_requests // 2),
            ):
                self.curl(port, ca, max(count // 10, 50), fresh=fresh)  # warm-up
                cpu0 = tree_cpu_seconds(process.pid)
                row, wall = self.curl(port, ca, count, fresh=fresh)
                cpu = (tree_cpu_seconds(process.pid) - cpu0) / wall * 100
                row.name, row.cpu_pct, row.start_s = f"{name} {mode}", cpu, start_s
                row.load = os.getloadavg()[0]
                print_row(row)
                rows[mode] = row
        finally:
            self.stop(process)
        return rows


def expand(command: list[str] | Callable[[int], list[str]], port: int) -> list[str]:
    """A command line for a proxy on ``port``: ``{port}`` filled in, or the callable's answer."""
    if callable(command):
        return command(port)
    return [part.replace("{port}", str(port)) for part in command]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


@dataclass
class Transfer:
    """Bulk throughput of one proxy relaying a tunnel it does not decrypt."""

    name: str
    mb_per_s: float
    cpu_pct: float
    megabytes: float
    seconds: float
    idle_pct: float = 0.0

    @property
    def cpu_ms_per_mb(self) -> float:
        return self.cpu_pct / 100 * self.seconds * 1000 / max(self.megabytes, 1e-9)


def download(bench: Bench, port: int | None) -> tuple[float, float]:
    """One large HTTPS download through the proxy on ``port`` (None: direct): MB and seconds.

    curl verifies the origin's own certificate (``--cacert`` of the origin), so the
    download only succeeds if the proxy relayed the tunnel rather than intercepting it.
    """
    command = [
        "curl",
        "-sS",
        "--cacert",
        str(bench.origin_cert),
        "--max-time",
        "120",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        *(["--proxy", f"http://127.0.0.1:{port}"] if port is not None else []),
        f"https://localhost:{bench.tls_port}/big",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=150, check=False)
    size, took = [*out.stdout.split(), "0", "0"][:2]
    if out.returncode != 0 or int(size) != bench.big.stat().st_size:
        raise RuntimeError(f"tunnel download failed: {out.stderr.strip()} ({size} bytes)")
    return int(size) / 1e6, float(took)


def measure_tunnel(
    bench: Bench, name: str, command: list[str] | Callable[[int], list[str]] | None
) -> Transfer:
    """Best of ``--tunnel-runs`` downloads through one proxy (None: curl straight to nginx)."""
    process, port = None, None
    if command is not None:
        port = free_port()
        log = (bench.tmp / f"{name}.log").open("wb")
        process = bench.start_proxy(expand(command, port), log)
    try:
        idle = 0.0
        if process is not None and port is not None:
            bench.wait_http(port, proxy=True)
            time.sleep(1)
            # What the proxy spends doing nothing (timers, pollers, its console): part of
            # each row's cpu/MB, the less so the larger the download (--tunnel-mb).
            cpu0, t0 = tree_cpu_seconds(process.pid), time.monotonic()
            time.sleep(2)
            idle = (tree_cpu_seconds(process.pid) - cpu0) / (time.monotonic() - t0) * 100
        download(bench, port)  # warm-up: connections, caches
        best: Transfer | None = None
        for _ in range(bench.args.tunnel_runs):
            cpu0 = tree_cpu_seconds(process.pid) if process else 0.0
            megabytes, took = download(bench, port)
            cpu = (tree_cpu_seconds(process.pid) - cpu0) / took * 100 if process else 0.0
            row = Transfer(name, megabytes / took, cpu, megabytes, took, idle)
            if best is None or row.mb_per_s > best.mb_per_s:
                best = row
    finally:
        if process is not None:
            bench.stop(process)
    assert best is not None
    print(
        f"  {name:<28} {best.mb_per_s:8.1f} MB/s  cpu {best.cpu_pct:4.0f}%  "
        f"{best.cpu_ms_per_mb:6.2f} ms cpu/MB  (idle: cpu {best.idle_pct:.1f}%)",
        flush=True,
    )
    return best


def tunnel_section(bench: Bench, passing: Path) -> None:
    """A large download through a tunnel each proxy relays without decrypting it.

    Schoolgate passes it through as a ``no_decrypt`` host (decided on the SNI, then
    relayed); bare mitmdump with ``--ignore-hosts``; squid as a plain CONNECT relay.
    """
    print(
        f"\nTunnels relayed, not decrypted: one {bench.args.tunnel_mb} MiB HTTPS download "
        f"through CONNECT (curl verifies the origin's own certificate), best of "
        f"{bench.args.tunnel_runs} after a warm-up"
    )
    rows = {
        "direct": measure_tunnel(bench, "direct (no proxy)", None),
        "mitmdump": measure_tunnel(bench, "mitmdump --ignore-hosts", mitmdump_passthrough(bench)),
        "sg1": measure_tunnel(bench, "schoolgate-1w no_decrypt", schoolgate(passing, 1)),
    }
    squid = bench.squid
    if squid is not None:
        tunnel = lambda port: squid.command("tunnel", port)  # noqa: E731
        rows["squid"] = measure_tunnel(bench, "squid CONNECT", tunnel)
    print()
    sg, bare = rows["sg1"], rows["mitmdump"]
    for label, base in (("bare mitmdump", bare), ("squid CONNECT", rows.get("squid"))):
        if base is None:
            continue
        print(
            f"Tunnel schoolgate 1 worker / {label}: {sg.mb_per_s / base.mb_per_s:6.1%} MB/s, "
            f"{base.cpu_ms_per_mb / sg.cpu_ms_per_mb:6.1%} by cpu/MB  (no target)"
        )
    sni_only_section(bench, passing)


def sni_only_section(bench: Bench, passing: Path) -> None:
    """Small HTTPS requests through tunnels passed through: the cost of deciding on the SNI.

    As the intercepted rows (curl, 20 at a time, keep-alive and a new connection per
    request), but curl trusts only the origin's own certificate, so a tunnel that was
    intercepted instead of passed through fails the row.
    """
    print("\nSNI-only HTTPS (passed through undecrypted, decided on the SNI), as above")
    cert = bench.origin_cert
    bare = bench.measure_https("mitmdump --ignore-hosts", mitmdump_passthrough(bench), cert)
    one = bench.measure_https("schoolgate-1w no_decrypt", schoolgate(passing, 1), cert)
    print()
    for mode, label in (("keepalive", "keep-alive"), ("newconn", "new connection per request")):
        row, base = one[mode], bare[mode]
        print(
            f"SNI-only HTTPS {label}, schoolgate 1 worker / bare mitmdump --ignore-hosts: "
            f"{row.rps / base.rps:6.1%} req/s, {base.cpu_ms / row.cpu_ms:6.1%} by cpu/req  "
            "(no target)"
        )


def mitmdump_passthrough(bench: Bench) -> list[str]:
    """Bare mitmdump relaying localhost's TLS untouched (its default strategy)."""
    return [*mitmdump("eager", bench.tmp / "mitm-pass"), "--ignore-hosts", "^localhost:"]


def median_row(found: list[Row]) -> Row:
    """The run of a row kept from its rounds: the median by CPU per request (the upper
    of the two middle runs for an even count)."""
    return sorted(found, key=lambda r: r.cpu_ms)[len(found) // 2]


def print_row(row: Row) -> None:
    print(
        f"  {row.name:<28} {row.rps:>8.1f} req/s  p50 {row.p50_ms:7.2f} ms  "
        f"p99 {row.p99_ms:7.2f} ms  non-2xx {row.non2xx:>5}  cpu {row.cpu_pct:4.0f}%  "
        f"{row.cpu_ms:6.2f} ms cpu/req  load {row.load:4.1f}  {row.errors}",
        flush=True,
    )


def schoolgate(config: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "proxy",
        "run",
        "--config",
        str(config),
        "--listen",
        "127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--set",
        "schoolgate_reload_ms=0",
    ]


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401  (only whether it is installed)
    except ImportError:
        return False
    return True


def on_uvloop(command: list[str]) -> list[str]:
    """The same mitmdump or Schoolgate command, with uvloop as the event loop."""
    if Path(command[0]).name == "mitmdump":
        return [sys.executable, "-m", "bench.uvloop_run", "mitmdump", *command[1:]]
    assert command[1:3] == ["-m", "proxy"], command
    return [sys.executable, "-m", "bench.uvloop_run", "proxy", *command[3:]]


def on_python(command: list[str], python: str) -> list[str]:
    """The same mitmdump or Schoolgate command on another interpreter (its venv's mitmdump)."""
    if Path(command[0]).name == "mitmdump":
        return [str(Path(python).with_name("mitmdump")), *command[1:]]
    assert command[0] == sys.executable, command
    return [python, *command[1:]]


def python_version(python: str) -> str:
    """``3.13.0 (pyenv, no PGO)``-style: the version and whether it was built optimised."""
    code = (
        "import sys, sysconfig; a = sysconfig.get_config_var('CONFIG_ARGS') or ''; "
        "print(sys.version.split()[0], 'PGO' if 'enable-optimizations' in a else 'no PGO', "
        "'LTO' if 'with-lto' in a else 'no LTO', sep=', ')"
    )
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    return found.stdout.strip()


def python_line(label: str, row: Row, standard: Row, other: str) -> str:
    mine = python_version(sys.executable)
    return (
        f"{label} on Python {python_version(other)} / on Python {mine}: "
        f"{row.rps / standard.rps:6.1%} req/s, {standard.cpu_ms / row.cpu_ms:6.1%} by cpu/req"
    )


def uvloop_line(label: str, row: Row, standard: Row) -> str:
    return (
        f"{label} on uvloop / on asyncio's loop: {row.rps / standard.rps:6.1%} req/s, "
        f"{standard.cpu_ms / row.cpu_ms:6.1%} by cpu/req"
    )


def mitmdump(strategy: str = "lazy", confdir: Path | None = None) -> list[str]:
    exe = Path(sys.executable).with_name("mitmdump")
    return [
        str(exe),
        "-q",
        "--listen-host",
        "127.0.0.1",
        "-p",
        "{port}",
        "--set",
        f"connection_strategy={strategy}",
        "--set",
        "flow_detail=0",
        "--set",
        "termlog_verbosity=warn",
        *(["--set", f"confdir={confdir}", "--set", "ssl_insecure=true"] if confdir else []),
    ]


def ratio_line(label: str, row: Row, bare: Row, target: float) -> str:
    """``row`` against bare mitmdump by req/s and by CPU per request, with MET/MISSED."""
    ratio, cpu_ratio = row.rps / bare.rps, bare.cpu_ms / row.cpu_ms
    return (
        f"{label} / bare mitmdump: {ratio:6.1%} req/s, {cpu_ratio:6.1%} by cpu/req  "
        f"(target >= {target:.0%}: {verdict(ratio, target)} by req/s, "
        f"{verdict(cpu_ratio, target)} by cpu/req)"
    )


def http_section(
    bench: Bench, filtering: Path, allowing: Path, quiet: Path, everything: Path
) -> None:
    """Plain HTTP with wrk: bare mitmdump (lazy, as Schoolgate runs it) and Schoolgate."""
    plan: list[tuple[str, str, list[str] | Callable[[int], list[str]], dict[str, bool]]] = [
        ("mitmdump", "mitmdump (bare)", mitmdump(), {}),
        ("sg1", "schoolgate-1w", schoolgate(filtering, 1), {}),
        ("sg1every", "schoolgate-1w, every CPU", schoolgate(filtering, 1), {"pinned": False}),
        ("sg2", "schoolgate-2w", schoolgate(filtering, 2), {}),
        ("sg1allow", "schoolgate-1w-allow", schoolgate(allowing, 1), {}),
        ("sg1quiet", "schoolgate-1w-noincident", schoolgate(quiet, 1), {}),
        ("sg1all", "schoolgate-1w-all-protections", schoolgate(everything, 1), {}),
    ]
    squid = bench.squid
    if squid is not None:
        command = lambda port: squid.command("http", port)  # noqa: E731
        plan.append(("peer", "squid+squidGuard (peer)", command, {"target": False}))
    uvloop = has_uvloop()
    if uvloop:
        plan.append(("mitmdump-uv", "mitmdump (bare) uvloop", on_uvloop(mitmdump()), {}))
        plan.append(("sg1uv", "schoolgate-1w uvloop", on_uvloop(schoolgate(filtering, 1)), {}))
    other = bench.args.also_python
    if other:
        plan.append(("mitmdump-py", "mitmdump (bare) other py", on_python(mitmdump(), other), {}))
        sg_other = on_python(schoolgate(filtering, 1), other)
        plan.append(("sg1py", "schoolgate-1w other py", sg_other, {}))
    rows = bench.rounds(plan)
    bare, one, two = rows["mitmdump"], rows["sg1"], rows["sg2"]
    blocked = one.non2xx / max(one.requests, 1)
    print()
    print(
        ratio_line(f"HTTP schoolgate 1 worker ({blocked:.1%} blocked, incidents)", one, bare, 0.97)
    )
    print(ratio_line("HTTP schoolgate 1 worker, nothing blocked", rows["sg1allow"], bare, 0.97))
    print(
        ratio_line("HTTP schoolgate 1 worker, blocks, no incidents", rows["sg1quiet"], bare, 0.97)
    )
    every = rows["sg1all"]
    print(ratio_line("HTTP schoolgate 1 worker, all the demo's protections", every, bare, 0.9))
    print(scaling_line("HTTP", rows["sg1every"], two))
    if "peer" in rows:
        print(peer_lines("HTTP", rows["peer"], bare, one))
    if uvloop:
        print(uvloop_line("HTTP bare mitmdump", rows["mitmdump-uv"], bare))
        print(uvloop_line("HTTP schoolgate 1 worker", rows["sg1uv"], one))
    if other:
        print(python_line("HTTP bare mitmdump", rows["mitmdump-py"], bare, other))
        print(python_line("HTTP schoolgate 1 worker", rows["sg1py"], one, other))


def analysed(log: Path, offset: int) -> tuple[int, int, int]:
    """Access-log lines from ``offset``: HTML pages served, those analysed, those blocked."""
    pages = scored = blocked = 0
    with log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            record = json.loads(raw)
            if not str(record.get("path") or "").endswith(".html") or record.get("status") != 200:
                if (record.get("content") or {}).get("outcome", "").startswith("blocked"):
                    blocked += 1
                continue
            pages += 1
            outcome = (record.get("content") or {}).get("outcome", "")
            scored += outcome in ("passed", "logged")
    return pages, scored, blocked


def html_section(bench: Bench, filtering: Path, analysing: Path) -> None:
    """HTML pages of ~100 KB: Schoolgate with every page analysed, without, and bare mitmdump."""
    size = bench.write_pages()
    print(
        f"\nHTML: {HTML_PAGES} pages of {size // 1000} KB (the installed documentation), "
        "a path of its own per request; the filtering policy, and the same with "
        "content: {analyse: [pages]} for the group"
    )
    urls, warm = bench.html_requests, bench.html_warmup
    log = bench.tmp / "var" / "access.log"
    # In rounds, as the HTTP rows, each row's median (by CPU per request) compared.
    counts = [0, 0, 0]  # HTML pages served, analysed and blocked by analysis, every round

    def one_round() -> dict[str, Row]:
        bare = bench.measure("html mitmdump (bare)", mitmdump(), urls, warm)
        plain = bench.measure("html schoolgate-1w", schoolgate(filtering, 1), urls, warm)
        offset = log.stat().st_size if log.exists() else 0
        content = bench.measure("html schoolgate-1w-content", schoolgate(analysing, 1), urls, warm)
        for i, n in enumerate(analysed(log, offset)):
            counts[i] += n
        return {"bare": bare, "plain": plain, "content": content}

    rows = bench.in_rounds(one_round)
    bare, plain, content = rows["bare"], rows["plain"], rows["content"]
    pages, scored, blocked = counts
    print()
    print(
        f"HTML schoolgate 1 worker with content analysis: {scored} of {pages} pages served "
        f"analysed ({scored / max(pages, 1):.1%}, warm-up included), {blocked} blocked by it"
    )
    ratio, cpu_ratio = content.rps / plain.rps, plain.cpu_ms / content.cpu_ms
    print(
        f"HTML schoolgate 1 worker, every page analysed / without analysis: {ratio:6.1%} req/s, "
        f"{cpu_ratio:6.1%} by cpu/req  (target >= 90%: {verdict(ratio, 0.9)} by req/s, "
        f"{verdict(cpu_ratio, 0.9)} by cpu/req; load average {os.getloadavg()[0]:.1f})"
    )
    print(ratio_line("HTML schoolgate 1 worker, every page analysed", content, bare, 0.9))
    print(
        f"HTML schoolgate 1 worker, no analysis / bare mitmdump: {plain.rps / bare.rps:6.1%} "
        f"req/s, {bare.cpu_ms / plain.cpu_ms:6.1%} by cpu/req  (no target)"
    )


def https_section(bench: Bench, filtering: Path) -> None:
    """Intercepted HTTPS: bare mitmdump (default and lazy strategies), Schoolgate 1 and 2 workers.

    The client is curl (C, 20 transfers at a time, offering h2 and http/1.1 as a
    browser does, trusting each proxy's CA), so the proxies, not the client, are the
    bottleneck; they verify nothing upstream (``ssl_insecure``: the origin's certificate
    is self-signed). The origin, nginx, speaks HTTP/1.1 only, as many sites still do.
    """
    print(
        f"\nHTTPS through CONNECT, intercepted: curl --parallel-max {bench.args.https_parallel}"
        f" (ALPN h2,http/1.1), {bench.args.https_requests} keep-alive requests, "
        f"{bench.args.https_requests // 2} with a new connection each (HTTP/1.1, Connection: "
        "close, no TLS session reuse); nginx TLS origin, HTTP/1.1"
    )
    sg_ca = bench.tmp / "var" / "mitmproxy" / "mitmproxy-ca-cert.pem"
    insecure = ["--set", "ssl_insecure=true"]
    runs: dict[str, dict[str, Row]] = {}
    eager = mitmdump("eager", bench.tmp / "mitm-eager")
    one = [*schoolgate(filtering, 1), *insecure]
    proxies: list[tuple[str, list[str] | Callable[[int], list[str]], Path]] = [
        ("mitmdump", eager, bench.tmp / "mitm-eager"),
        ("mitmdump-lazy", mitmdump("lazy", bench.tmp / "mitm-lazy"), bench.tmp / "mitm-lazy"),
        ("schoolgate-1w", one, sg_ca),
        ("schoolgate-2w", [*schoolgate(filtering, 2), *insecure], sg_ca),
    ]
    uvloop = has_uvloop()
    if uvloop:
        proxies += [
            ("mitmdump-uvloop", on_uvloop(eager), bench.tmp / "mitm-eager"),
            ("schoolgate-1w-uvloop", on_uvloop(one), sg_ca),
        ]
    other = bench.args.also_python
    if other:
        proxies += [
            ("mitmdump-other-py", on_python(eager, other), bench.tmp / "mitm-eager"),
            ("schoolgate-1w-other-py", on_python(one, other), sg_ca),
        ]
    squid = bench.squid
    if squid is not None:
        bump = lambda port: squid.command("bump", port)  # noqa: E731
        proxies.append(("peer", bump, squid.ca))

    # As the HTTP rows: each proxy --rounds times in turn, and each row's median kept.
    def one_round() -> dict[tuple[str, str], Row]:
        found: dict[tuple[str, str], Row] = {}
        for name, command, ca in proxies:
            pem = ca if ca.suffix == ".pem" else ca / "mitmproxy-ca-cert.pem"
            label = "squid-bump+squidGuard" if name == "peer" else name
            for mode, row in bench.measure_https(label, command, pem).items():
                found[name, mode] = row
        return found

    for (name, mode), row in bench.in_rounds(one_round).items():
        runs.setdefault(name, {})[mode] = row
    print()
    for mode, label, target in (
        ("keepalive", "keep-alive", 0.95),
        ("newconn", "new connection per request", None),
    ):
        bare = runs["mitmdump"][mode]
        for name in ("mitmdump-lazy", "schoolgate-1w", "schoolgate-2w"):
            row = runs[name][mode]
            if target is not None and name == "schoolgate-1w":
                print(ratio_line(f"HTTPS {label}, {name}", row, bare, target))
                continue
            print(
                f"HTTPS {label}, {name} / bare mitmdump: {row.rps / bare.rps:6.1%} req/s, "
                f"{bare.cpu_ms / row.cpu_ms:6.1%} by cpu/req  (no target)"
            )
        print(
            scaling_line(
                f"HTTPS {label},", runs["schoolgate-1w"][mode], runs["schoolgate-2w"][mode]
            )
        )
        if "peer" in runs:
            sg = runs["schoolgate-1w"][mode]
            print(peer_lines(f"HTTPS {label},", runs["peer"][mode], bare, sg))
        if uvloop:
            print(uvloop_line(f"HTTPS {label}, bare mitmdump", runs["mitmdump-uvloop"][mode], bare))
            sg = runs["schoolgate-1w"][mode]
            print(
                uvloop_line(f"HTTPS {label}, schoolgate 1w", runs["schoolgate-1w-uvloop"][mode], sg)
            )
        if other:
            sg, bare_py = runs["schoolgate-1w"][mode], runs["mitmdump-other-py"][mode]
            print(python_line(f"HTTPS {label}, bare mitmdump", bare_py, bare, other))
            sg_py = runs["schoolgate-1w-other-py"][mode]
            print(python_line(f"HTTPS {label}, schoolgate 1w", sg_py, sg, other))


def scaling_line(label: str, one: Row, two: Row) -> str:
    """2 workers against 1, judged by CPU per request, with the load the rows ran under.

    On this machine's 2 CPUs wrk, nginx and other people's work share the cores with the
    workers, so req/s cannot show what a second core gives: 2 workers find no free core.
    What carries over to a machine with a core per worker is each worker's cost per
    request: a worker at full use serves 1000 / cpu_ms req/s, and N workers N times that
    times 1 worker's cpu/req over N workers' (the efficiency, below 100% when workers
    contend for shared things: the store writer, the access log, the kernel's accept).
    """
    efficiency = one.cpu_ms / two.cpu_ms
    return (
        f"{label} schoolgate 2 workers / 1 worker: {two.rps / one.rps:5.2f}x req/s "
        f"(proxy cpu {one.cpu_pct:.0f}% -> {two.cpu_pct:.0f}%, load average "
        f"{one.load:.1f} and {two.load:.1f} on {os.cpu_count()} CPUs shared with the client "
        f"and origin); by cpu/req, with a free core per worker: {2 * efficiency:5.2f}x "
        f"(efficiency {efficiency:.0%}; target >= 1.8x: {verdict(2 * efficiency, 1.8)} "
        f"by cpu/req, {verdict(two.rps / one.rps, 1.8)} by req/s)"
    )


def peer_lines(label: str, squid: Row, bare: Row, one: Row) -> str:
    """The peer against bare mitmdump (no target: for scale), and Schoolgate against the peer."""
    return (
        f"{label} squid+squidGuard (peer) / bare mitmdump: {squid.rps / bare.rps:6.1%} req/s, "
        f"{bare.cpu_ms / squid.cpu_ms:6.1%} by cpu/req  (no target: for scale)\n"
        f"{label} schoolgate 1 worker / squid+squidGuard: {one.rps / squid.rps:6.1%} req/s, "
        f"{squid.cpu_ms / one.cpu_ms:6.1%} by cpu/req  (no target)"
    )


def prepare_peer(bench: Bench) -> None:
    """squid + squidGuard on the same lists, or one line saying why the peer is left out."""
    why_not = peer.missing()
    if why_not is not None:
        print(f"peer: not measured: {why_not}")
        return
    hosts = [line.split()[0] for line in bench.requests.read_text().splitlines()]
    bench.squid = peer.Squid(bench.tmp / "peer", bench.lists, bench.origin_port, hosts)
    bench.squid.prepare()
    print(f"peer: {bench.squid.describe()}")


THREAD = re.compile(r"thread \((0x[0-9a-f]+|(\d+))\): (.*)")
OURS = re.compile(r"\((proxy|addons|blocklists)/")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            raw = Path(f"/proc/{pid}/task/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw.rpartition(")")[2].split()
        found[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def spy_report(name: str, spy: tuple[subprocess.Popen[bytes], Path, int, dict[int, float]]) -> None:
    """The sampled row's threads by CPU, functions by own samples, and Schoolgate's by total."""
    process, out, pid, cpu0 = spy
    cpu1 = thread_cpu(pid)
    _, err = process.communicate(timeout=60)
    if not out.exists():
        print(f"spy {name}: py-spy wrote nothing: {err.decode(errors='replace').strip()}")
        return
    threads: dict[str, int] = {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in out.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        threads[frames[0]] = threads.get(frames[0], 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames[1:]):
            if OURS.search(frame):
                inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"spy {name}: {total} samples (py-spy, every thread, waits in syscalls included)")
    used = {tid: cpu1[tid] - cpu0.get(tid, 0.0) for tid in cpu1}
    names = {int(m.group(2)): m.group(3) for m in map(THREAD.match, threads) if m}
    print(f"  -- CPU by thread ({sum(used.values()):.2f} s in all)")
    for tid, seconds in sorted(used.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {seconds:6.2f} s  {names.get(tid, tid)}")
    for title, table, top in (("threads", threads, 8), ("own", own, 30), ("ours", inclusive, 40)):
        print(f"  -- {title}")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {count / max(total, 1):6.1%}  {frame}")


def verdict(value: float, target: float) -> str:
    return "MET" if value >= target else "MISSED"


def profile(bench: Bench, config: Path) -> None:
    """One worker under cProfile and the same load: where a request's time goes."""
    out = bench.tmp / "worker.prof"
    command = [sys.executable, "-m", "cProfile", "-o", str(out), *schoolgate(config, 1)[1:]]
    print("\nprofile: one worker under cProfile (slower than unprofiled), same load")
    bench.measure("profiled-1w", command)
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(25)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` shortens every run."""
    parser = argparse.ArgumentParser(prog="python -m bench.proxies", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--requests", type=int, default=10_000, help="hosts to replay")
    parser.add_argument("--quick", action="store_true", help="5 s runs, one round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="HTTP, HTTPS rows: runs of each in turn (median kept)"
    )
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one worker")
    parser.add_argument(
        "--spy",
        metavar="ROW",
        help="sample the row of that name (e.g. schoolgate-1w) with py-spy, every thread",
    )
    parser.add_argument("--https-requests", type=int, default=1000, help="keep-alive HTTPS")
    parser.add_argument("--https-parallel", type=int, default=20, help="curl transfers at once")
    parser.add_argument(
        "--also-python",
        metavar="PYTHON",
        help="another venv's python with Schoolgate installed (pip install -e .): bare "
        "mitmdump and Schoolgate 1 worker rows on it too, against this interpreter's",
    )
    parser.add_argument("--html-requests", type=int, default=50_000, help="HTML paths to replay")
    parser.add_argument("--tunnel-mb", type=int, default=256, help="size of the tunnel download")
    parser.add_argument("--tunnel-runs", type=int, default=2, help="downloads per tunnel row")
    parser.add_argument(
        "--only", choices=("http", "html", "https", "tunnel"), help="run one section (default: all)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.https_requests, args.tunnel_mb = 5, 1, 600, 64
        args.rounds = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    missing = [tool for tool in ("wrk", "nginx", "curl") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench.proxies: {' and '.join(missing)} not found: "
            "run tools/install-bench-deps (Debian), then run again",
            file=sys.stderr,
        )
        return 2
    if not TRAFFIC.exists():
        print(f"bench.proxies: {TRAFFIC} not found (../shared/traffic)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="schoolgate-bench-"))
    bench = Bench(tmp, args)
    try:
        bench.write_requests()
        filtering = bench.write_config("config-filter", "unacceptable")
        allowing = bench.write_config("config-allow", "acceptable")
        quiet = bench.write_config("config-blocked", "blocked")
        everything = bench.write_config("config-all", "unacceptable", everything=True)
        passing = bench.write_config("config-pass", "unacceptable", extra=NO_DECRYPT)
        analysing = bench.write_config("config-content", "unacceptable", content=True)
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "proxy", "check", "--config", str(filtering)],
            check=True,
            capture_output=True,
        )
        print(
            f"proxies bench: {os.cpu_count()} CPUs, lists {bench.lists} compiled in "
            f"{time.monotonic() - t0:.1f} s; {args.requests} hosts; wrk -t{args.threads} "
            f"-c{args.connections} -d{args.duration}s after {args.warmup} s warm-up"
        )
        print(pin_cores())
        bench.start_origin()
        prepare_peer(bench)
        print(f"before the rows: {load_average()}")
        if args.only in (None, "http"):
            http_section(bench, filtering, allowing, quiet, everything)
        if args.only in (None, "html"):
            html_section(bench, filtering, analysing)
        if args.only in (None, "https"):
            https_section(bench, filtering)
        if args.only in (None, "tunnel"):
            tunnel_section(bench, passing)
        if args.profile:
            profile(bench, filtering)
        print(f"after the rows: {load_average()}")
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
