"""Exports of the change-control log for the e-safety governor: CSV and printable HTML.

Both carry the period, the school, when they were made, the chain head
(row number and hash, to write down and check next time with ``changes
verify --anchor``) and whether the whole chain verified. Times are shown in
the school's timezone. Policy rows show their impact and diff, never the
whole policy; nothing here can show an illegal list's URL (no row holds one).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from proxy.store.chain import KINDS, Verification
from proxy.store.models import Change

COLUMNS = (
    "#",
    "when",
    "what happened",
    "who",
    "what",
    "for whom",
    "why",
    "until",
    "approved by",
    "details",
    "row hash",
    "site",
)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive


def _time(value: datetime | None, zone: tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else ""


def details_text(row: Change) -> str:
    """The details a reader needs: impact and diff for policy rows, counts for lists."""
    data = json.loads(row.details or "{}")
    parts: list[str] = []
    if data.get("override"):
        parts.append(f"override #{data['override']}")
    if data.get("reference"):
        parts.append(f"reference {data['reference']}")
    if data.get("requested_by") and row.kind != "override.request":
        parts.append(f"requested by {data['requested_by']}")
    if data.get("refused"):
        parts.append(f"refused: {data['refused']}")
    if row.kind == "lists.update":
        parts.append(f"entries {data.get('before')} → {data.get('after')}")
        if data.get("forced"):
            parts.append("forced")
        parts.extend(data.get("problems") or [])  # lists gone or shrunk, one line each
    if data.get("impact"):
        parts.append("impact:\n" + "\n".join(f"  {line}" for line in data["impact"]))
    elif row.kind == "policy.apply":
        parts.append("impact: no decision changes")
    if data.get("diff"):
        parts.append(data["diff"].rstrip("\n"))
    if data.get("sha256"):
        parts.append(f"policy sha256 {data['sha256'][:16]}")
    return "\n".join(parts)


def _cells(row: Change, zone: tzinfo) -> list[str]:
    return [
        str(row.seq),
        _time(row.at, zone),
        KINDS.get(row.kind, row.kind),
        row.actor or "(unattributed)" if row.kind == "policy.unattributed" else row.actor or "",
        row.subject,
        row.target or "",
        row.reason or "",
        _time(row.until, zone),
        row.approved_by or "",
        details_text(row),
        row.hash,
        row.site,
    ]


def _header(
    school: str, period: Period, made: datetime, check: Verification, zone: tzinfo
) -> list[list[str]]:
    return [
        ["Schoolgate change-control log", school],
        ["period", f"{_time(period.start, zone)} to {_time(period.end, zone)} (end excluded)"],
        ["exported", _time(made, zone)],
        ["chain head", f"row {check.head_seq}", check.head_hash],
        ["verification", "verified" if check.ok else "NOT VERIFIED", check.summary()],
    ]


def to_csv(
    rows: Sequence[Change],
    *,
    school: str,
    period: Period,
    made: datetime,
    check: Verification,
    zone: tzinfo,
) -> str:
    """A CSV a spreadsheet opens (UTF-8 with a byte-order mark for Excel)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(_header(school, period, made, check, zone))
    writer.writerow([])
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_cells(row, zone))
    writer.writerow([])
    writer.writerow(["rows in period", str(len(rows))])
    return out.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
table.meta td { padding: 0.1em 1em 0.1em 0; }
table.log { border-collapse: collapse; width: 100%; font-size: 0.85em; margin-top: 1.5em; }
table.log th, table.log td {
  border: 1px solid #999; padding: 0.3em; vertical-align: top; text-align: left;
}
table.log th { background: #eee; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.95em; }
.ok { color: #064; font-weight: bold; }
.bad { color: #a00; font-weight: bold; }
.hash { font-family: monospace; font-size: 0.8em; word-break: break-all; }
@media print { body { margin: 0.5cm; } tr { page-break-inside: avoid; } }
"""


def to_html(
    rows: Sequence[Change],
    *,
    school: str,
    period: Period,
    made: datetime,
    check: Verification,
    zone: tzinfo,
) -> str:
    """A page a governor can read on screen and print."""
    e = html.escape
    status = (
        f'<span class="ok">verified</span>: {check.rows} rows, chain intact'
        if check.ok
        else '<span class="bad">NOT VERIFIED</span>: ' + e("; ".join(check.problems))
    )
    body = []
    for row in rows:
        cells = _cells(row, zone)
        tds = [f"<td>{e(c)}</td>" for c in cells[:9]]
        tds.append(f"<td><pre>{e(cells[9])}</pre></td>")
        tds.append(f'<td class="hash">{e(cells[10][:16])}…</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    heads = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    span = f"{_time(period.start, zone)} to {_time(period.end, zone)} (end excluded)"
    anchor = f"schoolgate changes verify --anchor {check.head_seq}:{check.head_hash[:16]}"
    meta = [
        ("Period", e(span)),
        ("Exported", e(_time(made, zone))),
        ("Rows in period", str(len(rows))),
        ("Chain head", f'row {check.head_seq} <span class="hash">{e(check.head_hash)}</span>'),
        ("Verification", status),
    ]
    empty = '<tr><td colspan="11">No changes in this period.</td></tr>'
    return "\n".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>Change-control log: {e(school)}</title><style>{_STYLE}</style></head>",
            f"<body>\n<h1>Change-control log: {e(school)}</h1>",
            '<table class="meta">',
            *(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta),
            "</table>",
            f"<p>Write the chain head down: next time, <code>{e(anchor)}</code> checks that "
            "nothing up to here has been rewritten since.</p>",
            f'<table class="log"><thead><tr>{heads}</tr></thead><tbody>',
            "\n".join(body) if body else empty,
            "</tbody></table>\n</body></html>\n",
        ]
    )
