"""Retention and the digest: old access-log lines go, the digest is due once a day and sent."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from proxy.identity import Identity
from proxy.incidents import digest, logindex
from proxy.incidents import store as log
from proxy.incidents.alerts import Alert, Alerter
from proxy.incidents.events import IncidentEvent, concerning_search
from proxy.incidents.report import blocked_from_access_log
from proxy.incidents.retention import Housekeeper, purge_access_log, send_digest
from proxy.settings import Settings
from proxy.store.engine import session
from proxy.store.site import at_site
from tests.alertsinks import MailSink, mail_sink

__all__ = ["mail_sink"]  # fixture
NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


def line(when: datetime, **fields: object) -> str:
    return json.dumps({"time": when.isoformat(), **fields}) + "\n"


def test_old_access_log_lines_and_rotated_files_go(tmp_path: Path) -> None:
    """Lines before the cutoff go, newer and unreadable ones stay; old rotated files go."""
    path = tmp_path / "access.log"
    path.write_text(
        line(NOW - timedelta(days=100), host="old.example")
        + "not json\n"
        + line(NOW - timedelta(days=1), host="new.example"),
        encoding="utf-8",
    )
    rotated = tmp_path / "access.log.1"
    rotated.write_text(line(NOW - timedelta(days=200)), encoding="utf-8")
    old = time.time() - 200 * 86400
    os.utime(rotated, (old, old))
    removed = purge_access_log(path, NOW - timedelta(days=90))
    assert removed == 2
    assert not rotated.exists()
    text = path.read_text(encoding="utf-8")
    assert "old.example" not in text
    assert "new.example" in text
    assert "not json" in text


@pytest.mark.parametrize(
    ("last", "now", "every", "due"),
    [
        (None, NOW, "daily", True),
        (None, NOW.replace(hour=9), "daily", False),
        (NOW - timedelta(hours=3), NOW, "daily", False),
        (NOW - timedelta(days=1), NOW, "daily", True),
        (None, NOW, "weekly", True),  # 23 Nov 2026 is a Monday
        (None, NOW + timedelta(days=1), "weekly", False),
        (NOW - timedelta(days=1), NOW, "weekly", False),
    ],
)
def test_digest_is_due_once_per_period_after_its_hour(
    last: datetime | None, now: datetime, every: str, due: bool
) -> None:
    """Daily at or after the hour, once; weekly only on Mondays."""
    assert digest.due(last, now, every, 16) is due


def test_access_log_blocks_are_counted_without_illegal_hosts() -> None:
    """The report counts blocks by category and host, illegal hits only by count."""
    start, end = NOW - timedelta(days=7), NOW
    rows = [
        json.loads(
            line(NOW - timedelta(days=1), decision="block", category="adult", host="a.example")
        ),
        json.loads(
            line(NOW - timedelta(days=1), decision="block", category="adult", host="a.example")
        ),
        json.loads(
            line(
                NOW - timedelta(days=1),
                decision="block",
                category="child_abuse",
                incident="illegal",
                host="(withheld)",
            )
        ),
        json.loads(
            line(NOW - timedelta(days=30), decision="block", category="adult", host="old.example")
        ),
        json.loads(line(NOW - timedelta(days=1), decision="allow", host="ok.example")),
    ]
    categories, hosts, total = blocked_from_access_log(rows, start, end)
    assert total == 3
    assert categories == {"adult": 2, "child_abuse": 1}
    assert hosts == {"a.example": 2}


def test_housekeeper_sends_the_digest_once(
    engine: Engine, tmp_path: Path, mail_sink: MailSink
) -> None:
    """A tick after the digest hour mails the undigested incidents, marks them, and not again."""
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "alerts": {
                "digest": {"email": ["dsl@school.example"], "hour": 16},
                "smtp": {"host": "127.0.0.1", "port": mail_sink.port},
            },
        }
    )
    pupil = Identity("p.one", "pupil", "10.10.0.7", "login")
    with session(engine) as s:
        log.record_incident(
            s, concerning_search(pupil, "google", "self harm", "self_harm", "self harm", NOW)
        )
    alerter = Alerter()
    alerter.start()
    keeper = Housekeeper(settings, engine, alerter, lambda: "Test School")
    keeper.tick(NOW)
    keeper.tick(NOW + timedelta(minutes=1))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not mail_sink.messages:
        time.sleep(0.05)
    alerter.stop()
    assert len(mail_sink.messages) == 1
    assert "Incident digest" in str(mail_sink.messages[0]["Subject"])
    with session(engine) as s:
        assert all(i.digested_at is not None for i in log.find(s))


def test_only_one_housekeeper_holds_the_lock(tmp_path: Path) -> None:
    """Of two housekeepers on one data folder (two workers), one works; the other takes over."""
    settings = Settings.model_validate({"data_dir": str(tmp_path)})
    first = Housekeeper(settings, None, Alerter(), lambda: "School")  # type: ignore[arg-type]
    second = Housekeeper(settings, None, Alerter(), lambda: "School")  # type: ignore[arg-type]
    assert first._holds_lock()
    assert not second._holds_lock()
    first.stop()
    assert second._holds_lock()
    second.stop()


def test_a_digest_never_leaves_out_an_illegal_incident(engine: Engine) -> None:
    """Every digest lists each illegal incident not yet closed, first, with the notice and
    never the address, even one an earlier digest carried; a closed one drops out."""

    settings = Settings.model_validate(
        {"data_dir": "/nonexistent", "alerts": {"digest": {"webhook": "http://127.0.0.1:9/"}}}
    )
    pupil = Identity("p.one", "pupil", "10.10.0.7", "login")
    illegal = IncidentEvent(
        event_id="e1", at=NOW, user="p.one", group="pupil", client_ip="10.10.0.7", device=None,
        category="child_abuse", incident_type="illegal", severity="illegal", url=None,
        url_hash="hmac-sha256:ab", list_name="iwf", reference="SG-1",
    )  # fmt: skip
    with session(engine) as s:
        log.record_incident(s, illegal)
        log.record_incident(
            s, concerning_search(pupil, "google", "self harm", "self_harm", "self harm", NOW)
        )

    class Keep:
        def __init__(self) -> None:
            self.sent: list[Alert] = []

        def send(self, alert: Alert, channels: object) -> None:
            self.sent.append(alert)

    kept = Keep()
    assert send_digest(settings, engine, kept, "School", NOW) == 2  # type: ignore[arg-type]
    assert send_digest(settings, engine, kept, "School", NOW) == 1  # type: ignore[arg-type]
    for alert in kept.sent:
        assert "ILLEGAL: 1 illegal-content incident(s) not yet closed" in alert.text
        listed = [x for x in alert.text.splitlines() if x.startswith("#")]
        assert "IWF list" in listed[0]  # listed before the others
    with session(engine) as s:
        i = log.find(s, severity="illegal")[0]
        i.status = "closed"
    assert send_digest(settings, engine, kept, "School", NOW) == 0  # type: ignore[arg-type]


def test_a_sites_digest_holds_only_its_own_incidents(engine: Engine, tmp_path: Path) -> None:
    """With one store for a trust, south's digest neither sends nor marks north's incidents."""
    south = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "site": "south",
            "alerts": {"digest": {"webhook": "http://127.0.0.1:9/x"}},
        }
    )
    pupil = Identity("p.one", "pupil", "10.10.0.7", "login")
    with session(engine) as s:
        for site in ("north", "south"):
            with at_site(site):
                log.record_incident(
                    s,
                    concerning_search(pupil, "google", "self harm", "self_harm", "self harm", NOW),
                )
    sent: list[object] = []

    class Recorder(Alerter):
        def send(self, alert: object, channels: object) -> None:
            sent.append(alert)

    assert send_digest(south, engine, Recorder(), "South School", NOW) == 1
    with session(engine) as s:
        marked = {i.site: i.digested_at is not None for i in log.find(s)}
    assert marked == {"north": False, "south": True}
    assert len(sent) == 1


def test_purge_and_the_report_read_the_access_log_where_the_settings_put_it(
    engine: Engine, tmp_path: Path
) -> None:
    """With ``access_log:`` set, old lines go from that file, not from the data folder's."""
    from proxy.incidents import report
    from proxy.incidents.retention import purge_all

    custom = tmp_path / "logs" / "custom.log"
    custom.parent.mkdir()
    custom.write_text(
        line(NOW - timedelta(days=100), host="old.example")
        + line(NOW - timedelta(days=1), host="new.example", decision="block", category="adult"),
        encoding="utf-8",
    )
    rotated = custom.with_name("custom.log.1")
    rotated.write_text(
        line(NOW - timedelta(days=2), host="rotated.example", decision="block", category="games"),
        encoding="utf-8",
    )
    default = tmp_path / "var" / "access.log"
    default.parent.mkdir()
    default.write_text(line(NOW - timedelta(days=100), host="untouched.example"))
    settings = Settings(data_dir=tmp_path / "var", access_log=custom)
    assert settings.access_log_path == custom
    with session(engine) as s:
        data = report.gather(
            s,
            settings.data_dir,
            "School",
            NOW - timedelta(days=7),
            NOW,
            UTC,
            NOW,
            access_log=settings.access_log_path,
        )
    assert sorted(data.blocked_categories) == [("adult", 1), ("games", 1)]
    assert purge_all(settings, engine, NOW)["access_log_lines"] == 1
    assert "old.example" not in custom.read_text()
    assert "untouched.example" in default.read_text()


def test_housekeeper_keeps_the_access_log_index_up_to_date(engine: Engine, tmp_path: Path) -> None:
    """Every 15 minutes the lines written since the last time are indexed, so a DSL's first
    look at a month of history does not wait for a day's (proxy/incidents/logindex.py)."""
    settings = Settings.model_validate({"data_dir": str(tmp_path)})
    access = settings.access_log_path
    line = '{"time": "%s", "user": "p.one", "client_ip": "10.0.0.1", "host": "a.example"}\n'
    access.write_text(line % NOW.isoformat())
    keeper = Housekeeper(settings, engine, Alerter(), lambda: "School")
    keeper.tick(NOW)
    index = logindex.index_path(access, access.stat())
    assert index.exists()
    with access.open("a") as f:
        f.write(line % (NOW + timedelta(minutes=1)).isoformat())
    keeper.tick(NOW + timedelta(minutes=1))  # too soon: not yet
    head = json.loads(index.read_bytes().split(b"\n")[1])
    assert head["end"] < access.stat().st_size
    keeper.tick(NOW + timedelta(minutes=16))
    head = json.loads(index.read_bytes().split(b"\n")[1])
    assert head["end"] == access.stat().st_size
