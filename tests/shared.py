"""The data in ``../shared/`` beside the repository: present in CI, absent in a plain clone.

A test that reads it asks ``shared(...)`` for the path, and is marked
``@pytest.mark.shared_data`` (``shared`` fails a test that is not, so the
mark cannot be forgotten). Outside CI, where anyone may clone the repository
without ``../shared``, a missing file skips the test with a one-line reason;
in CI (``CI`` set) it fails the test, so the data's tests can never quietly
stop running there. The one exception is ``SCHOOLGATE_SHARED=absent``, set
only by ``make fresh-clone``: that clone has no ``../shared`` on purpose,
and ``make test`` has run the marked tests in place, with the data, before.
The tests that must always run use the small fixtures in ``tests/fixtures/``
instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def in_ci() -> bool:
    """True when the run is CI's (CI=true), where nothing may be skipped for missing data."""
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


# The test being run (set by tests/conftest.py before its fixtures), to check its mark.
running: list[pytest.Item] = []


def absent_on_purpose() -> bool:
    """True in ``make fresh-clone``'s clone, which has no ../shared by design."""
    return os.environ.get("SCHOOLGATE_SHARED") == "absent"


def shared(*parts: str) -> Path:
    """The path of ``../shared/PARTS``; skips the test outside CI when it is absent, fails in CI."""
    if running and running[-1].get_closest_marker("shared_data") is None:
        pytest.fail(
            f"{running[-1].nodeid} reads ../shared: mark it @pytest.mark.shared_data "
            "(make test runs those in place, where the data is)",
            pytrace=False,
        )
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is absent (../shared/ sits beside the repository in CI)"
        if in_ci() and not absent_on_purpose():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path
