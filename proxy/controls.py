"""Controls: the overrides and suspensions in force, as one frozen value the decision reads.

Change control lives in the store, but nothing on the request path may do
I/O: the proxy refreshes a ``Controls`` snapshot from the store every few
seconds and hands it to ``decide``. Everything here is pure. Times are
checked against the request's own time, so an override stops applying at
its end even when the snapshot is a few seconds old.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from blocklists.index import host_suffixes, path_matches, split_entry
from proxy.identity import Identity

WhatKind = Literal["url", "host", "category", "all"]
ScopeKind = Literal["user", "group", "everyone"]


@dataclass(frozen=True, slots=True)
class ActiveOverride:
    """An approved, unrevoked override: opens ``what`` for ``scope`` from ``starts`` to ``ends``.

    ``what`` is a canonical entry (``host`` or ``host/path``) for ``url`` and
    ``host``, a category name for ``category``, and ``*`` for ``all`` (a
    filter switch-off). No override ever opens an illegal category.
    """

    id: int
    what_kind: WhatKind
    what: str
    scope_kind: ScopeKind
    scope: str | None
    starts: datetime
    ends: datetime
    approved_by: str
    reason: str

    def covers(self, identity: Identity, when: datetime) -> bool:
        """Whether this override is for this person and in force at ``when``."""
        if not self.starts <= when < self.ends:
            return False
        if self.scope_kind == "everyone":
            return True
        if self.scope_kind == "group":
            return identity.group == self.scope
        return identity.user is not None and identity.user == self.scope

    def opens_site(self, host: str, path: str | None) -> bool:
        """Whether it opens this whole request (a switch-off, or this host or URL)."""
        if self.what_kind == "all":
            return True
        if self.what_kind not in ("host", "url"):
            return False
        entry_host, entry_path = split_entry(self.what)
        if entry_host not in host_suffixes(host):
            return False
        if entry_path is None:
            return True
        return path is not None and path_matches(entry_path, path)

    def path_under(self, host: str) -> bool:
        """Whether it opens a path on this host (so the host alone cannot decide)."""
        if self.what_kind != "url":
            return False
        return split_entry(self.what)[0] in host_suffixes(host)

    @property
    def scope_label(self) -> str:
        return "everyone" if self.scope_kind == "everyone" else f"{self.scope_kind}:{self.scope}"

    @property
    def what_label(self) -> str:
        return "all categories (filter switch-off)" if self.what_kind == "all" else self.what

    def describe(self) -> str:
        return (
            f"override #{self.id}: {self.what_label} for {self.scope_label} "
            f"until {self.ends:%Y-%m-%d %H:%M} UTC, approved by {self.approved_by}"
        )


@dataclass(frozen=True, slots=True)
class ActiveSuspension:
    """A user's internet access removed from ``starts`` until ``ends`` (None: until restored)."""

    id: int
    user: str
    starts: datetime
    ends: datetime | None
    reason: str
    by: str

    def covers(self, when: datetime) -> bool:
        return self.starts <= when and (self.ends is None or when < self.ends)

    def describe(self) -> str:
        until = f"until {self.ends:%Y-%m-%d %H:%M} UTC" if self.ends else "until restored"
        return f"internet access of {self.user} suspended {until} by {self.by}: {self.reason}"


@dataclass(frozen=True)
class Controls:
    """A snapshot of the overrides and suspensions in force; ``loaded_at`` None when empty."""

    overrides: tuple[ActiveOverride, ...] = ()
    suspensions: dict[str, tuple[ActiveSuspension, ...]] = field(default_factory=dict)
    loaded_at: datetime | None = None

    @classmethod
    def of(
        cls,
        overrides: Iterable[ActiveOverride],
        suspensions: Iterable[ActiveSuspension],
        loaded_at: datetime,
    ) -> Controls:
        by_user: dict[str, list[ActiveSuspension]] = {}
        for suspension in suspensions:
            by_user.setdefault(suspension.user, []).append(suspension)
        return cls(tuple(overrides), {u: tuple(s) for u, s in by_user.items()}, loaded_at=loaded_at)

    def overrides_for(self, identity: Identity, when: datetime) -> tuple[ActiveOverride, ...]:
        """The overrides that apply to this person at this time."""
        if not self.overrides:
            return ()
        return tuple(o for o in self.overrides if o.covers(identity, when))

    def suspension_of(self, identity: Identity, when: datetime) -> ActiveSuspension | None:
        """This person's suspension in force at ``when``, if any."""
        if identity.user is None:
            return None
        for suspension in self.suspensions.get(identity.user, ()):
            if suspension.covers(when):
                return suspension
        return None


NO_CONTROLS = Controls()
