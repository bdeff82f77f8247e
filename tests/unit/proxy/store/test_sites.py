"""Sites: every row names the site it was recorded at, old rows get the default, hashes hold."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from proxy.cli import cli
from proxy.console.models import ConsoleUser
from proxy.identity import Identity
from proxy.incidents import deliveries, report, retention
from proxy.incidents.alerts import Alert, Result
from proxy.incidents.events import IncidentEvent, search_event
from proxy.incidents.models import AlertDelivery, Incident, IncidentReview, SearchRecord
from proxy.incidents.store import close, incident_event, record_incident, record_search, review
from proxy.settings import load_settings
from proxy.store import chain, control, events, migrate
from proxy.store.engine import make_engine, session
from proxy.store.models import Change, Suspension
from proxy.store.site import DEFAULT_SITE, at_site, current_site, set_site
from tests.unit.proxy.configs import write_config
from tests.unit.proxy.incidents.test_store import FORM
from tests.unit.proxy.test_cli_changes import POLICY

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _process_site() -> Iterator[None]:
    yield
    set_site(DEFAULT_SITE)


def hit(user: str) -> IncidentEvent:
    return IncidentEvent(
        event_id=f"e-{user}-{current_site()}",
        at=NOW,
        user=user,
        group="pupil",
        client_ip="10.0.0.5",
        device=None,
        category="adult",
        incident_type="unacceptable",
        severity="unacceptable",
        url="http://bad.example/",
        url_hash=None,
        list_name="ut1/adult",
        reference=None,
    )


def test_rows_are_stamped_with_the_site_of_the_event(engine: Engine) -> None:
    """An event raised at one site and applied by a process of another keeps its own site."""
    set_site("north")
    raised = incident_event(hit("amy"))
    set_site("south")
    with session(engine) as s:
        events.apply_event(s, raised)
        events.apply_event(s, incident_event(hit("amy")))
    with session(engine) as s:
        rows = s.execute(select(Incident.site, Incident.count)).all()
    # Same pupil, same category, two sites: two incidents, one for each school to review.
    assert sorted(rows) == [("north", 1), ("south", 1)]


def test_an_event_survives_the_spool_with_its_site() -> None:
    """The site is part of the spooled line; a line spooled before sites gets the process's."""
    set_site("north")
    line = events.sweep().to_json()
    set_site("south")
    assert events.Event.from_json(line).site == "north"
    legacy = '{"id":"x","kind":"overrides.sweep","at":"2026-11-30T10:00:00+00:00","data":{}}'
    assert events.Event.from_json(legacy).site == "south"


def test_change_rows_name_their_site_and_the_chain_covers_it(engine: Engine) -> None:
    """A change at a site names it; editing the site afterwards breaks the chain."""
    with session(engine) as s, at_site("east"):
        control.suspend(s, "amy", starts=NOW, ends=None, reason="misuse", by="dsl", now=NOW)
    with session(engine) as s:
        change = s.scalars(select(Change)).one()
        assert change.site == "east"
        assert s.scalars(select(Suspension.site)).one() == "east"
        assert chain.verify(s).ok
        s.execute(text("UPDATE changes SET site = 'west'"))
        s.expire_all()
        assert not chain.verify(s).ok


def test_the_migration_fills_existing_rows_with_the_default_site(store_url: str) -> None:
    """Rows written before sites existed read back as the default site, hashes intact."""
    engine = make_engine(store_url)
    config = migrate.alembic_config(store_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002_incidents")
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO suspensions ("user", starts, reason, by) '
                "VALUES ('amy', '2026-11-30 10:00:00', 'r', 'dsl')"
            )
        )
    migrate.upgrade(engine)
    with session(engine) as s:
        assert s.scalars(select(Suspension.site)).one() == DEFAULT_SITE
    engine.dispose()


def test_a_batch_keeps_each_events_site(engine: Engine) -> None:
    """The writer's batched incident insert stamps each hit with its own event's site."""
    set_site("north")
    north = [incident_event(hit("amy")), incident_event(hit("bob"))]
    set_site("south")
    south = incident_event(hit("amy"))
    with session(engine) as s:
        events.apply_events(s, [*north, south])
    with session(engine) as s:
        rows = s.execute(select(Incident.site, Incident.subject, Incident.count)).all()
    assert sorted(rows) == [("north", "amy", 1), ("north", "bob", 1), ("south", "amy", 1)]


def test_the_termly_report_is_per_school_or_trust_wide(engine: Engine, tmp_path: Path) -> None:
    """`report termly` counts one site's incidents, or every site's with no site given."""
    with session(engine) as s:
        for site in ("north", "south"):
            with at_site(site):
                events.apply_event(s, incident_event(hit("amy")))
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    with session(engine) as s:
        north = report.gather(s, tmp_path, "North", start, end, UTC, NOW, site="north")
        trust = report.gather(s, tmp_path, "Trust", start, end, UTC, NOW)
    assert (north.incidents, trust.incidents) == (1, 2)


def test_migration_0006_gives_old_accounts_and_alerts_the_default_site(store_url: str) -> None:
    """Accounts and alert deliveries stored before 0006 read back as the default site: an old
    account is a school account (never, by upgrading, a trust-wide one)."""
    engine = make_engine(store_url)
    config = migrate.alembic_config(store_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005_c2_signatures")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO console_users (name, role, password_hash, created_at, disabled) "
                "VALUES ('old.dsl', 'dsl', 'x', '2026-11-30 10:00:00', false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO alert_deliveries (at, kind, subject, channel, ok, attempt, final) "
                "VALUES ('2026-11-30 10:00:00', 'illegal', 's', 'email', true, 1, true)"
            )
        )
    migrate.upgrade(engine)
    with session(engine) as s:
        assert s.scalars(select(ConsoleUser.site)).one() == DEFAULT_SITE
        assert s.scalars(select(AlertDelivery.site)).one() == DEFAULT_SITE
    engine.dispose()


