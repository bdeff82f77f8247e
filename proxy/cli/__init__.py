"""The ``schoolgate`` command line.

Every subcommand takes ``--config DIR`` (default ``config/``), has
``--help``, and fails with a one-line reason and a non-zero exit on bad
input. Commands are thin: they load a filterset and call the core.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from blocklists.normalise import BadURL, normalise_url
from proxy import explain as explain_extras
from proxy.cli.ca import ca
from proxy.cli.common import config_option, fail, open_filterset
from proxy.cli.console import console
from proxy.cli.content import content
from proxy.cli.incidents import INCIDENT_COMMANDS
from proxy.cli.lists import lists
from proxy.cli.override import CHANGE_CONTROL, controls_for_explain
from proxy.cli.trust import trust
from proxy.cli.users import users
from proxy.decision import Rule
from proxy.explain import protections
from proxy.files import set_private_umask
from proxy.filterset import Filterset, load_filterset
from proxy.identity import Identity, parse_ip
from proxy.trust import rule_origin
from proxy.yamlfile import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="schoolgate")
def cli() -> None:
    """Schoolgate: a web filter for schools."""
    # Before any command writes: data files are the service user's alone (proxy/files.py).
    set_private_umask()


@cli.command()
@config_option
def check(config_dir: Path) -> None:
    """Validate the configuration: exit 0, or print FILE:LINE: error lines."""
    try:
        fs = load_filterset(config_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    for warning in fs.warnings:
        click.echo(str(warning), err=True)
    if len(fs.policy.approvers) == 1:
        click.echo(
            f"{fs.policy.source}: warning: only one approver ({fs.policy.approvers[0]}): "
            "requests they make can never be approved (a second person must); name another",
            err=True,
        )
    illegal = fs.settings.alerts.illegal
    if not (illegal.email or illegal.webhook):
        # In red: an illegal hit or a suicide search would then tell nobody at once.
        click.secho(
            f"{config_dir / 'schoolgate.yaml'}: warning: alerts.illegal names no e-mail or "
            "webhook: illegal hits and searches about suicide or self-harm alert NOBODY at once",
            err=True,
            fg="red",
            bold=True,
        )
    counts = fs.lists.counts()
    click.echo(
        f"OK: {fs.policy.source} ({len(fs.policy.groups)} groups, "
        f"{len(fs.policy.categories)} categories, {len(counts)} lists, "
        f"{sum(counts.values())} entries)"
    )


def parse_when(text: str | None, fs: Filterset) -> datetime:
    """ISO 8601 with or without a zone; without one, the policy's timezone."""
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--at {text!r}: not an ISO 8601 time (e.g. 2026-11-23T12:30)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=fs.policy.timezone)
    return when


def identity_for(fs: Filterset, user: str | None, ip: str | None, group: str | None) -> Identity:
    given = [v for v in (user, ip, group) if v is not None]
    if len(given) != 1:
        raise fail("give exactly one of --user, --ip or --group")
    if user is not None:
        user_group = fs.identities.group_of(user)
        if user_group is None:
            raise fail(f"unknown user {user!r}: not under identity.users in {fs.policy.source}")
        return Identity(user, user_group, None, "login")
    if ip is not None:
        identity = fs.identities.resolve(ip)
        if identity.ip == ip and not _is_ip(ip):
            raise fail(f"--ip {ip!r}: not an IP address")
        return identity
    assert group is not None
    if group not in fs.policy.groups:
        raise fail(f"unknown group {group!r} (groups: {', '.join(fs.policy.groups)})")
    return Identity(None, group, None, "given")


def _is_ip(text: str) -> bool:
    try:
        parse_ip(text)
    except ValueError:
        return False
    return True


@cli.command()
@click.argument("url")
@click.option("--user", help="A named user from identity.users.")
@click.option("--ip", help="A client address.")
@click.option("--group", help="A group from the policy.")
@click.option("--at", "at", help="When (ISO 8601; no zone means the policy's timezone).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
def explain(
    url: str,
    user: str | None,
    ip: str | None,
    group: str | None,
    at: str | None,
    as_json: bool,
    config_dir: Path,
) -> None:
    """The decision for URL and why: matched list and entry, rule, incident."""
    fs = open_filterset(config_dir)
    identity = identity_for(fs, user, ip, group)
    when = parse_when(at, fs)
    try:
        canonical = normalise_url(url)
    except BadURL as exc:
        raise fail(f"{url!r}: not a URL: {exc}") from None
    rules: list[Rule] = []  # every rule that matched, from the proxy's own decide()
    controls = controls_for_explain(fs.settings, when)
    decision = fs.decide_url(identity, canonical, when, controls, rules=rules)
    # an illegal hit says nothing more: no protection could matter, and none may hint where
    found = [] if decision.illegal else protections(fs, identity, canonical, when, controls)
    if as_json:
        out = decision.as_dict() | explain_extras.for_json(rules, found)
        out["identity"] = {"user": identity.user, "group": identity.group, "via": identity.source}
        out["at"] = when.isoformat()
        out["url"] = None if decision.illegal else canonical.entry
        out["from"] = rule_origin(fs.policy, decision)
        click.echo(json.dumps(out))
        return
    matched = f"{decision.matched.list}: {decision.matched.entry}" if decision.matched else "-"
    incident = f"{decision.incident} ({decision.incident_type})" if decision.incident else "none"
    click.echo(f"decision: {decision.decision}")
    click.echo(f"category: {decision.category or '-'}")
    click.echo(f"action:   {decision.action}")
    click.echo(f"incident: {incident}")
    click.echo(f"matched:  {matched}")
    click.echo(f"rule:     {decision.rule}")
    where = rule_origin(fs.policy, decision)
    if where:
        click.echo(f"from:     {where}")
    click.echo(f"who:      {identity.user or '-'} in group {identity.group} (by {identity.source})")
    for line in explain_extras.as_lines(rules, found):
        click.echo(line)


@cli.command()
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


def main() -> None:
    cli(prog_name="schoolgate")


for _command in CHANGE_CONTROL:  # override, access, policy, changes, db (proxy/cli_changes.py)
    cli.add_command(_command)
cli.add_command(users)  # proxy-login users file (proxy/users_cli.py)
for _command in INCIDENT_COMMANDS:  # incidents, report, purge (proxy/cli_incidents.py)
    cli.add_command(_command)
cli.add_command(lists)  # compile, update, lookup, stats (proxy/lists_cli.py)
cli.add_command(ca)  # show, rotate: the school's CA (proxy/ca_cli.py)
cli.add_command(console)  # the web console and its accounts (proxy/console/cli.py)
cli.add_command(content)  # learned, confirm, reject (proxy/cli_content.py)
cli.add_command(trust)  # apply a trust policy change at every site (proxy/cli_trust.py)
