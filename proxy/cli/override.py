"""``schoolgate override``: time-limited unblocks and switch-offs, approved by a second person."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click

from proxy.cli.auth import prove
from proxy.cli.common import (
    Store,
    by_option,
    config_option,
    fail,
    open_store,
    parse_time,
    period_end,
    show_time,
)
from proxy.controls import ScopeKind, WhatKind
from proxy.overridetarget import TargetError, site_target
from proxy.store import control


@click.group()
def override() -> None:
    """Time-limited unblocks and filter switch-offs, approved by a second person."""


def _scope(store: Store, text: str) -> tuple[ScopeKind, str | None]:
    if text == "everyone":
        return "everyone", None
    kind, sep, name = text.partition(":")
    if not sep or not name or kind not in ("user", "group"):
        raise fail(f"--for {text!r}: give user:NAME, group:NAME or everyone")
    if kind == "group" and name not in store.fs.policy.groups:
        raise fail(f"unknown group {name!r} (groups: {', '.join(store.fs.policy.groups)})")
    return cast(ScopeKind, kind), name


def _what(
    store: Store, target: str | None, category: str | None, everything: bool
) -> tuple[WhatKind, str]:
    if sum((target is not None, category is not None, everything)) != 1:
        raise fail("say what to open: a URL or host, or --category NAME, or --all")
    policy = store.fs.policy
    if everything:
        return "all", "*"
    if category is not None:
        if category not in policy.categories:
            raise fail(f"unknown category {category!r} (known: {', '.join(policy.categories)})")
        if policy.categories[category].illegal:
            raise fail(f"category {category!r} is illegal: it can never be overridden")
        return "category", category
    assert target is not None
    try:
        return site_target(store.fs, target)
    except TargetError as exc:
        raise fail(str(exc)) from None


@override.command("request")
@click.argument("target", required=False)
@click.option("--category", help="Open a whole category instead of one site.")
@click.option("--all", "everything", is_flag=True, help="Switch the filter off (never illegal).")
@click.option("--for", "scope", required=True, help="user:NAME, group:NAME or everyone.")
@click.option("--from", "start", help="When it starts (default: now).")
@click.option("--until", help="When it ends (a date means the end of that day).")
@click.option("--days", type=int, help=f"Or: how many days (default {control.DEFAULT_DAYS}).")
@click.option("--reason", required=True, help="Why: shown to the approver and the governor.")
@by_option
@config_option
def override_request(
    target: str | None,
    category: str | None,
    everything: bool,
    scope: str,
    start: str | None,
    until: str | None,
    days: int | None,
    reason: str,
    by: str,
    config_dir: Path,
) -> None:
    """Ask for TARGET (a URL or host) to be unblocked for a period; it waits for approval.

    \b
    schoolgate override request www.example.com --for group:pupil --days 14 \\
        --reason "Year 9 history: propaganda posters" --by j.meer
    """
    store = open_store(config_dir)
    what_kind, what = _what(store, target, category, everything)
    scope_kind, scope_name = _scope(store, scope)
    now = store.now()
    _, proof = prove(store.engine, now, by, "request", store.fs.settings)
    starts = parse_time(start, store, "--from") if start else now
    ends = period_end(store, starts, until, days, default_days=control.DEFAULT_DAYS)
    with store.session() as s:
        found = control.request_override(
            s,
            what_kind=what_kind,
            what=what,
            scope_kind=scope_kind,
            scope=scope_name,
            starts=starts,
            ends=ends,
            reason=reason,
            requested_by=by,
            now=now,
            extra=proof,
        )
    approvers = [a for a in store.fs.policy.approvers if a != by]
    click.echo(
        f"override #{found.id} requested: {control.what_label(found)} for "
        f"{control.scope_label(found)}, {show_time(starts, store)} to {show_time(ends, store)}; "
        f"waiting for approval by {' or '.join(approvers) or 'an approver (none named)'}"
    )


@override.command("approve")
@click.argument("override_id", type=int)
@click.option("--until", help="Set or shorten its end (a date means the end of that day).")
@click.option("--days", type=int, help="Or: how many days from now.")
@by_option
@config_option
def override_approve(
    override_id: int, until: str | None, days: int | None, by: str, config_dir: Path
) -> None:
    """Approve request ID: by an approver named in the policy, never the requester."""
    store = open_store(config_dir)
    now = store.now()
    ends = period_end(store, now, until, days, default_days=None)
    _, proof = prove(store.engine, now, by, "approve", store.fs.settings)
    with store.session() as s:
        found = control.approve_override(
            s,
            override_id,
            by=by,
            approvers=store.fs.policy.approvers,
            now=now,
            ends=ends,
            extra=proof,
        )
    click.echo(
        f"override #{found.id} approved by {by}: {control.what_label(found)} for "
        f"{control.scope_label(found)} until {show_time(found.ends, store)}"
    )


@override.command("revoke")
@click.argument("override_id", type=int)
@click.option("--reason", required=True, help="Why it ends early.")
@by_option
@config_option
def override_revoke(override_id: int, reason: str, by: str, config_dir: Path) -> None:
    """End override ID now (or withdraw a pending request)."""
    store = open_store(config_dir)
    _, proof = prove(store.engine, store.now(), by, "end", store.fs.settings)
    with store.session() as s:
        found = control.revoke_override(
            s, override_id, by=by, reason=reason, now=store.now(), extra=proof
        )
    click.echo(f"override #{found.id} revoked by {by}")


@override.command("list")
@click.option("--all", "everything", is_flag=True, help="Include revoked and expired ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@config_option
def override_list(everything: bool, as_json: bool, config_dir: Path) -> None:
    """Pending, scheduled and active overrides."""
    store = open_store(config_dir)
    now = store.now()
    with store.session() as s:
        control.record_expiries(s, now)
        found = control.overrides(s, now, everything=everything)
    for o in found:
        row = {
            "id": o.id,
            "status": control.status_of(o, now),
            "what": control.what_label(o),
            "for": control.scope_label(o),
            "from": o.starts.isoformat(),
            "until": o.ends.isoformat() if o.ends else None,
            "requested_by": o.requested_by,
            "approved_by": o.approved_by,
            "reason": o.reason,
            "reference": o.reference,
        }
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"#{o.id} {row['status']:9} {row['what']} for {row['for']} "
                f"{show_time(o.starts, store)} → {show_time(o.ends, store)}  "
                f"asked by {o.requested_by}"
                + (f", approved by {o.approved_by}" if o.approved_by else "")
                + f": {o.reason}"
            )
    if not found and not as_json:
        click.echo("no overrides")
