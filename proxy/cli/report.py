"""``schoolgate report termly``: the anonymised termly report for governors."""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.common import config_option, fail, open_store, parse_time, site_option, site_scope
from proxy.incidents import report as termly


@click.group()
def report() -> None:
    """Reports for governors."""


@report.command("termly")
@click.option("--from", "start", required=True, help="First day of the term (2026-09-01).")
@click.option("--to", "end", required=True, help="Last day, included (2026-12-18).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="FILE.html or FILE.pdf.",
)
@site_option
@config_option
def report_termly(start: str, end: str, out: Path, site: str | None, config_dir: Path) -> None:
    """The anonymised termly report: incidents, blocking, change control, with charts."""
    if out.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise fail(f"--out {out}: give a .html or .pdf file")
    store = open_store(config_dir)
    since = parse_time(start, store, "--from")
    until = parse_time(end, store, "--to", end_of_day=True)
    if until <= since:
        raise fail("--to is before --from")
    with store.session() as s:
        data = termly.gather(
            s,
            store.fs.settings.data_dir,
            store.fs.policy.school,
            since,
            until,
            store.fs.policy.timezone,
            store.now(),
            site=site_scope(store, site),
        )
    page = termly.render_html(data)
    if out.suffix.lower() == ".pdf":
        try:
            termly.write_pdf(page, out)
        except termly.PdfUnavailable as exc:
            raise fail(str(exc)) from None
    else:
        out.write_text(page, encoding="utf-8")
    click.echo(f"{out}: {data.incidents} incidents, {data.blocked_requests} blocked requests")
