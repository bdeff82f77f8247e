"""Fixtures for the integration tests; the parts themselves live in ``harness``."""

from tests.integration.harness import (  # noqa: F401  (pytest finds fixtures by import)
    gateway,
    loopback_aliases,
    origin,
    origin_ca,
    own_gateway,
)
