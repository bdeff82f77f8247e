"""Incidents on the command line: the log, the two-person review, exports.

``incidents`` (list, show, review, close, export, searches, check, digest);
``report termly`` and ``purge`` are ``proxy/cli/report.py`` and
``proxy/cli/purge.py``. They open the store as the change-control commands
do (``proxy.cli.common.open_store``). Nothing here can print the URL of an
illegal hit: the store does not hold one, and every view goes through
``proxy.incidents.store.view`` / ``where_text``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import click

from proxy.cli.auth import prove
from proxy.cli.common import (
    Store,
    config_option,
    fail,
    open_store,
    parse_time,
    site_option,
    site_scope,
)
from proxy.incidents import store as log
from proxy.incidents.alerts import Alerter, digest_channels
from proxy.incidents.c3 import C3_COLUMNS, c3_row
from proxy.incidents.digest import build as build_digest
from proxy.incidents.escalation import ESCALATION_FILE, check_against_policy, load_escalation
from proxy.incidents.models import Incident
from proxy.incidents.retention import send_digest
from proxy.incidents.searchterms import TERMS_FILE, load_terms
from proxy.policy import load_policy
from proxy.settings import load_settings
from proxy.yamlfile import ConfigError, Problem

STATUSES = ("open", "reviewed", "closed", "all", "unclosed")


def _local(value: datetime | None, store: Store) -> str:
    if value is None:
        return "-"
    return value.astimezone(store.fs.policy.timezone).strftime("%Y-%m-%d %H:%M")


def _since_until(
    store: Store, start: str | None, end: str | None
) -> tuple[datetime | None, datetime | None]:
    since = parse_time(start, store, "--from") if start else None
    until = parse_time(end, store, "--to", end_of_day=True) if end else None
    if since and until and until <= since:
        raise fail("--to is before --from")
    return since, until


@click.group()
def incidents() -> None:
    """The incident log: list, show, review (form C2), close, export, searches, check, digest."""


@incidents.command("list")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default="unclosed",
    show_default=True,
    help="Which incidents (unclosed: open and reviewed).",
)
@click.option("--severity", type=click.Choice(["illegal", "unacceptable", "concerning"]))
@click.option("--from", "start", help="First day (2026-09-01).")
@click.option("--to", "end", help="Last day, included.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@site_option
@config_option
def incidents_list(
    status: str,
    severity: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    site: str | None,
    config_dir: Path,
) -> None:
    """Incidents, oldest first: when, how many times, who, what, and their status."""
    store = open_store(config_dir)
    since, until = _since_until(store, start, end)
    with store.session() as s:
        found = log.find(
            s,
            status=None if status in ("all", "unclosed") else status,
            severity=severity,
            since=since,
            until=until,
            site=site_scope(store, site),
        )
        if status == "unclosed":
            found = [i for i in found if i.status != "closed"]
        rows = [log.view(i) for i in found]
        where = {i.id: log.where_text(i) for i in found}
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        who = row["user"] or row["client_ip"] or "-"
        click.echo(
            f"#{row['id']}  {row['first_seen'][:16].replace('T', ' ')}  x{row['count']}  "
            f"{row['severity']}  {row['incident_type']}  {row['category']}  "
            f"{who} ({row['group']})  {row['status']}  {where[row['id']]}  @{row['site']}"
        )
    if not rows and not as_json:
        click.echo("no incidents")


@incidents.command("show")
@click.argument("incident_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@config_option
def incidentsshow_time(incident_id: int, as_json: bool, config_dir: Path) -> None:
    """One incident: who, when, what, the recommended actions and every review."""
    store = open_store(config_dir)
    with store.session() as s:
        try:
            incident = log.get(s, incident_id)
        except log.ReviewError as exc:
            raise fail(str(exc)) from None
        shown = log.view(incident, log.reviews_of(s, incident_id))
        where = log.where_text(incident)
        first, last = incident.first_seen, incident.last_seen
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False))
        return
    lines = [
        f"incident #{shown['id']}  ({shown['status']})",
        f"severity:   {shown['severity']}",
        f"type:       {shown['incident_type']}",
        f"category:   {shown['category']}",
        f"who:        {shown['user'] or '-'} (group {shown['group']})",
        f"address:    {shown['client_ip'] or '-'}   device: {shown['device'] or '-'}",
        f"when:       {_local(first, store)} to {_local(last, store)}",
        f"attempts:   {shown['count']}",
        f"what:       {where}",
        f"reference:  {shown['reference'] or '-'}",
        "recommended actions (escalation.yaml):",
        *(f"  - {a}" for a in shown["recommended_actions"] or ["(none: the reviewers decide)"]),
    ]
    for n, review in enumerate(shown["reviews"], 1):
        lines += [
            f"review {n} ({review['reviewed_at'][:16].replace('T', ' ')} UTC):",
            f"  first reviewer:  {review['first_reviewer']}, {review['first_position']}",
            f"  second reviewer: {review['second_reviewer']}, {review['second_position']}",
            f"  computer used:   {review['computer']}",
            f"  reason:          {review['reason']}",
            f"  concern:         {review['concern'] or '-'}",
            f"  conclusion:      {review['conclusion']}",
            f"  action taken:    {review['action_taken']}",
        ]
    if shown["status"] == "closed":
        lines.append(
            f"closed {shown['closed_at'][:16].replace('T', ' ')} UTC by {shown['closed_by']}: "
            f"{shown['outcome']}"
        )
    click.echo("\n".join(lines))


@incidents.command("review")
@click.argument("incident_id", type=int)
@click.option("--first", "first", required=True, help="First reviewing person (name).")
@click.option("--first-position", required=True, help="Their position (e.g. DSL).")
@click.option("--second", "second", required=True, help="Second reviewing person: not the first.")
@click.option("--second-position", required=True, help="Their position.")
@click.option("--computer", required=True, help="Name and location of the computer used.")
@click.option("--reason", required=True, help="Reason for investigation.")
@click.option("--concern", help="Reason for concern (never an illegal site's address).")
@click.option("--conclusion", required=True, help="Conclusion.")
@click.option("--action", "action_taken", required=True, help="Action proposed or taken.")
@config_option
def incidents_review(
    incident_id: int,
    first: str,
    first_position: str,
    second: str,
    second_position: str,
    computer: str,
    reason: str,
    concern: str | None,
    conclusion: str,
    action_taken: str,
    config_dir: Path,
) -> None:
    """Record the two-person review of an incident (form C2); both reviewers sign in."""
    store = open_store(config_dir)
    if first.strip().casefold() != second.strip().casefold():
        # Both people at the review prove who they are (the same name is refused below).
        prove(store.engine, store.now(), first, "review", store.fs.settings)
        prove(store.engine, store.now(), second, "review", store.fs.settings)
    form = log.ReviewForm(
        first_reviewer=first,
        first_position=first_position,
        second_reviewer=second,
        second_position=second_position,
        computer=computer,
        reason=reason,
        conclusion=conclusion,
        action_taken=action_taken,
        concern=concern,
    )
    try:
        with store.session() as s:
            log.review(s, incident_id, form, store.now())
    except log.ReviewError as exc:
        raise fail(str(exc)) from None
    click.echo(f"incident #{incident_id}: review by {first} and {second} recorded")


@incidents.command("close")
@click.argument("incident_id", type=int)
@click.option("--by", "by", required=True, help="Who closes it (asks their password and code).")
@click.option("--outcome", required=True, help="The outcome, for the record.")
@config_option
def incidents_close(incident_id: int, by: str, outcome: str, config_dir: Path) -> None:
    """Close a reviewed incident with its outcome (BY signs in)."""
    store = open_store(config_dir)
    prove(store.engine, store.now(), by, "review", store.fs.settings)
    try:
        with store.session() as s:
            log.close(s, incident_id, by, outcome, store.now())
    except log.ReviewError as exc:
        raise fail(str(exc)) from None
    click.echo(f"incident #{incident_id} closed by {by}")


def _c3_row(incident: Incident, shown: dict[str, object], store: Store) -> list[str]:
    return c3_row(incident, shown, store.fs.policy.timezone)


@incidents.command("export")
@click.option("--from", "start", help="First day (2026-09-01).")
@click.option("--to", "end", help="Last day, included.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="File (default: stdout)."
)
@site_option
@config_option
def incidents_export(
    start: str | None,
    end: str | None,
    fmt: str,
    out: Path | None,
    site: str | None,
    config_dir: Path,
) -> None:
    """The reporting log (form C3) as CSV for a spreadsheet, or JSON lines."""
    store = open_store(config_dir)
    since, until = _since_until(store, start, end)
    with store.session() as s:
        found = log.find(s, since=since, until=until, site=site_scope(store, site))
        views = [(i, log.view(i, log.reviews_of(s, i.id))) for i in found]
        rows = [_c3_row(i, shown, store) for i, shown in views]
    if fmt == "json":
        text = "".join(json.dumps(shown, ensure_ascii=False) + "\n" for _, shown in views)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(C3_COLUMNS)
        writer.writerows(rows)
        text = buffer.getvalue()
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8", newline="")
        click.echo(f"{out}: {len(rows)} incidents", err=True)


@incidents.command("searches")
@click.option("--user", help="Only this user's searches.")
@click.option("--group", help="Only this group's searches.")
@click.option("--concerning", is_flag=True, help="Only searches with a concerning term.")
@click.option("--from", "start", help="First day (2026-09-01).")
@click.option("--to", "end", help="Last day, included.")
@config_option
def incidents_searches(
    user: str | None,
    group: str | None,
    concerning: bool,
    start: str | None,
    end: str | None,
    config_dir: Path,
) -> None:
    """Search terms typed into Google, Bing, DuckDuckGo, YouTube and Yahoo: who, when, what."""
    store = open_store(config_dir)
    since, until = _since_until(store, start, end)
    with store.session() as s:
        rows = log.searches(
            s, user=user, group=group, concerning=concerning, since=since, until=until
        )
        lines = [
            f"{_local(r.at, store)}  {r.user or r.client_ip or '-'} ({r.group})  {r.engine}  "
            f"{r.query!r}" + (f"  [concerning: {r.concerning}]" if r.concerning else "")
            for r in rows
        ]
    click.echo("\n".join(lines) if lines else "no searches")


@incidents.command("check")
@config_option
def incidents_check(config_dir: Path) -> None:
    """Validate escalation.yaml and concerning-terms.yaml: exit 0, or FILE:LINE: error lines."""
    problems: list[Problem] = []
    try:
        escalation = load_escalation(config_dir / ESCALATION_FILE)
    except ConfigError as exc:
        problems += exc.problems
        escalation = None
    try:
        terms = load_terms(config_dir / TERMS_FILE)
    except ConfigError as exc:
        problems += exc.problems
        terms = None
    if escalation is not None:
        try:
            policy = load_policy(load_settings(config_dir).policy)
        except ConfigError as exc:
            problems += exc.problems
        else:
            types = {
                c.incident: policy.line_of(("categories", c.name, "incident"))
                for c in policy.categories.values()
                if c.incident
            }
            types |= {"illegal": 0, "concerning_search": 0}
            problems += check_against_policy(escalation, types, str(policy.source))
    if problems:
        for problem in problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1)
    assert escalation is not None
    assert terms is not None
    click.echo(
        f"OK: {len(escalation.rows)} incident types, {terms.count} concerning terms "
        f"({config_dir / ESCALATION_FILE}, {config_dir / TERMS_FILE})"
    )


@incidents.command("digest")
@click.option("--send", is_flag=True, help="Send it to alerts.digest now, and mark them sent.")
@config_option
def incidents_digest(send: bool, config_dir: Path) -> None:
    """The incidents not yet in a digest (illegal ones alert at once): print, or --send."""
    store = open_store(config_dir)
    settings = store.fs.settings
    now = store.now()
    if send:
        if not digest_channels(settings.alerts):
            raise fail("alerts.digest names no webhook or e-mail in schoolgate.yaml")
        alerter = Alerter(max_attempts=3)
        alerter.start()
        sent = send_digest(settings, store.engine, alerter, store.fs.policy.school, now)
        alerter.stop(timeout=30)
        if alerter.failed:
            raise fail(f"digest not delivered: {alerter.failed[0][2]}")
        click.echo(f"digest of {sent} incident(s) sent")
        return
    with store.session() as s:
        found = log.find(s, site=store.fs.settings.site)
        pending = [
            i
            for i in found
            if i.digested_at is None or (i.severity == "illegal" and i.status != "closed")
        ]
        text = build_digest(pending, store.fs.policy.school, now).text
    click.echo(text)
