"""Incident events through the store's writer: kept in the spool while the store is down."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents import store as log
from proxy.incidents.events import from_decision
from proxy.store import migrate
from proxy.store.engine import session
from proxy.store.writer import Writer

PUPIL = Identity("p.one", "pupil", "10.10.0.7", "address")
IWF_URL = "iwf-test.example/abuse/test-image.jpg"


def test_incidents_wait_in_the_spool_while_the_store_is_down(
    engine: Engine, tmp_path: Path
) -> None:
    """Raised while the store is down, an incident is spooled (blind if illegal), written later."""
    down = {"tries": 0}

    def prepare(eng: Engine) -> None:
        if down["tries"] < 3:
            down["tries"] += 1
            raise OperationalError("connect", {}, Exception("store is down"))
        migrate.upgrade(eng)

    writer = Writer(engine, tmp_path, retry_s=0.1, prepare=prepare)
    writer.start()
    decision = Decision(
        decision="block",
        category="child_abuse",
        action="unacceptable",
        incident="illegal",
        incident_type="illegal",
        matched=Matched("iwf", WITHHELD),
        rule="r",
        group="pupil",
        user="p.one",
    )
    event = from_decision(decision, PUPIL, IWF_URL, datetime.now(UTC), b"k" * 32)
    assert event is not None
    writer.enqueue(log.incident_event(event))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and writer.spooled == 0:
        time.sleep(0.01)
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool").glob("*.jsonl"))
    assert b"incident.raise" in spooled
    assert b"iwf-test.example" not in spooled
    assert writer.wait_idle(10)
    writer.stop()
    assert down["tries"] == 3
    with session(engine) as s:
        (incident,) = log.find(s)
    assert incident.severity == "illegal"
    assert incident.url is None
