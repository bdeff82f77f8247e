"""``schoolgate policy apply``: changing the filter policy under change control."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.auth import prove
from proxy.cli.common import by_option, config_option, fail, open_filterset, open_store
from proxy.policy import IllegalProblem
from proxy.policyapply import apply as apply_policy
from proxy.policyapply import preview as preview_policy
from proxy.store.engine import down_reason
from proxy.store.events import apply_event, policy_refused, sha256
from proxy.yamlfile import ConfigError


@click.group()
def policy() -> None:
    """Changing the filter policy under change control."""


@policy.command("apply")
@click.argument("edited", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--reason", required=True, help="Why the policy changes.")
@click.option("--dry-run", is_flag=True, help="Validate and show the impact; change nothing.")
@by_option
@config_option
def policy_apply(edited: Path, reason: str, dry_run: bool, by: str, config_dir: Path) -> None:
    """Validate EDITED, show its impact, record the change and install it as the policy."""
    fs = open_filterset(config_dir)
    target = fs.policy.source
    text = edited.read_text(encoding="utf-8")
    try:
        shown = preview_policy(fs, text, edited)
    except ConfigError as exc:
        for problem in exc.problems[1:]:
            click.echo(str(problem), err=True)
        if not dry_run:
            _record_refusal(config_dir, exc, text, target, by, reason)
        raise fail(str(exc.problems[0])) from None
    changes, diff = shown.changes, shown.diff
    if not diff:
        raise fail(f"{edited} is the same as the policy in force: nothing to apply")
    click.echo("impact:" if changes else "impact: no decision changes (wording or layout only)")
    for line in changes:
        click.echo(f"  {line}")
    click.echo(diff.rstrip("\n"))
    if dry_run:
        click.echo("dry run: nothing recorded or installed")
        return
    if fs.settings.policy_changes == "two_person":
        raise fail(
            "policy_changes is two_person: propose the change in the console's Policy page, "
            "where a second technician or approver applies it"
        )
    store = open_store(config_dir)
    _, proof = prove(store.engine, store.now(), by, "policy", store.fs.settings)
    with store.session() as s:
        row = apply_policy(s, fs, shown, by=by, reason=reason, now=store.now(), extra=proof)
    click.echo(f"applied and recorded as change #{row.seq}; the proxy picks it up within seconds")


def _record_refusal(
    config_dir: Path, exc: ConfigError, text: str, target: Path, by: str, reason: str
) -> None:
    """Record an edit refused for weakening the illegal lists (a typo is not recorded)."""
    illegal = [str(p) for p in exc.problems if isinstance(p, IllegalProblem)]
    if not illegal:
        return
    event = policy_refused(sha256(text), str(target), illegal, "policy apply", by, reason)
    try:
        store = open_store(config_dir)
        with store.session() as s:
            apply_event(s, event)
    except click.ClickException as down:
        click.echo(f"warning: the refusal is not recorded: {down.message}", err=True)
        return
    except Exception as error:  # the refusal itself stands; only its record is missing
        click.echo(f"warning: the refusal is not recorded: {down_reason(error)}", err=True)
        return
    click.echo("the refused change is recorded in the change log", err=True)
