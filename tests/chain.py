"""The addon chain as the proxy declares it, for unit tests.

Tests take their addons from ``schoolgate_addons`` (addons/__init__.py)
instead of building their own, so they run the addons wired and ordered as
the proxy runs them: a test cannot pass on a chain the proxy never builds.
``declared`` keeps the declared order and the wiring between addons; a test
names only the kinds it drives.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mitmproxy.test import taddons

from addons import schoolgate_addons
from addons.policyload import PolicyLoader
from proxy.filterset import Filterset


def declared(config_dir: Path, filterset: Filterset, *kinds: type[Any]) -> list[Any]:
    """The addons of ``schoolgate_addons`` of these kinds, in the declared order.

    The ``PolicyLoader`` always comes first, since every addon reads the
    filterset through it. A kind the chain does not hold is an error.
    """
    chain = schoolgate_addons(config_dir, filterset)
    picked = [a for a in chain if isinstance(a, (PolicyLoader, *kinds))]
    missing = [k.__name__ for k in kinds if not any(isinstance(a, k) for a in picked)]
    if missing:
        raise LookupError(f"schoolgate_addons() has no {', '.join(missing)}")
    return picked


def one[T](chain: list[Any], kind: type[T]) -> T:
    """The addon of ``kind`` in ``chain``."""
    (found,) = [addon for addon in chain if isinstance(addon, kind)]
    return found


@contextmanager
def running(config_dir: Path, filterset: Filterset, *kinds: type[Any]) -> Iterator[list[Any]]:
    """``declared``'s addons loaded in mitmproxy's test context, in the declared order."""
    chain = declared(config_dir, filterset, *kinds)
    with taddons.context(*chain):
        yield chain
