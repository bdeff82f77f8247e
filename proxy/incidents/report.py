"""The termly report for governors: incidents, blocking and change control, anonymised.

``gather`` reads the store and the access log for a period into a
``ReportData`` of counts; ``render_html`` turns that into one self-contained
page (inline CSS and SVG charts, no script, nothing fetched), and
``write_pdf`` prints it with WeasyPrint when that is installed.

Anonymised by construction: ``ReportData`` holds no user name, address,
device, search query or incident URL, only counts, categories, groups,
host names of blocked sites (illegal hits excluded) and per-report
pseudonyms ("Person A") for people with more than one incident.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proxy.incidents import timeline
from proxy.incidents.charts import columns, hbars
from proxy.incidents.models import Incident, IncidentReview, SearchRecord
from proxy.store import chain
from proxy.store.models import Change, Override

TOP = 15
WITHHELD_HOSTS = {"(withheld)", "(withheld: illegal list)"}

# Governors read plain words, not the store's codes.
STATUS_WORDS = {
    "open": "Waiting for review",
    "reviewed": "Reviewed, not yet closed",
    "closed": "Closed",
}
SEVERITY_WORDS = {
    "illegal": "Illegal content (IWF or police list)",
    "concerning": "Concerning searches",
    "unacceptable": "Against the school's rules",
}
# The incident types of config/escalation.yaml, short enough for a chart's label (28
# characters); a school's own types are read as words.
TYPE_WORDS = {
    "illegal": "Illegal material",
    "deliberate_offensive": "Offensive or pornographic",
    "accidental_offensive_unreported": "Offensive, by accident",
    "non_educational_in_lessons": "Non-educational in lessons",
    "social_media": "Social media or messaging",
    "subvert_filtering": "Getting round the filter",
    "file_transfer": "Downloading or uploading",
    "concerning_search": "Concerning search",
    "mobile_device": "Mobile devices",
    "sharing_passwords": "Sharing passwords",
    "other_pupil_account": "Another pupil's account",
    "staff_account": "A staff account",
    "offensive_messages": "Offensive messages",
    "copyright": "Copyright or data",
}


# Change-log kinds in a governor's words, where the log's own are a technician's.
CHANGE_WORDS = {
    "override.request": "unblock requested",
    "override.approve": "unblock approved",
    "override.revoke": "unblock ended early",
    "override.expire": "unblock ran out",
    "override.refuse": "unblock request declined",
    "policy.unattributed": "filter policy edited outside change control",
}


def words(code: str, table: dict[str, str] | None = None) -> str:
    """A code in plain words: from ``table``, else its parts as words ("child abuse")."""
    if table and code in table:
        return table[code]
    text = code.replace("_", " ").replace("/", " ").strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ReportData:
    school: str
    start: datetime
    end: datetime
    generated: datetime
    timezone: tzinfo
    incidents: int
    attempts: int
    by_severity: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    by_group: list[tuple[str, int]]
    by_type: list[tuple[str, int]]
    by_week: list[tuple[str, int]]
    week_unit: str
    by_status: list[tuple[str, int]]
    concerning: list[tuple[str, int]]
    repeats: list[tuple[str, str, int]]
    people: int
    illegal: int
    illegal_open: int  # not closed: open, or reviewed and not yet closed
    referred: int  # incidents whose review records a referral outside the school
    searches: int
    blocked_categories: list[tuple[str, int]]
    top_blocked_hosts: list[tuple[str, int]]
    blocked_requests: int
    unblock_requests: int
    unblock_approved: int
    changes: list[tuple[str, int]]
    chain: ChainResult


def _pseudonym(i: int) -> str:
    letters = string.ascii_uppercase
    return "Person " + (letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26])


MAX_WEEKS = 26


def _buckets(start: datetime, end: datetime, zone: tzinfo) -> tuple[str, list[datetime]]:
    """Week starts (Mondays) across the period, or month starts when it is longer than
    ``MAX_WEEKS`` weeks, so the chart stays readable; with the unit's name."""
    local = start.astimezone(zone)
    monday = (local - timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    if end - monday <= timedelta(weeks=MAX_WEEKS):
        weeks = []
        while monday < end:
            weeks.append(monday)
            monday += timedelta(days=7)
        return "week", weeks
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while month < end:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return "month", months


def _access_lines(access_log: Path) -> Iterator[dict[str, object]]:
    """Every line of the access log and its uncompressed rotations, oldest file first."""
    for path in timeline.log_files(access_log):
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        with handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row


def blocked_from_access_log(
    rows: Iterable[dict[str, object]], start: datetime, end: datetime
) -> tuple[Counter[str], Counter[str], int]:
    """(blocks by category, by host, in all) in the period; illegal hits are counted only."""
    categories: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    total = 0
    for row in rows:
        if row.get("decision") != "block":
            continue
        try:
            when = datetime.fromisoformat(str(row.get("time")))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if not start <= when < end:
            continue
        total += 1
        categories[str(row.get("category") or "(filter rule)")] += 1
        host = str(row.get("host") or "")
        if host and host not in WITHHELD_HOSTS and row.get("incident") != "illegal":
            hosts[host] += 1
    return categories, hosts, total


def _sorted(counter: Counter[str] | dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def gather(
    session: Session,
    data_dir: Path,
    school: str,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    now: datetime,
    site: str | None = None,
    access_log: Path | None = None,
) -> ReportData:
    """The report's figures; ``site`` keeps one school's rows (None: the whole trust's)."""
    incidents = select(Incident).where(Incident.first_seen >= start, Incident.first_seen < end)
    if site is not None:
        incidents = incidents.where(Incident.site == site)
    found = list(session.scalars(incidents))
    unit, buckets = _buckets(start, end, zone)
    by_bucket: Counter[int] = Counter()
    for incident in found:
        local = incident.first_seen.astimezone(zone)
        by_bucket[max((i for i, b in enumerate(buckets) if b <= local), default=0)] += 1
    per_person = Counter(i.subject for i in found)
    groups = {i.subject: i.group for i in found}
    repeats = [
        (_pseudonym(n), groups[subject], count)
        for n, (subject, count) in enumerate(
            sorted(((s, c) for s, c in per_person.items() if c > 1), key=lambda sc: -sc[1])
        )
    ]
    search_count = select(func.count(SearchRecord.id)).where(
        SearchRecord.at >= start, SearchRecord.at < end
    )
    override_rows = select(Override).where(
        Override.requested_at >= start, Override.requested_at < end
    )
    change_kinds = select(Change.kind).where(Change.at >= start, Change.at < end)
    if site is not None:
        search_count = search_count.where(SearchRecord.site == site)
        override_rows = override_rows.where(Override.site == site)
        change_kinds = change_kinds.where(Change.site == site)
    searches = session.scalar(search_count)
    overrides = list(session.scalars(override_rows))
    changes = Counter(
        CHANGE_WORDS.get(kind) or chain.KINDS.get(kind, kind)
        for kind in session.scalars(change_kinds)
    )
    verified = chain.verify(session)
    ids = [i.id for i in found]
    referred: set[int] = set()
    for chunk in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        referred.update(
            session.scalars(
                select(IncidentReview.incident_id).where(
                    IncidentReview.incident_id.in_(ids[chunk : chunk + 500]),
                    IncidentReview.referred_to.is_not(None),
                )
            )
        )
    categories, hosts, blocked = blocked_from_access_log(
        _access_lines(access_log or data_dir / "access.log"), start, end
    )
    return ReportData(
        school=school,
        start=start,
        end=end,
        generated=now,
        timezone=zone,
        incidents=len(found),
        attempts=sum(i.count for i in found),
        by_severity=_sorted(Counter(i.severity for i in found)),
        by_category=_sorted(Counter(i.category for i in found)),
        by_group=_sorted(Counter(i.group for i in found)),
        by_type=_sorted(Counter(i.incident_type for i in found)),
        by_week=[
            (f"{b:%d %b}" if unit == "week" else f"{b:%b %Y}", by_bucket[n])
            for n, b in enumerate(buckets)
        ],
        week_unit=unit,
        by_status=_sorted(Counter(i.status for i in found)),
        concerning=_sorted(Counter(i.category for i in found if i.severity == "concerning")),
        repeats=repeats,
        people=len(per_person),
        illegal=sum(1 for i in found if i.severity == "illegal"),
        illegal_open=sum(1 for i in found if i.severity == "illegal" and i.status != "closed"),
        referred=len(referred),
        searches=int(searches or 0),
        blocked_categories=_sorted(categories)[:TOP],
        top_blocked_hosts=_sorted(hosts)[:TOP],
        blocked_requests=blocked,
        unblock_requests=len(overrides),
        unblock_approved=sum(1 for o in overrides if o.approved_by),
        changes=_sorted(changes),
        chain=ChainResult(
            verified.ok,
            verified.rows,
            verified.head_seq,
            verified.head_hash,
            tuple(verified.problems),
        ),
    )


CSS = """
body { font-family: sans-serif; color: #1a202c; max-width: 60rem; margin: 2rem auto; }
h1 { font-size: 1.6rem; margin-bottom: 0; } h2 { border-bottom: 2px solid #2b6cb0; }
.meta { color: #4a5568; } .ok { color: #276749; } .bad { color: #c53030; font-weight: bold; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
td, th { border: 1px solid #cbd5e0; padding: .25rem .6rem; text-align: left; }
.figures td:last-child { text-align: right; } .empty { color: #4a5568; font-style: italic; }
section { page-break-inside: avoid; }
"""


def _table(rows: Sequence[Sequence[object]], head: Sequence[str]) -> str:
    if not rows:
        return '<p class="empty">None in this period.</p>'
    out = ['<table class="figures"><tr>', *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page."""
    zone = data.timezone
    period = (
        f"{data.start.astimezone(zone):%d %B %Y} to "
        f"{(data.end - timedelta(seconds=1)).astimezone(zone):%d %B %Y}"
    )
    chain_line = (
        f'<p class="ok">The change-control log verified: {data.chain.rows} rows, head row '
        f"{data.chain.head_seq}, hash <code>{escape(data.chain.head_hash)}</code>.</p>"
        if data.chain.ok
        else '<p class="bad">The change-control log did NOT verify:</p><ul>'
        + "".join(f"<li>{escape(p)}</li>" for p in data.chain.problems)
        + "</ul>"
    )
    approved = (
        f"{data.unblock_approved} of {data.unblock_requests} approved"
        if data.unblock_requests
        else "none requested"
    )
    still_open = (
        f'<p class="bad">{data.illegal_open} of the {data.illegal} illegal-content incidents '
        "are still open: not yet closed by the safeguarding lead and a second reviewer.</p>"
        if data.illegal_open
        else ""
    )
    sections = [
        "<section><h2>Summary</h2>",
        still_open,
        _table(
            [
                ("Incidents", data.incidents),
                ("Blocked tries within them", data.attempts),
                ("People involved", data.people),
                ("Illegal content (IWF or police list)", data.illegal),
                ("… of which still open", data.illegal_open),
                (
                    "Incidents referred outside the school (police, local authority, "
                    "IWF or CEOP, Prevent)",
                    data.referred,
                ),
                ("Concerning searches", dict(data.by_severity).get("concerning", 0)),
                ("Searches logged", data.searches),
                ("Blocked requests", data.blocked_requests),
                ("Unblock requests", approved),
            ],
            ["", "count"],
        ),
        f"</section><section><h2>Incidents by {data.week_unit}</h2>",
        columns(data.by_week, f"Incidents by {data.week_unit}"),
        "</section><section><h2>Incidents by category</h2>",
        hbars([(words(c), n) for c, n in data.by_category], "Incidents by category"),
        "</section><section><h2>Incidents by group</h2>",
        hbars(data.by_group, "Incidents by group"),
        "</section><section><h2>Incidents by kind</h2>",
        hbars([(words(t, TYPE_WORDS), n) for t, n in data.by_type], "Incidents by kind"),
        "</section><section><h2>How serious</h2>",
        _table([(words(s, SEVERITY_WORDS), n) for s, n in data.by_severity], ["", "incidents"]),
        "</section><section><h2>Where the reviews stand</h2>",
        _table([(words(s, STATUS_WORDS), n) for s, n in data.by_status], ["", "incidents"]),
        "<h3>Concerning searches by theme</h3>",
        _table([(words(c), n) for c, n in data.concerning], ["theme", "incidents"]),
        "<h3>People with more than one incident</h3>",
        '<p class="meta">Pseudonyms are assigned afresh in each report.</p>',
        _table(data.repeats, ["person", "group", "incidents"]),
        "</section><section><h2>Blocking: is the filter blocking too much?</h2>",
        hbars([(words(c), n) for c, n in data.blocked_categories], "Blocked requests by category"),
        "<h3>Most blocked sites</h3>",
        _table(data.top_blocked_hosts, ["site", "blocked requests"]),
        "</section><section><h2>Change control</h2>",
        f"<p>Unblock requests: {escape(approved)}.</p>",
        _table(data.changes, ["change", "count"]),
        chain_line,
        "</section>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Termly online safety report — {escape(data.school)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>Termly online safety report</h1><p><strong>{escape(data.school)}</strong>, "
        f"{escape(period)}</p>"
        f'<p class="meta">Made by Schoolgate on {data.generated.astimezone(zone):%d %B %Y %H:%M}. '
        "Anonymised for governors: it names no pupil and shows no address or search; "
        "people appear only as counts or pseudonyms.</p>" + "".join(sections) + "</body></html>"
    )


class PdfUnavailable(Exception):
    """WeasyPrint (or the system's Pango it needs) is not installed; ``str()`` says what to do."""


def write_pdf(html_text: str, out: Path) -> None:
    try:
        from weasyprint import HTML  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:
        raise PdfUnavailable(
            f"PDF needs WeasyPrint: pip install 'schoolgate[pdf]' ({type(exc).__name__}: {exc})"
        ) from None
    HTML(string=html_text).write_pdf(str(out))
