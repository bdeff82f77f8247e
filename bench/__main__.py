"""``make bench``: the lookup engine beside a Python dict walk and squidGuard's helper.

Run from the repository root: ``.venv/bin/python -m bench`` (``--quick`` skips the
full-size set). For two list sets, the sample in ../shared/blocklists-sample and a
full-size set (the sample plus synthetic domains, at least 3.4M, generated into a
temporary folder), replaying ../shared/traffic (100k hostnames + 35k URLs), it prints:

* compile time, index size, load time (fresh process: open, map, checksum);
* lookups/s on one core (pinned) and p50/p99 per lookup, both *cold* (the host memo
  off: every host walked) and on a Zipf-weighted replay (memo on, as in a proxy);
* RSS and PSS of two processes with the index open (PSS shows the sharing);
* the same for a plain Python dict suffix walk (load, RSS, lookups/s) and
  squidGuard 1.6's helper (db build, lookups/s through its stdin protocol),
  with ratios. squidGuard is installed from Debian if missing; when it cannot be,
  the bench says so and goes on.

Figures from one run on a shared VM are noisy: each throughput is the best of 3.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from blocklists.compiled import CompiledBuilder, CompiledIndex, open_private
from blocklists.formats import read_source
from blocklists.index import hash_entry
from blocklists.normalise import BadURL, normalise_host, normalise_url

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
SAMPLE = SHARED / "blocklists-sample" / "blacklists"
TRAFFIC = SHARED / "traffic"
FULL_SIZE = 3_400_000
ZIPF_REQUESTS = 1_000_000
SEED = 20261123

Traffic = list[tuple[str, str | None]]


# -- data ---------------------------------------------------------------------------------


def load_traffic() -> Traffic:
    """Umbrella hostnames (host only) then ISCX URLs (host and path), canonical."""
    out: Traffic = []
    for line in (TRAFFIC / "umbrella-top-100k.txt").read_text().splitlines():
        try:
            out.append((normalise_host(line), None))
        except BadURL:
            continue
    for line in (TRAFFIC / "iscx-url-2016-benign-urls.txt").read_text().splitlines():
        try:
            url = normalise_url(line)
        except BadURL:
            continue
        out.append((url.host, url.path))
    return out


def zipf_replay(traffic: Traffic, n: int) -> Traffic:
    """n requests drawn with weight 1/rank over the hostnames, plus every URL's share."""
    rng = random.Random(SEED)
    hosts = [t for t in traffic if t[1] is None]
    urls = [t for t in traffic if t[1] is not None]
    weights = [1 / (rank + 1) for rank in range(len(hosts))]
    picked = rng.choices(hosts, weights=weights, k=n - n // 5)
    picked += rng.choices(urls, k=n // 5)
    rng.shuffle(picked)
    return picked


def make_full_size(into: Path) -> int:
    """The sample's categories plus a 'synthetic' category, FULL_SIZE domains in all."""
    total = 0
    for folder in sorted(SAMPLE.iterdir()):
        if folder.is_dir() and not folder.is_symlink():
            (into / folder.name).mkdir(parents=True)
            for kind in ("domains", "urls"):
                src = folder / kind
                if src.is_file():
                    shutil.copyfile(src, into / folder.name / kind)
                    if kind == "domains":
                        with src.open("rb") as f:
                            total += sum(1 for _ in f)
    rng = random.Random(SEED)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    tlds = ["com", "net", "org", "info", "xxx", "io", "de", "ru", "co.uk", "fr", "nl", "biz"]
    need = FULL_SIZE - total
    syn = into / "synthetic"
    syn.mkdir()
    seen: set[str] = set()
    with (syn / "domains").open("w") as out:
        while len(seen) < need:
            label = "".join(rng.choices(letters, k=rng.randint(6, 14)))
            domain = f"{label}.{rng.choice(tlds)}"
            if rng.random() < 0.1:
                domain = "".join(rng.choices(letters, k=rng.randint(2, 6))) + "." + domain
            if domain not in seen:
                seen.add(domain)
                out.write(domain + "\n")
    return total + need


# -- measuring ----------------------------------------------------------------------------


def pin_one_core() -> str:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return "pinned to one core"
    except (AttributeError, OSError):
        return "not pinned"


def throughput(fn: Callable[[str, str | None], object], traffic: Traffic, reps: int = 3) -> float:
    """Best lookups/s over reps passes."""
    best = 0.0
    gc.disable()
    try:
        for _ in range(reps):
            started = time.perf_counter()
            for host, path in traffic:
                fn(host, path)
            best = max(best, len(traffic) / (time.perf_counter() - started))
    finally:
        gc.enable()
    return best


def latencies(fn: Callable[[str, str | None], object], traffic: Traffic) -> tuple[float, float]:
    """p50 and p99 per lookup in µs, timing each call (less the timer's own cost)."""
    clock = time.perf_counter_ns
    empty = []
    for _ in range(20000):
        t0 = clock()
        empty.append(clock() - t0)
    overhead = statistics.median(empty)
    samples = []
    for host, path in traffic:
        t0 = clock()
        fn(host, path)
        samples.append(clock() - t0 - overhead)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[len(samples) * 99 // 100] / 1000


def mem_of(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process in MB."""
    rss = pss = 0.0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return rss, pss


def mapping_mem(pid: int, name: str) -> tuple[float, float]:
    """RSS and PSS in MB of the mappings of the file called ``name`` in a process."""
    rss = pss = 0.0
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith("/" + name)
            elif inside and first == "Rss:":
                rss += int(line.split()[1]) / 1024
            elif inside and first == "Pss:":
                pss += int(line.split()[1]) / 1024
    return rss, pss


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", "--child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def child_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return dict(json.loads(line))


def finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("done\n")
    proc.stdin.flush()
    proc.wait(timeout=60)


def two_processes(kind: str, target: Path, traffic_file: Path) -> dict[str, Any]:
    """RSS/PSS of two processes that hold the lists and have looked up all traffic."""
    base = child("idle", str(traffic_file))
    child_report(base)
    base_rss, base_pss = mem_of(base.pid)
    finish(base)
    first = child(kind, str(target), str(traffic_file))
    info = child_report(first)
    alone = mem_of(first.pid)
    second = child(kind, str(target), str(traffic_file))
    child_report(second)
    m1, m2 = mem_of(first.pid), mem_of(second.pid)
    name = target.name
    if kind == "private":  # the snapshot both map, named by its checksum
        name = next((target.parent / "mapped").glob("*.idx")).name
    map1, map2 = mapping_mem(first.pid, name), mapping_mem(second.pid, name)
    finish(first)
    finish(second)
    return {
        "base_rss": base_rss,
        "base_pss": base_pss,
        "alone_rss": alone[0] - base_rss,
        "alone_pss": alone[1] - base_pss,
        "rss": (m1[0] - base_rss, m2[0] - base_rss),
        "pss": (m1[1] - base_pss, m2[1] - base_pss),
        "load_ms": info["load_ms"],
        "map_rss": (map1[0], map2[0]),
        "map_pss": (map1[1], map2[1]),
    }


# -- the three implementations --------------------------------------------------------------


class DictWalk:
    """The plain Python baseline: host -> lists dict, suffix walk, url-prefix dict."""

    def __init__(self) -> None:
        self.hosts: dict[str, list[str]] = {}
        self.paths: dict[str, list[tuple[str, str]]] = {}

    # a ListSink
    def declare(self, list_name: str) -> None:
        pass

    def add(self, list_name: str, entry: str) -> None:
        slash = entry.find("/")
        if slash < 0:
            self.hosts.setdefault(entry, []).append(list_name)
        else:
            self.paths.setdefault(entry[:slash], []).append((entry[slash:], list_name))

    def add_many(self, list_name: str, entries: Iterable[str]) -> None:
        for entry in entries:
            self.add(list_name, entry)

    def add_hashed(self, list_name: str, digest: bytes, host: str | None = None) -> None:
        pass

    def alias(self, alias_name: str, list_name: str) -> None:
        for names in self.hosts.values():
            if list_name in names:
                names.append(alias_name)

    def match(self, host: str, path: str | None = None) -> list[str]:
        hosts, paths = self.hosts, self.paths
        found: list[str] = []
        h = host
        while True:
            names = hosts.get(h)
            if names is not None:
                found += names
            if path is not None and h in paths:
                for p, name in paths[h]:
                    if path.startswith(p) and (
                        len(path) == len(p) or p.endswith("/") or path[len(p)] in "/?#;"
                    ):
                        found.append(name)
            i = h.find(".")
            if i < 0:
                return found
            h = h[i + 1 :]


def read_traffic_file(path: Path) -> Traffic:
    out: Traffic = []
    for line in path.read_text().splitlines():
        host, _, rest = line.partition("\t")
        out.append((host, rest or None))
    return out


def run_child(kind: str, args: list[str]) -> None:
    """A helper process: hold the lists, look everything up, report, wait for 'done'."""
    info: dict[str, Any] = {}
    if kind == "idle":  # the baseline: an interpreter with the modules and the traffic loaded
        traffic = read_traffic_file(Path(args[0]))
    elif kind == "open":
        started = time.perf_counter()
        index = CompiledIndex.open(Path(args[0]), cache_size=0)
        info["load_ms"] = (time.perf_counter() - started) * 1000
        traffic = read_traffic_file(Path(args[1]))
        for host, path in traffic:
            index.match(host, path)
    elif kind in ("private", "copy"):  # as the proxy opens it: a shared snapshot, or a copy
        started = time.perf_counter()
        if kind == "private":
            index = open_private(Path(args[0]), Path(args[0]).parent / "mapped", cache_size=0)
        else:
            index = CompiledIndex.open(Path(args[0]), cache_size=0, copy=True)
        info["load_ms"] = (time.perf_counter() - started) * 1000
        traffic = read_traffic_file(Path(args[1]))
        for host, path in traffic:
            index.match(host, path)
    elif kind == "dict":
        started = time.perf_counter()
        walk = DictWalk()
        read_source("ut1", Path(args[0]), "ut1", walk)
        gc.collect()
        gc.freeze()
        info["load_ms"] = (time.perf_counter() - started) * 1000
        traffic = read_traffic_file(Path(args[1]))
        for host, path in traffic:
            walk.match(host, path)
        pin_one_core()
        info["lookups_per_s"] = throughput(walk.match, traffic)
    print(json.dumps(info), flush=True)
    sys.stdin.readline()


def squidguard(lists: Path, work: Path, traffic: Traffic) -> dict[str, Any] | None:
    """Build squidGuard's db for the same lists and time its helper on the traffic."""
    exe = shutil.which("squidGuard")
    if exe is None and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "squidguard"],
            capture_output=True,
            check=False,
            timeout=300,
        )
        exe = shutil.which("squidGuard")
    if exe is None:
        return None
    db = work / "sg-db"
    (work / "sg-log").mkdir(parents=True, exist_ok=True)
    cats = []
    for folder in sorted(lists.iterdir()):
        if folder.is_dir() and not folder.is_symlink() and (folder / "domains").is_file():
            (db / folder.name).mkdir(parents=True)
            for kind in ("domains", "urls"):
                if (folder / kind).is_file():
                    shutil.copyfile(folder / kind, db / folder.name / kind)
            cats.append(folder.name)
    conf = work / "squidGuard.conf"
    lines = [f"dbhome {db}", f"logdir {work / 'sg-log'}"]
    for cat in cats:
        lines.append(f"dest {cat} {{\n  domainlist {cat}/domains")
        if (db / cat / "urls").is_file():
            lines.append(f"  urllist {cat}/urls")
        lines.append("}")
    lines.append("acl {\n  default {\n    pass " + " ".join(f"!{c}" for c in cats) + " all")
    lines.append("    redirect 302:http://blocked.invalid/?cat=%t\n  }\n}")
    conf.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    subprocess.run([exe, "-c", str(conf), "-C", "all"], capture_output=True, check=False)
    build_s = time.perf_counter() - started
    feed = work / "sg-input.txt"
    with feed.open("w") as f:
        for host, path in traffic:
            f.write(f"http://{host}{path or '/'} 127.0.0.1/- - GET\n")
    best, blocked = 0.0, 0
    for _ in range(2):
        with feed.open("rb") as stdin:
            started = time.perf_counter()
            out = subprocess.run(
                [exe, "-c", str(conf)], stdin=stdin, capture_output=True, check=False
            )
            took = time.perf_counter() - started
        best = max(best, len(traffic) / took)
        blocked = sum(1 for line in out.stdout.splitlines() if line.startswith(b"OK"))
    return {"build_s": build_s, "lookups_per_s": best, "blocked": blocked}


# -- one list set ---------------------------------------------------------------------------


def bench_set(name: str, lists: Path, traffic: Traffic, work: Path) -> dict[str, Any]:
    print(f"\n== {name}: {lists}", flush=True)
    res: dict[str, Any] = {"name": name}
    idx = work / "lists.idx"
    started = time.perf_counter()
    builder = CompiledBuilder()
    report = read_source("ut1", lists, "ut1", builder)
    builder.write(idx, started=started)
    res["compile_s"] = time.perf_counter() - started
    res["entries"] = report.total
    res["size_mb"] = idx.stat().st_size / 1e6
    del builder
    gc.collect()
    print(f"compiled {report.total:,} entries in {res['compile_s']:.1f} s", flush=True)

    traffic_file = work / "traffic.tsv"
    traffic_file.write_text("".join(f"{h}\t{p or ''}\n" for h, p in traffic))

    loads = []
    for _ in range(3):
        proc = child("open", str(idx), str(traffic_file))
        loads.append(child_report(proc)["load_ms"])
        finish(proc)
    res["load_ms"] = min(loads)

    cold = CompiledIndex.open(idx, cache_size=0)
    res["cold_lps"] = throughput(cold.match, traffic)
    res["cold_p50"], res["cold_p99"] = latencies(cold.match, traffic)
    zipf = zipf_replay(traffic, ZIPF_REQUESTS)
    warm = CompiledIndex.open(idx)
    res["zipf_lps"] = throughput(warm.match, zipf)
    res["zipf_p50"], res["zipf_p99"] = latencies(warm.match, zipf[:200_000])
    res["blocked"] = sum(1 for h, p in traffic if cold.match(h, p))
    del cold, warm
    print(f"compiled index: {res['cold_lps']:,.0f} lookups/s cold", flush=True)

    res["mem"] = two_processes("open", idx, traffic_file)
    res["opening"] = bench_opening(idx, traffic, traffic_file)
    print("measuring the dict walk", flush=True)
    dict_proc = child("dict", str(lists), str(traffic_file))
    dict_info = child_report(dict_proc)
    dict_rss, dict_pss = mem_of(dict_proc.pid)
    finish(dict_proc)
    res["dict"] = {
        **dict_info,
        "rss": dict_rss - res["mem"]["base_rss"],
        "pss": dict_pss - res["mem"]["base_pss"],
    }
    walk = DictWalk()
    read_source("ut1", lists, "ut1", walk)
    res["dict_zipf_lps"] = throughput(walk.match, zipf)
    del walk
    gc.collect()
    if name == "sample":
        res["iwf"] = bench_hashed(lists, traffic, work)
    print("measuring squidGuard", flush=True)
    res["squidguard"] = squidguard(lists, work, traffic)
    return res


def bench_opening(idx: Path, traffic: Traffic, traffic_file: Path) -> dict[str, Any]:
    """The ways to open the index, in the same run: lists.idx mapped directly (before),
    through a private snapshot (first process copies it, the next maps it), or read into
    private memory; lookups/s through each, verify() on the reload timer, and memory."""
    out: dict[str, Any] = {}
    mapped = idx.parent / "mapped"
    loads: dict[str, list[float]] = {"direct": [], "snapshot first": [], "snapshot next": []}
    loads["copy"] = []
    for _ in range(3):
        shutil.rmtree(mapped, ignore_errors=True)
        for label, kind in (
            ("direct", "open"),
            ("snapshot first", "private"),
            ("snapshot next", "private"),
            ("copy", "copy"),
        ):
            proc = child(kind, str(idx), str(traffic_file))
            loads[label].append(child_report(proc)["load_ms"])
            finish(proc)
    out["load_ms"] = {label: min(v) for label, v in loads.items()}
    direct = CompiledIndex.open(idx, cache_size=0)
    snap = open_private(idx, mapped, cache_size=0)
    copy = CompiledIndex.open(idx, cache_size=0, copy=True)
    # interleaved rounds, best of each: the machine's load drifts during a run
    lps = {"direct": 0.0, "snapshot": 0.0, "copy": 0.0}
    for _ in range(3):
        for label, index in (("direct", direct), ("snapshot", snap), ("copy", copy)):
            lps[label] = max(lps[label], throughput(index.match, traffic, reps=1))
    out["lps"] = lps
    took = []
    for _ in range(5):
        started = time.perf_counter()
        assert snap.verify()
        took.append(time.perf_counter() - started)
    out["verify_ms"] = min(took) * 1000
    del direct, snap, copy
    out["mem_snapshot"] = two_processes("private", idx, traffic_file)
    out["mem_copy"] = two_processes("copy", idx, traffic_file)
    return out


def bench_hashed(lists: Path, traffic: Traffic, work: Path) -> dict[str, float]:
    """Cold lookups/s with a 10k-entry IWF-style list beside the lists: plain URLs
    (hosts known, flagged) and the same entries given only as SHA-256 hashes."""
    plain = [f"http://iwf{i}.example/dir{i % 7}/image{i}.jpg" for i in range(10_000)]
    out: dict[str, float] = {}
    for kind in ("plain", "hashed"):
        lst = work / f"iwf-{kind}.txt"
        if kind == "plain":
            lst.write_text("\n".join(plain) + "\n")
        else:
            lst.write_text("".join(hash_entry(normalise_url(u).entry).hex() + "\n" for u in plain))
        builder = CompiledBuilder()
        read_source("ut1", lists, "ut1", builder)
        read_source("iwf", lst, "iwf", builder)
        builder.write(work / "iwf.idx")
        index = CompiledIndex.open(work / "iwf.idx", cache_size=0)
        out[kind] = throughput(index.match, traffic)
    return out


def show(res: dict[str, Any]) -> None:
    mem, d, sg = res["mem"], res["dict"], res["squidguard"]
    print(f"\n-- {res['name']}: {res['entries']:,} entries, {res['blocked']:,} of the traffic hit")
    print(f"compile                {res['compile_s']:8.1f} s      (target <= 30 s at full size)")
    print(f"index file             {res['size_mb']:8.1f} MB")
    print(f"load (fresh process)   {res['load_ms']:8.1f} ms     (target <= 100 ms)")
    print(
        f"lookups/s, cold        {res['cold_lps']:>11,.0f}   p50 {res['cold_p50']:.2f} µs, "
        f"p99 {res['cold_p99']:.2f} µs   (every host walked, memo off)"
    )
    print(
        f"lookups/s, zipf replay {res['zipf_lps']:>11,.0f}   p50 {res['zipf_p50']:.2f} µs, "
        f"p99 {res['zipf_p99']:.2f} µs   (memo on, {ZIPF_REQUESTS:,} requests)"
    )
    print(
        f"memory, 1 process      RSS +{mem['alone_rss']:.1f} MB, PSS +{mem['alone_pss']:.1f} MB "
        "(whole process, over an idle one holding the same traffic)"
    )
    print(
        f"memory, 2 processes    RSS +{mem['rss'][0]:.1f} / +{mem['rss'][1]:.1f} MB, "
        f"PSS +{mem['pss'][0]:.1f} / +{mem['pss'][1]:.1f} MB  (target <= 80 MB, shared)"
    )
    print(
        f"  the index mapping    RSS {mem['map_rss'][0]:.1f} / {mem['map_rss'][1]:.1f} MB, "
        f"PSS {mem['map_pss'][0]:.1f} / {mem['map_pss'][1]:.1f} MB  (one copy, shared)"
    )
    show_opening(res["opening"], mem)
    print(
        f"dict walk              {d['lookups_per_s']:>11,.0f} lookups/s cold, "
        f"{res['dict_zipf_lps']:,.0f} zipf; load {d['load_ms']:.0f} ms; RSS +{d['rss']:.0f} MB "
        "per process (private)"
    )
    ratio = res["cold_lps"] / d["lookups_per_s"]
    print(f"  ratio, cold           compiled/dict = {ratio:.2f}x")
    print(f"  ratio, zipf           compiled/dict = {res['zipf_lps'] / res['dict_zipf_lps']:.2f}x")
    if "iwf" in res:
        print(
            f"with a 10k IWF list    {res['iwf']['plain']:>11,.0f} lookups/s cold as plain URLs, "
            f"{res['iwf']['hashed']:,.0f} as SHA-256 only (every candidate hashed)"
        )
    if sg is None:
        print("squidGuard             missing (apt-get install squidguard failed): not compared")
        return
    print(
        f"squidGuard helper      {sg['lookups_per_s']:>11,.0f} lookups/s (stdin protocol), "
        f"db build {sg['build_s']:.1f} s, blocked {sg['blocked']:,}"
    )
    print(
        f"  ratio                 compiled cold/squidGuard = "
        f"{res['cold_lps'] / sg['lookups_per_s']:.1f}x, zipf/squidGuard = "
        f"{res['zipf_lps'] / sg['lookups_per_s']:.1f}x   (target >= 12x)"
    )


def show_opening(op: dict[str, Any], mem: dict[str, Any]) -> None:
    load, lps = op["load_ms"], op["lps"]
    snap, copy = op["mem_snapshot"], op["mem_copy"]
    print("opening (fresh process, ms; lookups/s cold in this process):")
    print(
        f"  lists.idx mapped     {load['direct']:8.1f} ms  {lps['direct']:>11,.0f}/s  "
        f"PSS +{mem['pss'][0]:.1f} / +{mem['pss'][1]:.1f} MB  (before: writes in place reach it)"
    )
    print(
        f"  private snapshot     {load['snapshot first']:8.1f} ms first, "
        f"{load['snapshot next']:.1f} ms next  {lps['snapshot']:>11,.0f}/s  "
        f"PSS +{snap['pss'][0]:.1f} / +{snap['pss'][1]:.1f} MB  (shared)"
    )
    print(
        f"  copy in memory       {load['copy']:8.1f} ms  {lps['copy']:>11,.0f}/s  "
        f"PSS +{copy['pss'][0]:.1f} / +{copy['pss'][1]:.1f} MB  (a copy per process)"
    )
    print(f"  verify() on reload   {op['verify_ms']:8.2f} ms  (every schoolgate_reload_ms)")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        run_child(argv[1], argv[2:])
        return 0
    if not SAMPLE.is_dir():
        print(f"bench: {SAMPLE} not found (../shared beside the clone)", file=sys.stderr)
        return 1
    print(f"python {sys.version.split()[0]}, {pin_one_core()}, {os.cpu_count()} CPUs")
    traffic = load_traffic()
    print(f"traffic: {len(traffic):,} lookups (hostnames and URLs from ../shared/traffic)")
    results = []
    with tempfile.TemporaryDirectory(prefix="schoolgate-bench-") as tmp:
        work = Path(tmp) / "sample"
        work.mkdir()
        results.append(bench_set("sample", SAMPLE, traffic, work))
        if "--quick" not in argv:
            full = Path(tmp) / "full"
            started = time.perf_counter()
            count = make_full_size(full / "lists")
            print(
                f"\ngenerated a full-size set: {count:,} domains in "
                f"{time.perf_counter() - started:.1f} s"
            )
            results.append(bench_set("full-size", full / "lists", traffic, full))
    for res in results:
        show(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
