"""The peer for ``bench.proxies``: squid 5 with squidGuard, set up as ../shared/peers/ does.

Three squid configurations, each a private instance in the bench's temporary folder
(nothing in /etc is used or changed; the Debian service is never started):

* ``http``: squid with squidGuard as its ``url_rewrite_program`` (8 helpers,
  ``concurrency=0``, a 302 to ``blocked.invalid`` on a block), forwarding every request
  to one parent, the nginx origin (``cache_peer ... parent``, ``never_direct``), as
  ../shared/peers/bench_proxies.sh's "squidguard" scenario. squid gets the real host
  names in the request line and a ``hosts_file`` mapping each to 127.0.0.1, since it
  resolves every name even when it forwards to a parent;
* ``bump``: squid with ssl-bump (``peek`` at step 1, then ``bump``: the client trusts
  squid's CA, squid mints a certificate per host with ``security_file_certgen`` and
  caches it), squidGuard on every decrypted request as above, no verification upstream
  (``DONT_VERIFY_PEER``, as the proxies under comparison run with ``ssl_insecure``);
* ``tunnel``: squid relaying CONNECT only, no filter: the baseline for bulk throughput
  through a tunnel that is passed through, not decrypted.

Needs Debian's ``squid-openssl`` (the plain ``squid`` package is built with GnuTLS and
has no ssl-bump) and ``squidguard``: ``tools/install-bench-deps`` installs them.
squidGuard's database is built from the same UT1 categories Schoolgate's bench policy
blocks. Running as root, squid drops to the ``proxy`` user, so the files it reads are
given to that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

# The UT1 folders behind the bench policy's blocked categories (bench/proxies.py POLICY).
CATEGORIES = ("adult", "mixed_adult", "gambling", "games", "social_networks", "chat", "redirector")
SQUIDGUARD_HELPERS = 8
CERTGEN = Path("/usr/lib/squid/security_file_certgen")


def missing() -> str | None:
    """Why the peer cannot run here, or None."""
    if shutil.which("squid") is None or shutil.which("squidGuard") is None:
        return "squid or squidGuard not installed (tools/install-bench-deps)"
    version = subprocess.run(["squid", "-v"], capture_output=True, text=True, check=False).stdout
    if "--with-openssl" not in version or not CERTGEN.exists():
        return "squid has no ssl-bump (Debian's squid is GnuTLS: install squid-openssl)"
    return None


class Squid:
    """Private squid instances (and one squidGuard database) under ``work``."""

    def __init__(self, work: Path, lists: Path, origin_port: int, hosts: list[str]) -> None:
        self.work = work
        self.lists = lists
        self.origin_port = origin_port
        self.hosts = hosts
        self.root = os.geteuid() == 0
        self.sg_conf = work / "squidGuard.conf"
        self.ca = work / "squid-ca.pem"
        self.ca_key = work / "squid-ca.key"
        self.build_s = 0.0

    def own(self, path: Path) -> None:
        """Give ``path`` (recursively) to squid's user when squid will run as ``proxy``."""
        if self.root:
            subprocess.run(["chown", "-R", "proxy:proxy", str(path)], check=True)

    def prepare(self) -> None:
        """squidGuard's database, the CA squid mints certificates with, and the hosts file."""
        self.work.mkdir(parents=True)
        if self.root:
            # squid and its helpers run as "proxy": they must pass through the bench folder.
            os.chmod(self.work.parent, 0o711)
        db, logdir = self.work / "sg-db", self.work / "sg-log"
        logdir.mkdir()
        dests = []
        for cat in CATEGORIES:
            folder = self.lists / cat
            if not (folder / "domains").is_file():
                continue
            (db / cat).mkdir(parents=True)
            dest = [f"dest {cat} {{", f"  domainlist {cat}/domains"]
            shutil.copyfile(folder / "domains", db / cat / "domains")
            if (folder / "urls").is_file():
                shutil.copyfile(folder / "urls", db / cat / "urls")
                dest.append(f"  urllist {cat}/urls")
            dests.append("\n".join([*dest, "}"]))
        names = [d.split()[1] for d in dests]
        self.sg_conf.write_text(
            f"dbhome {db}\nlogdir {logdir}\n"
            + "\n".join(dests)
            + "\nacl {\n  default {\n    pass "
            + " ".join(f"!{n}" for n in names)
            + " all\n    redirect 302:http://blocked.invalid/?cat=%t\n  }\n}\n"
        )
        self.own(self.work)
        started = time.monotonic()
        subprocess.run(
            ["squidGuard", "-c", str(self.sg_conf), "-C", "all"],
            capture_output=True,
            check=True,
            user="proxy" if self.root else None,
        )
        self.build_s = time.monotonic() - started
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=Bench squid CA", "-addext", "basicConstraints=critical,CA:TRUE"),
                *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
                *("-keyout", str(self.ca_key), "-out", str(self.ca)),
            ],
            check=True,
            capture_output=True,
        )
        lines = ["127.0.0.1 localhost probe.example", *(f"127.0.0.1 {h}" for h in self.hosts)]
        (self.work / "hosts").write_text("\n".join(lines) + "\n")
        self.own(self.work)

    def command(self, mode: str, port: int) -> list[str]:
        """The squid command line for ``mode`` (http | bump | tunnel) listening on ``port``."""
        run = self.work / f"squid-{mode}-{port}"
        run.mkdir()
        conf = [
            f"pid_filename {run}/squid.pid",
            f"cache_log {run}/cache.log",
            "access_log none",
            "cache deny all",
            "cache_mem 16 MB",
            f"coredump_dir {run}",
            "http_access allow localhost",
            "http_access deny all",
            "shutdown_lifetime 1 seconds",
            "max_filedescriptors 16384",
            "via off",
            "forwarded_for delete",
            "logfile_rotate 0",
            # No resolver here: every name the bench sends is in the hosts file.
            "dns_nameservers 127.0.0.1",
            f"hosts_file {self.work / 'hosts'}",
            "pinger_enable off",
        ]
        filtered = [
            f"url_rewrite_program /usr/bin/squidGuard -c {self.sg_conf}",
            f"url_rewrite_children {SQUIDGUARD_HELPERS} startup={SQUIDGUARD_HELPERS} idle=1 "
            "concurrency=0",
            "url_rewrite_bypass off",
        ]
        if mode == "http":
            conf += [
                f"http_port 127.0.0.1:{port}",
                f"cache_peer 127.0.0.1 parent {self.origin_port} 0 no-query no-digest default",
                "never_direct allow all",
                *filtered,
            ]
        elif mode == "bump":
            certs = run / "certs"
            subprocess.run(
                [str(CERTGEN), "-c", "-s", str(certs), "-M", "16MB"],
                capture_output=True,
                check=True,
            )
            conf += [
                f"http_port 127.0.0.1:{port} ssl-bump generate-host-certificates=on "
                f"dynamic_cert_mem_cache_size=16MB tls-cert={self.ca} tls-key={self.ca_key}",
                f"sslcrtd_program {CERTGEN} -s {certs} -M 16MB",
                "sslcrtd_children 4 startup=1 idle=1",
                "acl step1 at_step SslBump1",
                "ssl_bump peek step1",
                "ssl_bump bump all",
                "tls_outgoing_options flags=DONT_VERIFY_PEER",
                "sslproxy_cert_error allow all",
                # squidGuard sees the decrypted requests (https://host/path), not the CONNECT.
                "acl connect method CONNECT",
                "url_rewrite_access deny connect",
                *filtered,
            ]
        elif mode == "tunnel":
            conf.append(f"http_port 127.0.0.1:{port}")
        else:
            raise ValueError(mode)
        (run / "squid.conf").write_text("\n".join(conf) + "\n")
        self.own(run)
        return ["squid", "-N", "-f", str(run / "squid.conf")]

    def describe(self) -> str:
        return (
            f"squid 5 (squid-openssl) + squidGuard 1.6, {SQUIDGUARD_HELPERS} helpers, "
            f"db of {', '.join(CATEGORIES)} built in {self.build_s:.1f} s; "
            "HTTP via the origin as parent; HTTPS ssl-bump (peek, bump, certificates "
            "minted and cached), squidGuard on every decrypted request"
        )
