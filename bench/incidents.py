"""``make bench`` (incidents): the store writer's cost per incident, one by one against batched.

Run from the repository root: ``.venv/bin/python -m bench.incidents``. The same
stream of incident events (a few hundred pupils, a few categories, hits over a
school day, so most roll up) is applied to a fresh SQLite store in the writer's
batches, twice: with ``apply_event`` per event (the ORM lookup, update or insert
and ``applied_events`` row per event, as before issue #18) and with
``apply_events`` per batch (one ranked read, one bulk UPDATE, one bulk INSERT).
It prints CPU microseconds per event for each (process CPU time: steadier than
wall time on a shared host) and checks that both left the same incidents.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from proxy.incidents import store as incidents
from proxy.incidents.events import IncidentEvent
from proxy.incidents.models import Incident
from proxy.store import migrate
from proxy.store.engine import make_engine, session
from proxy.store.events import Event, apply_event, apply_events

T0 = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
CATEGORIES = ("adult", "social", "games", "gambling")


def stream(n: int, seed: int = 18) -> list[Event]:
    """``n`` incident events over a school day from 300 pupils."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pupil = rng.randrange(300)
        at = T0 + timedelta(seconds=i * 7 * 3600 / n + rng.random())
        event = IncidentEvent(
            event_id=f"bench-{i}",
            at=at,
            user=f"pupil{pupil}",
            group="pupil",
            client_ip=f"10.10.{pupil // 250}.{pupil % 250 + 1}",
            device=None,
            category=rng.choice(CATEGORIES),
            incident_type="deliberate_offensive",
            severity="unacceptable",
            url=f"site{rng.randrange(50)}.example/",
            url_hash=None,
            list_name="ut1/adult",
            reference=f"SG-{i:08X}",
            actions=(("inform_parents", "Inform parents / carers"),),
        )
        out.append(incidents.incident_event(event))
    return out


def run(engine: Engine, events: list[Event], batch: int, batched: bool) -> float:
    """Apply ``events`` in batches of ``batch``; CPU seconds spent."""
    cpu0 = time.process_time()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        with session(engine) as s:
            if batched:
                apply_events(s, chunk)
            else:
                for event in chunk:
                    apply_event(s, event)
    return time.process_time() - cpu0


def rows(engine: Engine) -> list[tuple[object, ...]]:
    columns = [c for c in Incident.__table__.columns if c.name != "id"]
    with engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(select(*columns))), key=repr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.incidents", description=__doc__)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=100, help="events per writer batch")
    args = parser.parse_args(argv)
    events = stream(args.events)
    cpu: dict[str, float] = {}
    found: dict[str, list[tuple[object, ...]]] = {}
    with tempfile.TemporaryDirectory(prefix="schoolgate-bench-incidents-") as tmp:
        # One by one twice (first and last), so a load change mid-run shows.
        for run_name, batched in (("one-by-one", False), ("batched", True), ("again", False)):
            engine = make_engine(f"sqlite:///{Path(tmp) / run_name}.db")
            migrate.upgrade(engine)
            cpu[run_name] = run(engine, events, args.batch, batched)
            found[run_name] = rows(engine)
            engine.dispose()
            print(
                f"  {run_name:<11} {cpu[run_name] / len(events) * 1e6:8.0f} us cpu per incident "
                f"({len(found[run_name])} incidents from {len(events)} hits, "
                f"batches of {args.batch})",
                flush=True,
            )
    same = found["one-by-one"] == found["batched"] == found["again"]
    old, new = min(cpu["one-by-one"], cpu["again"]), cpu["batched"]
    print(
        f"incident writer: batched costs {new / old:.1%} of one by one "
        f"({old / new:.1f}x less CPU); same incidents: {'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
