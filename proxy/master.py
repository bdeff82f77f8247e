"""Building and starting mitmproxy with Schoolgate's addons.

The one module in ``proxy`` that imports mitmproxy. It sets the options a
filter needs (listen address and modes from the settings, a lazy upstream
connection so blocked hosts never get one, the CA kept in the data folder),
freezes the garbage collector after the lists are loaded, and runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from mitmproxy import certs, exceptions, master, options
from mitmproxy.addons import default_addons, errorcheck
from mitmproxy.proxy import mode_servers
from mitmproxy.utils.asyncio_utils import create_task

from addons import Pipeline, schoolgate_addons
from proxy.files import make_private
from proxy.filterset import Filterset
from proxy.redaction import install as install_redaction
from proxy.settings import Settings


class StartupErrorCheck(errorcheck.ErrorCheck):
    """mitmproxy's start-up check, ending where Schoolgate's own start-up begins.

    mitmproxy exits on any ERROR logged until every addon's ``running()`` has returned.
    That is right for what comes before (options, listening), which this still catches.
    Schoolgate's ``running()`` hooks migrate the store, which may wait up to 20 s, and
    errors logged meanwhile are ones the proxy survives by design: a policy edit that does
    not load keeps the last good policy, a store that refuses spools. Exiting on them would
    turn a technician's typo, saved while the proxy starts, into an outage.
    """

    # The master looks the check up by this name.
    name = "errorcheck"

    def running(self) -> None:
        # Called before Schoolgate's running() hooks (this addon is added before them).
        self.finish()


def mitmproxy_options(settings: Settings, *, worker: bool = False) -> dict[str, object]:
    """mitmproxy's options for these settings (a worker leaves metrics to its supervisor)."""
    data_dir = settings.data_dir
    return {
        "listen_host": settings.listen_host,
        "listen_port": settings.listen_port,
        # A parent proxy turns the regular mode into mitmproxy's upstream mode.
        "mode": [
            f"upstream:{settings.upstream}" if m == "regular" and settings.upstream else m
            for m in settings.modes
        ],
        "confdir": str(data_dir / "mitmproxy"),
        # Lazy: a request that is blocked never costs an upstream connection.
        "connection_strategy": "lazy",
        # The filter serves clients on private school networks, not the internet.
        "block_global": True,
        "schoolgate_metrics_listen": "" if worker else (settings.metrics_listen or ""),
        # Memory per connection is bounded (addons/limits.py): heads over the limit get 431,
        # bodies over the threshold stream through for every group instead of being held whole.
        "schoolgate_max_header_kb": settings.limits.max_header_kb,
        "stream_large_bodies": f"{settings.limits.stream_body_kb}k",
        "schoolgate_max_websocket_message_kb": settings.limits.max_websocket_message_kb,
    }


# mitmproxy's default addons a filter needs. mitmproxy calls every hook on every addon
# in its chain for every event (about ten per request), so each idle addon costs time on
# every request: with all 31 defaults plus Schoolgate's, hook dispatch was the largest
# item in a py-spy profile under load. Left out: the interactive and replay tools
# (browser, clientplayback, serverplayback, command_history, comment, cut, export, save,
# savehar, script, onboarding) and request rewriting a filter does not offer
# (anticache, anticomp, blocklist, mapremote, maplocal, modifybody, modifyheaders,
# stickyauth, stickycookie, proxyauth: logins are Schoolgate's ProxyLogin).
_PROXY_ADDONS = (
    "Core",
    "Block",
    "StripDnsHttpsRecords",
    "DisableH2C",
    "Proxyserver",
    "DnsResolver",
    "NextLayer",
    "TlsConfig",
    "UpstreamAuth",
    "UpdateAltSvc",
)


def proxy_addons() -> list[Any]:
    """The mitmproxy default addons that proxying and TLS interception need, in their order."""
    return [a for a in default_addons() if type(a).__name__ in _PROXY_ADDONS]


def ca_name(school: str | None) -> str:
    """The CA's common name school devices show: "<school> Schoolgate CA"."""
    return f"{school} Schoolgate CA" if school else "Schoolgate CA"


