"""Incident events: built from a decision, illegal URLs replaced by a keyed hash, roll-up."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents.events import IncidentEvent, from_decision, rolls_into
from proxy.incidents.keyedhash import KEY_FILE, load_or_create_key, url_hash

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PUPIL = Identity("p.one", "pupil", "10.10.0.7", "address", "LAB-PC-03")


def decision(incident: str | None, category: str = "adult") -> Decision:
    illegal = incident == "illegal"
    return Decision(
        decision="block",
        category=category,
        action="unacceptable",
        incident=incident,  # type: ignore[arg-type]
        incident_type="illegal" if illegal else "deliberate_offensive",
        matched=Matched("iwf" if illegal else "ut1/adult", WITHHELD if illegal else "x.example"),
        rule="r",
        group="pupil",
        user="p.one",
    )


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    """The first call makes a 0600 key file; later calls read the same key."""
    key = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == key
    mode = stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode)
    assert mode == 0o600


def test_a_damaged_key_is_refused(tmp_path: Path) -> None:
    """A truncated key file is an error, not a weaker key."""
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(ValueError, match="damaged"):
        load_or_create_key(tmp_path)


def test_the_hash_depends_on_the_key() -> None:
    """The same URL hashes differently under two installs' keys, and the same under one."""
    url = "iwf-test.example/abuse/test-image.jpg"
    assert url_hash(b"a" * 32, url) == url_hash(b"a" * 32, url)
    assert url_hash(b"a" * 32, url) != url_hash(b"b" * 32, url)
    assert url not in url_hash(b"a" * 32, url)


def test_an_illegal_event_carries_no_url() -> None:
    """An illegal hit becomes an event with the hash and the list's name, never the URL."""
    url = "iwf-test.example/abuse/test-image.jpg"
    event = from_decision(decision("illegal", "child_abuse"), PUPIL, url, WHEN, b"k" * 32)
    assert event is not None
    assert event.url is None
    assert event.url_hash == url_hash(b"k" * 32, url)
    assert event.list_name == "iwf"
    assert event.severity == "illegal"
    assert url not in str(event.as_dict())


def test_an_unacceptable_event_keeps_who_where_and_what() -> None:
    """An unacceptable hit keeps user, group, address, device, category, type and URL."""
    event = from_decision(decision("unacceptable"), PUPIL, "x.example/a", WHEN, b"k" * 32, "SG-1")
    assert event is not None
    assert (event.user, event.group, event.client_ip, event.device) == (
        "p.one",
        "pupil",
        "10.10.0.7",
        "LAB-PC-03",
    )
    assert (event.category, event.incident_type, event.url) == (
        "adult",
        "deliberate_offensive",
        "x.example/a",
    )
    assert IncidentEvent.from_dict(event.as_dict()) == event


def test_no_incident_no_event() -> None:
    """A block without an incident raises nothing."""
    assert from_decision(decision(None), PUPIL, "x.example", WHEN, b"k" * 32) is None


def test_a_spooled_illegal_event_with_a_url_is_refused() -> None:
    """An illegal event read back with a URL in it is an error, never stored."""
    event = from_decision(decision("illegal", "child_abuse"), PUPIL, "a.example", WHEN, b"k" * 32)
    assert event is not None
    data = event.as_dict() | {"url": "a.example"}
    with pytest.raises(ValueError, match="must not carry its URL"):
        IncidentEvent.from_dict(data)


@pytest.mark.parametrize(
    ("minutes_later", "closed", "rolls"),
    [(0, False, True), (29, False, True), (30, False, True), (31, False, False), (5, True, False)],
)
def test_roll_up_within_the_window_of_an_open_incident(
    minutes_later: int, closed: bool, rolls: bool
) -> None:
    """A hit within the window of the last one adds to an open incident; a closed one takes none."""
    at = WHEN + timedelta(minutes=minutes_later)
    assert rolls_into(WHEN, closed, at, timedelta(minutes=30)) is rolls
