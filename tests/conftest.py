"""Hooks for every test: ``tests.shared`` learns which test is running, to check its mark."""

from __future__ import annotations

import pytest

from tests import shared


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    shared.running[:] = [item]