def test_a_stored_alert_delivery_names_the_site_it_was_raised_at(engine: Engine) -> None:
    """An alert raised at south and applied by a writer at north (a replayed spool) is south's."""
    with at_site("south"):
        event = deliveries.result_event(
            Result(Alert("illegal", "An illegal hit", "text", {}), "email", True, 1, True, None),
            NOW,
        )
    set_site("north")
    with session(engine) as s:
        events.apply_event(s, event)
    with session(engine, read_only=True) as s:
        assert s.scalars(select(AlertDelivery.site)).one() == "south"
        assert [d.site for d in deliveries.recent(s, site="south")] == ["south"]
        assert deliveries.recent(s, site="north") == []


def _old_closed_rows_at_north_and_south(engine: Engine) -> None:
    """At each site: a closed incident, its review, a search and an alert delivery, 100 days
    old, and an alert delivery from yesterday."""
    old = NOW - timedelta(days=100)
    with session(engine) as s:
        for site in ("north", "south"):
            with at_site(site):
                event = dataclasses.replace(hit(f"pupil-{site}"), at=old, site=site)
                found, _ = record_incident(s, event)
                review(s, found.id, FORM, old)
                close(s, found.id, f"dsl-{site}", "done", old)
                who = Identity(f"pupil-{site}", "pupil", "10.0.0.5", "address")
                record_search(s, search_event(who, "google", "q", None, old))
                for when in (old, NOW - timedelta(days=1)):  # one past retention, one not
                    told = Result(Alert("illegal", "An illegal hit", "t", {}), "email", True, 1,
                                  True, None)  # fmt: skip
                    events.apply_event(s, deliveries.result_event(told, when))
                s.flush()  # inside at_site: the rows' site defaults are read at the flush


def test_purge_deletes_only_its_own_sites_rows_unless_trust_wide(
    store_url: str, tmp_path: Path
) -> None:
    """North's purge (north's retention: 30 days) leaves south's old closed incident, its
    review, south's old search and its old alert delivery, which south's own retention
    keeps; only the explicit trust-wide purge takes them. Yesterday's deliveries stay."""
    engine = make_engine(store_url)
    migrate.upgrade(engine)
    _old_closed_rows_at_north_and_south(engine)
    config = write_config(tmp_path, store_url, POLICY)
    with (config / "schoolgate.yaml").open("a", encoding="utf-8") as f:
        f.write("site: north\nretention_days: {incidents: 30, access: 30}\n")
    settings = load_settings(config)
    counts = retention.purge_all(settings, engine, NOW)
    assert (counts["incidents"], counts["reviews"], counts["searches"]) == (1, 1, 1)
    assert counts["alert_deliveries"] == 1
    with session(engine, read_only=True) as s:
        assert list(s.scalars(select(Incident.site))) == ["south"]
        assert list(s.scalars(select(SearchRecord.site))) == ["south"]
        assert list(s.scalars(select(IncidentReview.site))) == ["south"]
        kept = s.execute(select(AlertDelivery.site, AlertDelivery.at).order_by(AlertDelivery.id))
        assert [(site, at.date()) for site, at in kept] == [
            ("north", (NOW - timedelta(days=1)).date()),
            ("south", (NOW - timedelta(days=100)).date()),
            ("south", (NOW - timedelta(days=1)).date()),
        ]
    counts = retention.purge_all(settings, engine, NOW, every_site=True)
    assert (counts["incidents"], counts["reviews"], counts["searches"]) == (1, 1, 1)
    assert counts["alert_deliveries"] == 1
    with session(engine, read_only=True) as s:
        assert list(s.scalars(select(Incident.site))) == []
        assert len(list(s.scalars(select(AlertDelivery.id)))) == 2  # yesterday's, at each site
    engine.dispose()


def test_the_purge_command_is_per_site_unless_every_site_is_asked(tmp_path: Path) -> None:
    """`schoolgate purge` at north (SQLite, two sites in one store) leaves south's old rows;
    `purge --every-site` is the explicit trust-wide purge and takes them."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    _old_closed_rows_at_north_and_south(engine)
    config = write_config(tmp_path, url, POLICY)
    with (config / "schoolgate.yaml").open("a", encoding="utf-8") as f:
        f.write("site: north\nretention_days: {incidents: 30, access: 30}\n")

    def sites() -> tuple[list[str], list[str], list[str]]:
        with session(engine, read_only=True) as s:
            return (
                list(s.scalars(select(Incident.site))),
                list(s.scalars(select(IncidentReview.site))),
                list(s.scalars(select(SearchRecord.site))),
            )

    result = CliRunner().invoke(cli, ["purge", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("purged: 1 incidents, 1 reviews, 1 searches")
    assert "(at north)" in result.stdout
    assert sites() == (["south"], ["south"], ["south"])
    result = CliRunner().invoke(cli, ["purge", "--every-site", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    assert "purged: 1 incidents, 1 reviews, 1 searches" in result.stdout
    assert "(at every site)" in result.stdout
    assert sites() == ([], [], [])
    engine.dispose()
