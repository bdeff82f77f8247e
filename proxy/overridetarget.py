"""What an override would open, checked against the policy before it is asked for.

Shared by ``override request`` and the console's request form: a URL or host
becomes a canonical entry (``host`` or ``host/path``), and an address on an
illegal list is refused, since nothing may open those.
"""

from __future__ import annotations

from blocklists.index import split_entry
from blocklists.normalise import BadURL, normalise_entry
from proxy.controls import WhatKind
from proxy.filterset import Filterset


class TargetError(ValueError):
    """The target cannot be overridden; ``str()`` is one line."""


def site_target(fs: Filterset, target: str) -> tuple[WhatKind, str]:
    """("url" or "host", canonical entry) for ``target``, or ``TargetError``."""
    try:
        entry = normalise_entry(target)
    except BadURL as exc:
        raise TargetError(f"{target!r}: not a URL or host: {exc}") from None
    host, path = split_entry(entry)
    illegal = {n for c in fs.policy.categories.values() if c.illegal for n in c.lists}
    if any(hit.list in illegal for hit in fs.lists.match(host, path or "/")):
        raise TargetError("that address is on an illegal list: it can never be overridden")
    return ("url" if path else "host"), entry
