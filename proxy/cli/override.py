"""Change control on the command line: overrides, suspensions, policy changes, the log.

``override`` (request, approve, revoke, list), ``access`` (suspend, restore,
list), ``policy apply``, ``changes`` (list, export, verify) and ``db
upgrade``. Each write is one transaction that also appends to the
hash-chained change log. A store that is down is a one-line error; nothing
is half-done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import cast

import click
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from proxy.cli.auth import prove
from proxy.cli.common import config_option, fail, open_filterset
from proxy.controls import NO_CONTROLS, Controls, ScopeKind, WhatKind
from proxy.filterset import Filterset
from proxy.overridetarget import TargetError, site_target
from proxy.policy import IllegalProblem
from proxy.policyapply import apply as apply_policy
from proxy.policyapply import preview as preview_policy
from proxy.settings import Settings
from proxy.store import chain, control, export, migrate
from proxy.store.engine import (
    SQLITE_FILE,
    StoreDown,
    database_url,
    down_reason,
    is_down,
    make_engine,
    session,
)
from proxy.store.events import apply_event, policy_refused, sha256
from proxy.store.models import Change
from proxy.store.site import set_site
from proxy.yamlfile import ConfigError

by_option = click.option(
    "--by",
    "by",
    required=True,
    help="Who is doing this: their console account (asks their password and code).",
)


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


@dataclass
class Store:
    fs: Filterset
    engine: Engine

    def now(self) -> datetime:
        return datetime.now(UTC)

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with session(self.engine) as s:
                yield s
        except StoreDown as exc:
            raise fail(str(exc)) from None
        except control.ControlError as exc:
            raise fail(str(exc)) from None


def open_store(config_dir: Path) -> Store:
    """The configuration and the store, brought up to date; a store that is down is one line."""
    fs = open_filterset(config_dir)
    set_site(fs.settings.site)  # every row this command writes names its site
    url = database_url(fs.settings)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    except Exception as exc:
        if is_down(exc):
            shown = engine.url.render_as_string(hide_password=True)
            raise fail(f"the store at {shown} is unavailable: {down_reason(exc)}") from None
        raise
    return Store(fs, engine)


def parse_time(text: str, store: Store, option: str, *, end_of_day: bool = False) -> datetime:
    """ISO date or date-time; no zone means the school's timezone. A bare date as an end means
    the end of that day."""
    zone = store.fs.policy.timezone
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=zone)
            return start + timedelta(days=1) if end_of_day else start
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{option} {text!r}: not a date or time (e.g. 2026-12-18 or 2026-12-18T15:30)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=zone)


def period_end(
    store: Store, starts: datetime, until: str | None, days: int | None, *, default_days: int | None
) -> datetime | None:
    if until is not None and days is not None:
        raise fail("give --until or --days, not both")
    if until is not None:
        return parse_time(until, store, "--until", end_of_day=True)
    if days is not None:
        if days <= 0:
            raise fail("--days must be at least 1")
        return starts + timedelta(days=days)
    return starts + timedelta(days=default_days) if default_days else None


def _show(value: datetime | None, store: Store) -> str:
    if value is None:
        return "-"
    return value.astimezone(store.fs.policy.timezone).strftime("%Y-%m-%d %H:%M")


# --- override ------------------------------------------------------------------------------


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
        f"{control.scope_label(found)}, {_show(starts, store)} to {_show(ends, store)}; "
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
        f"{control.scope_label(found)} until {_show(found.ends, store)}"
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
                f"{_show(o.starts, store)} → {_show(o.ends, store)}  "
                f"asked by {o.requested_by}"
                + (f", approved by {o.approved_by}" if o.approved_by else "")
                + f": {o.reason}"
            )
    if not found and not as_json:
        click.echo("no overrides")


# --- access --------------------------------------------------------------------------------


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
        f"suspension #{found.id}: {user} has no internet access from {_show(starts, store)} "
        + (f"until {_show(ends, store)}" if ends else "until restored")
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
        until = _show(x.ends, store) if x.ends else "restored"
        click.echo(f"#{x.id} {x.user}: {_show(x.starts, store)} → {until}, by {x.by}: {x.reason}")
    if not found:
        click.echo("no suspensions")


# --- policy apply --------------------------------------------------------------------------


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


# --- changes -------------------------------------------------------------------------------


@click.group()
def changes() -> None:
    """The change-control log: list, export for the governor, verify."""


def _period(store: Store, start: str | None, end: str | None) -> export.Period:
    since = parse_time(start, store, "--from") if start else datetime(1970, 1, 1, tzinfo=UTC)
    until = (
        parse_time(end, store, "--to", end_of_day=True)
        if end
        else datetime.now(UTC) + timedelta(seconds=1)
    )
    if until <= since:
        raise fail("--to is before --from")
    return export.Period(since, until)


def _rows(
    s: Session,
    period: export.Period,
    kind: str | None = None,
    who: str | None = None,
    scope: str | None = None,
) -> list[Change]:
    query = (
        select(Change).where(Change.at >= period.start, Change.at < period.end).order_by(Change.seq)
    )
    if kind:
        query = query.where(Change.kind.startswith(kind))
    if who:
        query = query.where((Change.actor == who) | (Change.approved_by == who))
    if scope:
        query = query.where(Change.target == scope)
    return list(s.scalars(query))


@changes.command("list")
@click.option("--from", "start", help="First day (default: the beginning).")
@click.option("--to", "end", help="Last day, included (default: now).")
@click.option("--kind", help="override, access, policy, lists, or a full kind (override.approve).")
@click.option("--who", help="Only rows this person did or approved.")
@click.option("--for", "scope", help="Only rows for user:NAME, group:NAME or everyone.")
@config_option
def changes_list(
    start: str | None,
    end: str | None,
    kind: str | None,
    who: str | None,
    scope: str | None,
    config_dir: Path,
) -> None:
    """The change log, oldest first."""
    store = open_store(config_dir)
    period = _period(store, start, end)
    with store.session() as s:
        control.record_expiries(s, store.now())
        rows = _rows(s, period, kind, who, scope)
    for row in rows:
        parts = [
            f"#{row.seq}",
            _show(row.at, store),
            row.kind,
            row.actor or "(unattributed)",
            row.subject,
        ]
        if row.target:
            parts.append(f"for {row.target}")
        if row.until:
            parts.append(f"until {_show(row.until, store)}")
        if row.approved_by:
            parts.append(f"approved by {row.approved_by}")
        if row.reason:
            parts.append(f"— {row.reason}")
        click.echo("  ".join(parts))
    if not rows:
        click.echo("no changes")


@changes.command("export")
@click.option("--from", "start", required=True, help="First day of the period (2026-09-01).")
@click.option("--to", "end", required=True, help="Last day, included (2026-12-18).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "html"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="File (default: stdout)."
)
@config_option
def changes_export(start: str, end: str, fmt: str, out: Path | None, config_dir: Path) -> None:
    """The log for a period as CSV or printable HTML, with the chain head and its verification."""
    store = open_store(config_dir)
    period = _period(store, start, end)
    with store.session() as s:
        control.record_expiries(s, store.now())
    with store.session() as s:
        rows = _rows(s, period)
        check = chain.verify(s)
    render = export.to_csv if fmt == "csv" else export.to_html
    text = render(
        rows,
        school=store.fs.policy.school,
        period=period,
        made=store.now(),
        check=check,
        zone=store.fs.policy.timezone,
    )
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8", newline="")
        click.echo(f"{out}: {len(rows)} rows; {check.summary()}", err=True)
    if not check.ok:
        raise fail(check.summary())


@changes.command("verify")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="ROW:HASH",
    help="A chain head written down earlier (from an export); repeatable.",
)
@config_option
def changes_verify(anchors: tuple[str, ...], config_dir: Path) -> None:
    """Check the hash chain: exit 0 if intact, else say which rows were changed and how."""
    parsed: list[tuple[int, str]] = []
    for item in anchors:
        seq, sep, digest = item.partition(":")
        if not sep or not seq.isdigit() or len(digest) < 8:
            raise fail(f"--anchor {item!r}: expected ROW:HASH (at least 8 hex digits)")
        parsed.append((int(seq), digest))
    store = open_store(config_dir)
    with store.session() as s:
        check = chain.verify(s, parsed)
    if not check.ok:
        for problem in check.problems:
            click.echo(problem, err=True)
        raise fail(check.summary().split(":", 1)[0] + f" ({len(check.problems)} problem(s))")
    click.echo(check.summary())


# --- db ------------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_dir: Path) -> None:
    """Apply the database migrations (also done by `schoolgate run` at start)."""
    store = open_store(config_dir)
    click.echo(f"store up to date: {store.engine.url.render_as_string(hide_password=True)}")


CHANGE_CONTROL: tuple[click.Command, ...] = (override, access, policy, changes, db)
