"""``schoolgate explain URL``: the decision for a URL and why, from the proxy's own decide()."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from blocklists.normalise import BadURL, normalise_url
from proxy import explain as explain_extras
from proxy.cli.common import config_option, fail, open_filterset
from proxy.controls import NO_CONTROLS, Controls
from proxy.decision import Rule
from proxy.explain import protections
from proxy.filterset import Filterset
from proxy.identity import Identity, parse_ip
from proxy.settings import Settings
from proxy.store import control
from proxy.store.engine import SQLITE_FILE, database_url, down_reason, make_engine, session
from proxy.trust import rule_origin


def controls_for_explain(settings: Settings, when: datetime) -> Controls:
    """The overrides and suspensions in force, for `explain`; none (with a warning) if the
    store cannot be read. Never creates or upgrades a store."""
    if not settings.database and not (settings.data_dir / SQLITE_FILE).exists():
        return NO_CONTROLS
    engine = make_engine(database_url(settings))
    try:
        with session(engine, read_only=True) as s:
            return control.load_controls(s, when)
    except Exception as exc:
        click.echo(
            f"warning: overrides and suspensions not consulted: {down_reason(exc)}", err=True
        )
        return NO_CONTROLS
    finally:
        engine.dispose()


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


@click.command()
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
