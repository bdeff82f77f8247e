"""The data in ``../shared/`` beside the repository: present in CI, absent in a plain clone.

A test that reads it asks ``shared(...)`` for the path. Outside CI, where
anyone may clone the repository without ``../shared``, a missing file skips
the test with a one-line reason; in CI (``CI`` set) it fails the test, so
the data's tests can never quietly stop running there. The tests that must
always run use the small fixtures in ``tests/fixtures/`` instead.
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


def shared(*parts: str) -> Path:
    """The path of ``../shared/PARTS``; skips the test outside CI when it is absent, fails in CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is absent (../shared/ sits beside the repository in CI)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path
