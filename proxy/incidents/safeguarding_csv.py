"""Incidents as CSV for the school's safeguarding system: CPOMS or MyConcern.

Neither product publishes a CSV layout for importing incidents or concerns (we
searched their public help: CPOMS documents its incident screen, "student",
"category", the incident text and "actions"; MyConcern's only public CSV
template is for adding users in bulk, and both take records from other products
through their own integrations). So each layout here is one row per incident
with its columns named as that product's screens name the fields, for a DSL to
paste or map in its import; the README says so.

Every cell a pupil could have written (a search, a page's address) is made
safe against spreadsheet formula injection, and an illegal incident never
carries its address: only which list it matched (``where_text``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import tzinfo

from proxy.incidents import store as log
from proxy.incidents.models import Incident, IncidentReview
from proxy.incidents.report import STATUS_WORDS, words

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")

LAYOUTS: dict[str, tuple[str, ...]] = {
    # CPOMS: an incident is about a student, in a category, with its text and the actions.
    "cpoms": (
        "Student",
        "Date",
        "Time",
        "Category",
        "Incident",
        "Actions",
        "Status",
        "Reported by",
        "Reference",
    ),
    # MyConcern: a concern about a child, its date and category, what happened, what was done.
    "myconcern": (
        "Subject",
        "Date of concern",
        "Time of concern",
        "Concern category",
        "Concern details",
        "Action taken",
        "Status",
        "Reported by",
        "External reference",
    ),
}
REPORTED_BY = "Schoolgate web filter"


def safe(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return f"'{value}" if value.startswith(FORMULA_START) else value


def _who(incident: Incident) -> str:
    if incident.user:
        return incident.user
    return f"shared address {incident.client_ip or '?'} (nobody signed in: not one person)"


def _details(incident: Incident, category: str, zone: tzinfo) -> str:
    first = incident.first_seen.astimezone(zone)
    last = incident.last_seen.astimezone(zone)
    tries = (
        f"{incident.count} tries from {first:%H:%M} to {last:%H:%M}"
        if incident.count > 1
        else "one try"
    )
    device = f" on device {incident.device}" if incident.device else ""
    return (
        f"Web filter: {words(incident.severity, _SEVERITY)} ({category}), {tries}{device}. "
        f"What: {log.where_text(incident)}."
    )


_SEVERITY = {
    "illegal": "illegal content blocked",
    "unacceptable": "blocked site against the school's rules",
    "concerning": "concerning search",
}


def _actions(incident: Incident, reviews: Iterable[IncidentReview], zone: tzinfo) -> str:
    done = []
    for r in reviews:
        text = r.action_taken
        referred = log.referred_words(r.referred_to)
        if referred:
            text += f" (referred to {', '.join(referred)})"
        done.append(f"{r.reviewed_at.astimezone(zone):%d/%m/%Y}: {text}")
    if incident.outcome:
        done.append(f"Closed: {incident.outcome}")
    return "; ".join(done)


def row(
    incident: Incident,
    reviews: Iterable[IncidentReview],
    zone: tzinfo,
    category_words: Callable[[str], str] = words,
) -> list[str]:
    """One incident in either layout's column order (the layouts differ in names only)."""
    local = incident.first_seen.astimezone(zone)
    category = category_words(incident.category)
    cells = [
        _who(incident),
        f"{local:%d/%m/%Y}",
        f"{local:%H:%M}",
        f"Online safety: {category}",
        _details(incident, category, zone),
        _actions(incident, reviews, zone),
        words(incident.status, STATUS_WORDS),
        REPORTED_BY,
        f"Schoolgate incident #{incident.id}"
        + (f", {incident.reference}" if incident.reference else ""),
    ]
    return [safe(c) for c in cells]


def write(rows: Iterable[list[str]], layout: str) -> str:
    """The CSV text: the layout's header, then the rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LAYOUTS[layout])
    writer.writerows(rows)
    return out.getvalue()
