"""The digest: incidents gathered daily or weekly for the DSL.

Illegal hits alert at once; everything else is gathered here so the
Designated Safeguarding Lead reads one message a day (or week), not one per
blocked page. An illegal incident is never left out: every digest lists,
first, each one not yet closed (its at-once alert may have had nobody to
go to), with the list's notice, never the address. ``due`` says when the next
one is due; ``build`` writes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from proxy.incidents.alerts import Alert
from proxy.incidents.models import Incident
from proxy.incidents.store import where_text


def due(last_sent: datetime | None, now: datetime, every: str, hour: int) -> bool:
    """Whether a digest is due at ``now`` (UTC): once a day (or a week) from ``hour`` o'clock."""
    if now.hour < hour:
        return False
    if every == "weekly" and now.weekday() != 0:
        return False
    if last_sent is None:
        return True
    gap = timedelta(days=7 if every == "weekly" else 1) - timedelta(hours=1)
    return now - last_sent >= gap


def build(incidents: Sequence[Incident], school: str, now: datetime) -> Alert:
    """One message listing the incidents not yet in a digest, most serious types first."""
    incidents = sorted(incidents, key=lambda i: (i.severity != "illegal", i.first_seen))
    by_type = Counter(i.incident_type for i in incidents)
    hits = sum(i.count for i in incidents)
    illegal = sum(1 for i in incidents if i.severity == "illegal" and i.status != "closed")
    lines = [
        f"{school}: {len(incidents)} incident(s), {hits} attempt(s), since the last digest.",
        "",
    ]
    if illegal:
        lines[1:1] = [
            f"ILLEGAL: {illegal} illegal-content incident(s) not yet closed: act now.",
            "",
        ]
    for incident_type, count in by_type.most_common():
        lines.append(f"  {incident_type.replace('_', ' ')}: {count}")
    lines.append("")
    for i in incidents:
        lines.append(
            f"#{i.id} {i.first_seen:%Y-%m-%d %H:%M} UTC  {i.user or i.subject} ({i.group})  "
            f"{i.incident_type}  {i.category}  x{i.count}  {where_text(i)}"
        )
    lines += ["", "Review with `schoolgate incidents list` and `schoolgate incidents show ID`."]
    return Alert(
        kind="digest",
        subject=f"[Schoolgate] Incident digest — {school} — {now:%Y-%m-%d}",
        text="\n".join(lines),
        payload={
            "incidents": len(incidents),
            "attempts": hits,
            "by_type": dict(by_type),
            "ids": [i.id for i in incidents],
        },
    )
