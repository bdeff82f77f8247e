"""The site a row is recorded at: one trust, many schools, one store.

Every gateway and every CLI command runs for one site (``site:`` in
``schoolgate.yaml``); ``set_site`` makes it the process's default, and each
store row that records something at a site (incidents, searches, changes,
overrides, suspensions, reviews) is stamped with it by its column default.
An event carries the site it was raised at, and the writer applies it
``at_site`` that site, so a spool replayed later (or by another process)
still names the site where it happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_SITE = "main"
SITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# One value per process, set once at start: a one-item list, so no `global` is needed.
_process_site = [DEFAULT_SITE]
_site: ContextVar[str | None] = ContextVar("schoolgate_site", default=None)


def set_site(name: str) -> None:
    """Make ``name`` this process's site (at start, from the settings)."""
    if not SITE_PATTERN.match(name):
        raise ValueError(f"site must be lower-case letters, digits, - or _, not {name!r}")
    _process_site[0] = name


def current_site() -> str:
    """The site rows are stamped with now: the event's being applied, else the process's."""
    return _site.get() or _process_site[0]


@contextmanager
def at_site(name: str | None) -> Iterator[None]:
    """Stamp the rows written inside with ``name`` (None: the process's site)."""
    token = _site.set(name)
    try:
        yield
    finally:
        _site.reset(token)
