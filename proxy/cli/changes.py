"""``schoolgate changes``: the hash-chained change log: list, export for the governor, verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from proxy.cli.common import Store, config_option, fail, open_store, parse_time, show_time
from proxy.store import chain, control, export
from proxy.store.models import Change


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
            show_time(row.at, store),
            row.kind,
            row.actor or "(unattributed)",
            row.subject,
        ]
        if row.target:
            parts.append(f"for {row.target}")
        if row.until:
            parts.append(f"until {show_time(row.until, store)}")
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
