"""``schoolgate run``: start the filter (and the web console as a supervised child)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from proxy.cli.common import config_option, fail, open_filterset
from proxy.filterset import Filterset


@click.command()
@config_option
@click.option("--listen", help="HOST:PORT to listen on (default: listen in schoolgate.yaml).")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["regular", "transparent", "wireguard"]),
    help="Proxy mode; repeat for several (default: modes in schoolgate.yaml).",
)
@click.option(
    "--set",
    "extra",
    multiple=True,
    metavar="OPTION=VALUE",
    help="A mitmproxy option, e.g. --set ssl_insecure=true (repeatable).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Proxy processes sharing the listen port (default: workers in schoolgate.yaml).",
)
@click.option("--worker", is_flag=True, hidden=True, help="Run as one worker of --workers.")
@click.option(
    "--console/--no-console",
    "with_console",
    default=True,
    help="Also start the web console on console_listen (default: yes, unless it is null).",
)
def run(
    config_dir: Path,
    listen: str | None,
    modes: tuple[str, ...],
    extra: tuple[str, ...],
    workers: int | None,
    worker: bool,
    with_console: bool,
) -> None:
    """Start the filter (and the web console, as a supervised child process)."""
    from proxy.master import ensure_ca, run_proxy

    fs = open_filterset(config_dir)
    for warning in fs.warnings:
        click.echo(str(warning), err=True)
    settings = fs.settings
    if listen is not None:
        try:
            settings = settings.model_validate(settings.model_dump() | {"listen": listen})
        except ValueError:
            raise fail(f"--listen {listen!r}: expected HOST:PORT") from None
    if modes:
        settings = settings.model_copy(update={"modes": list(modes)})
    options: dict[str, str] = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--set {item!r}: expected OPTION=VALUE")
        options[key] = value
    count = workers if workers is not None else settings.workers
    if with_console and not worker and settings.console_listen:
        from proxy.console.child import ConsoleChild

        ConsoleChild(config_dir).start()
    if count > 1 and not worker:
        from proxy.workers import run_workers

        if "wireguard" in settings.modes:
            raise fail("--workers needs regular or transparent modes (wireguard is one UDP port)")
        # The supervisor serves the workers' summed metrics; workers must not bind that port.
        metrics = options.pop("schoolgate_metrics_listen", settings.metrics_listen)
        try:
            settings = settings.model_validate(settings.model_dump() | {"metrics_listen": metrics})
        except ValueError:
            raise fail(f"schoolgate_metrics_listen {metrics!r}: expected HOST:PORT") from None
        ensure_ca(settings, fs.policy.school)
        args = ["run", "--config", str(config_dir), "--worker", "--listen", settings.listen]
        args += [f"--mode={m}" for m in settings.modes]
        args += [f"--set={k}={v}" for k, v in options.items()]
        sys.exit(run_workers(settings, count, args))
    if settings != fs.settings:
        fs = Filterset.build(settings, fs.policy, fs.lists)
    run_proxy(config_dir, fs, options, worker=worker)
