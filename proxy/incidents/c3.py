"""The reporting log (form C3): its columns, and one incident as a row (CLI and console exports)."""

from __future__ import annotations

from datetime import tzinfo

from proxy.incidents import store as log
from proxy.incidents.models import Incident

C3_COLUMNS = (
    "incident",
    "date",
    "time",
    "severity",
    "type",
    "category",
    "times",
    "user",
    "group",
    "what",
    "recommended actions",
    "reviewed by",
    "action taken",
    "status",
    "outcome",
    "site",
)


def c3_row(incident: Incident, shown: dict[str, object], zone: tzinfo) -> list[str]:
    """One incident as a row of the reporting log (C3); the console's export uses it too."""
    reviews = shown["reviews"]
    assert isinstance(reviews, list)
    actions = shown["recommended_actions"]
    assert isinstance(actions, list)
    local = incident.first_seen.astimezone(zone)
    return [
        f"#{incident.id}",
        f"{local:%Y-%m-%d}",
        f"{local:%H:%M}",
        incident.severity,
        incident.incident_type,
        incident.category,
        str(incident.count),
        incident.user or incident.subject,
        incident.group,
        log.where_text(incident),
        "; ".join(str(a) for a in actions),
        "; ".join(f"{r['first_reviewer']} & {r['second_reviewer']}" for r in reviews),
        "; ".join(str(r["action_taken"]) for r in reviews),
        incident.status,
        incident.outcome or "",
        incident.site,
    ]
