"""``make bench`` (proxies): bare mitmdump beside Schoolgate with 1 and 2 workers, one run.

Run from the repository root: ``.venv/bin/python -m bench.proxies`` (``--quick`` for
short runs, ``--profile`` to add a cProfile of one worker under the same load).

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
  same requests as "blocked" (no incident). The access log is written as in
  production, with the default SQLite store in the run's data folder.

Every process listens on 127.0.0.1 only; every wrk run is bounded by ``-d``; all
processes started here are stopped at the end. Targets from the issue: 1 worker
>= 97% of bare mitmdump's req/s; 2 workers >= 1.8x one worker. The figures are
printed as measured, with MET or MISSED, never adjusted.
"""

from __future__ import annotations

import argparse
import http.client
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
from dataclasses import dataclass
from pathlib import Path

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
    categories:
      adult: {action}
      gambling: {action}
      games: {action}
      social: {action}
      bypass: {action}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class Bench:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.origin_port = free_port()
        self.started: list[subprocess.Popen[bytes]] = []
        self.requests = tmp / "requests.txt"
        self.lists = SAMPLE if SAMPLE.is_dir() else DEMO / "ut1"

    # -- parts -------------------------------------------------------------------------

    def start_origin(self) -> None:
        conf = self.tmp / "nginx.conf"
        conf.write_text(
            "worker_processes 1;\ndaemon off;\n"
            f"pid {self.tmp}/nginx.pid;\nerror_log {self.tmp}/nginx-error.log warn;\n"
            "events { worker_connections 8192; }\n"
            "http {\n  access_log off;\n  keepalive_requests 10000000;\n"
            "  keepalive_timeout 300s;\n"
            f"  server {{\n    listen 127.0.0.1:{self.origin_port} default_server backlog=4096;\n"
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

    def write_config(self, name: str, action: str) -> Path:
        config = self.tmp / name
        config.mkdir()
        (config / "schoolgate.yaml").write_text(
            "listen: 127.0.0.1:8080\nmodes: [regular]\n"
            f"data_dir: {self.tmp / 'var'}\n"
            "sources:\n"
            f"  ut1: {{path: {self.lists}, format: ut1}}\n"
            f"  iwf: {{path: {DEMO / 'iwf.txt'}, format: iwf}}\n"
        )
        (config / "policy.yaml").write_text(POLICY.format(action=action))
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

    def wrk(self, port: int, seconds: int) -> str:
        env = {
            **os.environ,
            "REQS": str(self.requests),
            "TARGET": f"127.0.0.1:{self.origin_port}",
        }
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

    def measure(self, name: str, command: list[str]) -> Row:
        port = free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        log = (self.tmp / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)
        self.started.append(process)
        try:
            start_s = self.wait_http(port, proxy=True)
            self.wrk(port, self.args.warmup)
            cpu0, t0 = tree_cpu_seconds(process.pid), time.monotonic()
            out = self.wrk(port, self.args.duration)
            cpu = (tree_cpu_seconds(process.pid) - cpu0) / (time.monotonic() - t0) * 100
        finally:
            self.stop(process)
        found = re.search(r"^RESULT (.*)$", out, re.M)
        if not found:
            raise RuntimeError(f"{name}: wrk printed no RESULT line:\n{out}")
        values = dict(item.split("=", 1) for item in found.group(1).split())
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
        )
        print(
            f"  {name:<22} {row.rps:>9.1f} req/s  p50 {row.p50_ms:7.2f} ms  "
            f"p99 {row.p99_ms:7.2f} ms  non-2xx {row.non2xx:>6}  cpu {row.cpu_pct:5.0f}%",
            flush=True,
        )
        return row

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


def mitmdump() -> list[str]:
    exe = Path(sys.executable).with_name("mitmdump")
    return [
        str(exe),
        "-q",
        "--listen-host",
        "127.0.0.1",
        "-p",
        "{port}",
        "--set",
        "connection_strategy=lazy",
        "--set",
        "flow_detail=0",
        "--set",
        "termlog_verbosity=warn",
    ]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxies", description=__doc__)
    parser.add_argument("--duration", type=int, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--requests", type=int, default=10_000, help="hosts to replay")
    parser.add_argument("--quick", action="store_true", help="5 s runs")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one worker")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 5, 1
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        print(
            f"bench.proxies: {' and '.join(missing)} not found: "
            "apt-get install wrk nginx-light (Debian), then run again",
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
        bench.start_origin()
        rows = {
            "mitmdump": bench.measure("mitmdump (bare)", mitmdump()),
            "sg1": bench.measure("schoolgate-1w", schoolgate(filtering, 1)),
            "sg2": bench.measure("schoolgate-2w", schoolgate(filtering, 2)),
            "sg1allow": bench.measure("schoolgate-1w-allow", schoolgate(allowing, 1)),
            "sg1quiet": bench.measure("schoolgate-1w-noincident", schoolgate(quiet, 1)),
        }
        bare, one, two = rows["mitmdump"].rps, rows["sg1"].rps, rows["sg2"].rps
        allow, quiet_rps = rows["sg1allow"].rps, rows["sg1quiet"].rps
        blocked = rows["sg1"].non2xx / max(rows["sg1"].requests, 1)
        print()
        print(
            f"schoolgate 1 worker / bare mitmdump: {one / bare:6.1%}  "
            f"(target >= 97%: {verdict(one / bare, 0.97)}; {blocked:.1%} of requests blocked)"
        )
        print(
            f"schoolgate 1 worker, nothing blocked / bare mitmdump: {allow / bare:6.1%}  "
            f"(target >= 97%: {verdict(allow / bare, 0.97)})"
        )
        print(
            f"schoolgate 1 worker, same blocks without incidents / bare mitmdump: "
            f"{quiet_rps / bare:6.1%}  (target >= 97%: {verdict(quiet_rps / bare, 0.97)})"
        )
        print(
            f"schoolgate 2 workers / 1 worker: {two / one:5.2f}x  "
            f"(target >= 1.8x: {verdict(two / one, 1.8)}; {os.cpu_count()} CPUs shared "
            "with wrk and nginx)"
        )
        if args.profile:
            profile(bench, filtering)
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
