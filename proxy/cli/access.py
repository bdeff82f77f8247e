"""``schoolgate access``: removal of internet access rights for a user, and giving them back."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.auth import prove
from proxy.cli.common import by_option, config_option, open_store, parse_time, period_end, show_time
from proxy.store import control


@click.group()
def access() -> None:
    """Removal of internet access rights for a user, and giving them back."""


@access.command("suspend")
@click.argument("user")
@click.option("--from", "start", help="When it starts (default: now).")
@click.option("--until", help="When it ends (a date means the end of that day).")
@click.option("--days", type=int, help="Or: how many days.")
@click.option("--reason", required=True, help="Why (recorded for the governor).")
@by_option
@config_option
def access_suspend(
    user: str,
    start: str | None,
    until: str | None,
    days: int | None,
    reason: str,
    by: str,
    config_dir: Path,
) -> None:
    """Block USER everywhere except the local allow list, until --until or `access restore`."""
    store = open_store(config_dir)
    now = store.now()
    starts = parse_time(start, store, "--from") if start else now
    ends = period_end(store, starts, until, days, default_days=None)
    _, proof = prove(store.engine, now, by, "suspend", store.fs.settings)
    with store.session() as s:
        found = control.suspend(
            s, user, by=by, reason=reason, starts=starts, ends=ends, now=now, extra=proof
        )
    if user not in store.fs.policy.users:
        click.echo(
            f"warning: {user} is not under identity.users: the suspension applies when the "
            "proxy knows them by login",
            err=True,
        )
    click.echo(
        f"suspension #{found.id}: {user} has no internet access from {show_time(starts, store)} "
        + (f"until {show_time(ends, store)}" if ends else "until restored")
    )


@access.command("restore")
@click.argument("user")
@click.option("--reason", required=True, help="Why access comes back.")
@by_option
@config_option
def access_restore(user: str, reason: str, by: str, config_dir: Path) -> None:
    """Give USER their internet access back now."""
    store = open_store(config_dir)
    _, proof = prove(store.engine, store.now(), by, "suspend", store.fs.settings)
    with store.session() as s:
        control.restore(s, user, by=by, reason=reason, now=store.now(), extra=proof)
    click.echo(f"{user}'s internet access restored by {by}")


@access.command("list")
@config_option
def access_list(config_dir: Path) -> None:
    """Suspensions in force or to come."""
    store = open_store(config_dir)
    with store.session() as s:
        found = control.current_suspensions(s, store.now())
    for x in found:
        until = show_time(x.ends, store) if x.ends else "restored"
        click.echo(
            f"#{x.id} {x.user}: {show_time(x.starts, store)} → {until}, by {x.by}: {x.reason}"
        )
    if not found:
        click.echo("no suspensions")
