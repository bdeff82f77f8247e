"""Alert deliveries in the store: every try, sent or failed, for the DSL to see.

The alerter (``proxy.incidents.alerts``) tells ``result_event`` of each try;
the proxy and the console hand that to the store's writer as an
``alert.delivery`` event, so a failed alert is on record even when nobody
reads the service log. Alerts never carry a URL, so neither do these rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from proxy.incidents.alerts import Result
from proxy.incidents.models import AlertDelivery
from proxy.store.events import HANDLERS, Event
from proxy.store.models import Change

DELIVERY_EVENT = "alert.delivery"


def result_event(result: Result, now: datetime | None = None) -> Event:
    at = now or datetime.now(UTC)
    data = {
        "at": at.isoformat(),
        "kind": result.alert.kind,
        "subject": result.alert.subject[:500],
        "channel": result.channel,
        "ok": result.ok,
        "attempt": result.attempt,
        "final": result.final,
        "detail": (result.detail or None) and str(result.detail)[:1000],
    }
    return Event(DELIVERY_EVENT, data, at=at.isoformat(), id=str(uuid.uuid4()))


def _apply(session: Session, event: Event) -> Change | None:
    d = event.data
    session.add(
        AlertDelivery(
            at=datetime.fromisoformat(str(d["at"])),
            kind=str(d["kind"]),
            subject=str(d["subject"]),
            channel=str(d["channel"]),
            ok=bool(d["ok"]),
            attempt=int(d["attempt"]),
            final=bool(d["final"]),
            detail=d.get("detail"),
            # named here, not left to the column default: the row is flushed after the
            # handler returns, outside the event's at_site
            site=event.site,
        )
    )
    return None


HANDLERS[DELIVERY_EVENT] = _apply


def recent(session: Session, limit: int = 20, site: str | None = None) -> list[AlertDelivery]:
    """The latest tries, newest first (``site``: that school's alerts only)."""
    query = select(AlertDelivery).order_by(AlertDelivery.id.desc()).limit(limit)
    if site is not None:
        query = query.where(AlertDelivery.site == site)
    return list(session.scalars(query))