def ensure_ca(settings: Settings, school: str | None = None) -> Path:
    """Create the school's CA in the data folder if there is none; an existing CA is kept.

    Made before mitmproxy starts (mitmproxy would name it "mitmproxy"), and before
    workers start, so that they do not race to. Returns the certificate file.
    """
    confdir = settings.data_dir / "mitmproxy"
    if not (confdir / "mitmproxy-ca.pem").exists():
        certs.CertStore.create_store(
            confdir,
            "mitmproxy",
            2048,
            organization=f"{school or 'School'} Schoolgate",
            cn=ca_name(school),
        )
    certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    return confdir / "mitmproxy-ca-cert.pem"


def rotate_ca(settings: Settings, school: str | None, when: str) -> tuple[Path, Path]:
    """Retire the CA (its files move to ``retired-WHEN/``) and make a new one; (new, retired)."""
    confdir = settings.data_dir / "mitmproxy"
    retired = confdir / f"retired-{when}"
    retired.mkdir(parents=True, exist_ok=False)
    for old in sorted(confdir.glob("mitmproxy-*")):
        old.rename(retired / old.name)
    return ensure_ca(settings, school), retired


def listen_with_reuse_port() -> None:
    """Make mitmproxy bind its TCP listeners with SO_REUSEPORT, for ``run --workers``.

    mitmproxy 12 binds each TCP mode with ``asyncio.start_server(handler, host,
    port)`` in ``AsyncioServerInstance.listen`` and offers no option for
    ``reuse_port``; a subclass cannot be registered for a mode that already has
    one. So this replaces that one method in the worker process only, keeping
    mitmproxy's own path for UDP modes. ``tests/integration/test_workers.py``
    proves two workers share the port, and fails if mitmproxy changes this.
    """
    original = mode_servers.AsyncioServerInstance.listen

    async def listen(self: Any, host: str, port: int) -> list[Any]:
        if self.mode.transport_protocol != "tcp" or port == 0:
            return await original(self, host, port)
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    mode_servers.AsyncioServerInstance.listen = listen  # type: ignore[method-assign]


async def _serve(
    config_dir: Path, filterset: Filterset, extra: dict[str, str], worker: bool
) -> None:
    if worker:
        listen_with_reuse_port()
    opts = options.Options()
    m = master.Master(opts, with_termlog=True)
    m.addons.add(*proxy_addons())
    m.addons.add(StartupErrorCheck())
    # One chain entry for all of Schoolgate's addons, in their declared order: mitmproxy's
    # per-addon dispatch cost is paid once per event, not once per addon (addons/pipeline.py).
    m.addons.add(Pipeline(schoolgate_addons(config_dir, filterset)))
    opts.update(**mitmproxy_options(filterset.settings, worker=worker))
    opts.update(termlog_verbosity="warn")
    if extra:
        try:
            opts.set(*[f"{k}={v}" for k, v in extra.items()])
        except (KeyError, NotImplementedError, ValueError) as exc:
            raise exceptions.OptionsError(f"--set: {exc}") from None
    # Everything loaded so far lives as long as the process: stop the GC rescanning it.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, m.shutdown)
    if worker:
        # A worker whose supervisor is gone (killed with SIGKILL) must not keep the port.
        orphan_watch = create_task(
            _stop_when_orphaned(m, os.getppid()), name="schoolgate orphan watch", keep_ref=True
        )
    await m.run()
    if worker:
        orphan_watch.cancel()


async def _stop_when_orphaned(m: master.Master, parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    logging.getLogger("schoolgate.workers").warning("supervisor %d is gone: stopping", parent)
    m.shutdown()


def run_proxy(
    config_dir: Path, filterset: Filterset, extra: dict[str, str], *, worker: bool = False
) -> None:
    """Run the filter until stopped; an option mitmproxy rejects is a one-line error."""
    # Every log record, mitmproxy's included, withholds the hosts of illegal hits.
    install_redaction()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    make_private(filterset.settings.data_dir)  # and everything already in it (proxy/files.py)
    ensure_ca(filterset.settings, filterset.policy.school)  # the school's name, not "mitmproxy"
    # Per-connection chatter belongs in the access log, not the service log.
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    # ...but say where the proxy listens, which a technician starting it wants to see.
    logging.getLogger("mitmproxy.proxy.mode_servers").setLevel(logging.INFO)
    logging.getLogger("schoolgate").info(
        "policy %s for %s; CA certificate for school devices: %s",
        filterset.policy.source,
        filterset.policy.school,
        filterset.settings.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem",
    )
    try:
        asyncio.run(_serve(config_dir, filterset, extra, worker))
    except exceptions.OptionsError as exc:
        print(f"schoolgate run: {exc}", file=sys.stderr)
        sys.exit(1)
