"""The last known overrides and suspensions on disk: whole, private, and never past their end."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.controls import ActiveOverride, ActiveSuspension, Controls
from proxy.identity import Identity
from proxy.store import snapshot

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PUPIL = Identity("a.pupil", "pupil", "10.10.1.2", "address")


def controls() -> Controls:
    override = ActiveOverride(
        7,
        "host",
        "games-demo.example",
        "group",
        "pupil",
        NOW - timedelta(hours=1),
        NOW + timedelta(hours=1),
        "head.teacher",
        "game design unit",
    )
    suspensions = [
        ActiveSuspension(3, "a.pupil", NOW - timedelta(days=1), None, "misuse", "dsl"),
        ActiveSuspension(
            4, "b.pupil", NOW - timedelta(days=1), NOW + timedelta(hours=2), "x", "dsl"
        ),
    ]
    return Controls.of([override], suspensions, loaded_at=NOW)


def test_snapshot_survives_a_round_trip_through_the_file(tmp_path: Path) -> None:
    """What is saved is what is loaded: every override and suspension, with its times."""
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.save(path, controls())
    assert snapshot.load(path) == controls()


def test_the_file_is_private_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    """The file holds names and reasons: 0600, written under a temporary name and renamed."""
    path = tmp_path / snapshot.SNAPSHOT_FILE
    path.write_text("old")
    path.chmod(0o644)
    snapshot.save(path, controls())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [snapshot.SNAPSHOT_FILE]


def test_no_file_is_no_snapshot(tmp_path: Path) -> None:
    """A first start has no file: None, not an error."""
    assert snapshot.load(tmp_path / snapshot.SNAPSHOT_FILE) is None


@pytest.mark.parametrize("text", ["", "{}", '{"version": 1}', "[1]", '{"version": 9}', "\xff"])
def test_a_damaged_file_is_a_value_error(tmp_path: Path, text: str) -> None:
    """A truncated or foreign file is refused with ValueError, never half-read."""
    path = tmp_path / snapshot.SNAPSHOT_FILE
    path.write_text(text)
    with pytest.raises(ValueError, match="not a snapshot of overrides and suspensions"):
        snapshot.load(path)


def test_what_ended_while_stopped_does_not_apply(tmp_path: Path) -> None:
    """Read back later, an override past its end opens nothing; an open suspension still holds."""
    path = tmp_path / snapshot.SNAPSHOT_FILE
    snapshot.save(path, controls())
    restored = snapshot.load(path)
    assert restored is not None
    later = NOW + timedelta(hours=3)
    assert restored.overrides_for(PUPIL, later) == ()
    assert restored.overrides_for(PUPIL, NOW) != ()
    assert restored.suspension_of(PUPIL, later) is not None
    b_pupil = Identity("b.pupil", "pupil", None, "login")
    assert restored.suspension_of(b_pupil, NOW) is not None
    assert restored.suspension_of(b_pupil, later) is None
