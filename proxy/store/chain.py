"""The change-control log: append-only rows, each hash covering the one before.

A row's hash is SHA-256 over the previous row's hash and the row's own
fields in canonical JSON (not its position), so ``verify`` can say which
row is wrong: an edited row no longer matches its hash; a deleted row
leaves a gap in the sequence numbers or a row that no longer follows its
predecessor; an inserted row breaks the link to the row after it. Anyone
able to rewrite every later hash could still forge a consistent tail, so
exports print the chain head, and ``verify --anchor SEQ:HASH`` checks that a
head written down earlier is still there, unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from proxy.store import notify
from proxy.store.models import Change
from proxy.store.site import DEFAULT_SITE, current_site

GENESIS = "0" * 64
KINDS = {
    "override.request": "override requested",
    "override.approve": "override approved",
    "override.revoke": "override revoked",
    "override.expire": "override expired",
    "override.refuse": "override request refused",
    "access.suspend": "internet access suspended",
    "access.restore": "internet access restored",
    "policy.apply": "policy change applied",
    "policy.propose": "policy change proposed (waits for a second person)",
    "policy.withdraw": "policy change proposal withdrawn",
    "policy.unattributed": "policy edited without `policy apply`",
    "policy.baseline": "policy in force when change control started",
    "policy.refuse": "policy change refused: it would weaken the illegal lists",
    "lists.update": "list update",
    "content.confirm": "learned page confirmed as a block",
    "content.reject": "learned page rejected (never analysed again)",
}
# Kinds that change what is in force: every gateway is told at once (proxy.store.notify).
IN_FORCE = frozenset(
    {"override.approve", "override.revoke", "override.expire", "access.suspend", "access.restore"}
)
# PostgreSQL: one appender at a time, held until commit (SQLite's BEGIN IMMEDIATE does this).
_LOCK_KEY = 0x5C400C


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def row_hash(prev_hash: str, row: Change) -> str:
    """The hash of ``row`` chained to ``prev_hash``."""
    fields: dict[str, Any] = {
        "at": _iso(row.at),
        "kind": row.kind,
        "actor": row.actor,
        "subject": row.subject,
        "target": row.target,
        "reason": row.reason,
        "until": _iso(row.until),
        "approved_by": row.approved_by,
        "details": row.details,
    }
    # The site is covered once it is not the default, so rows written before sites
    # existed (filled with the default by the migration) keep their hashes.
    if row.site and row.site != DEFAULT_SITE:
        fields["site"] = row.site
    body = canonical_json(fields)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def lock(session: Session) -> None:
    """Serialise writers for the rest of this transaction (PostgreSQL; SQLite already is)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def head(session: Session) -> Change | None:
    """The last row of the chain."""
    return session.scalars(select(Change).order_by(Change.seq.desc()).limit(1)).first()


def append(
    session: Session,
    *,
    at: datetime,
    kind: str,
    subject: str,
    actor: str | None = None,
    target: str | None = None,
    reason: str | None = None,
    until: datetime | None = None,
    approved_by: str | None = None,
    details: dict[str, Any] | None = None,
) -> Change:
    """Add one row at the end of the chain, inside the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    lock(session)
    last = head(session)
    row = Change(
        seq=(last.seq + 1) if last else 1,
        at=at,
        kind=kind,
        actor=actor,
        subject=subject,
        target=target,
        reason=reason,
        until=until,
        approved_by=approved_by,
        details=canonical_json(details or {}),
        prev_hash=last.hash if last else GENESIS,
        site=current_site(),
    )
    row.hash = row_hash(row.prev_hash, row)
    session.add(row)
    session.flush()
    if kind in IN_FORCE:
        notify.announce(session)  # every gateway of the trust re-reads its controls at commit
    return row


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: rows checked, the head, and one line per problem."""

    rows: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"verified: {self.rows} rows, chain intact; head #{self.head_seq} {self.head_hash}"
            )
        return f"NOT VERIFIED: {len(self.problems)} problem(s) in {self.rows} rows: " + "; ".join(
            self.problems
        )


def verify_rows(rows: Iterable[Change], anchors: Sequence[tuple[int, str]] = ()) -> Verification:
    """Check the chain: each row's hash, each link, no gaps; and that each anchor is still there."""
    problems: list[str] = []
    prev_seq, prev_hash, count = 0, GENESIS, 0
    by_seq: dict[int, str] = {}
    for row in rows:
        count += 1
        if row.seq > prev_seq + 1:
            missing = (
                f"row {prev_seq + 1}"
                if row.seq == prev_seq + 2
                else f"rows {prev_seq + 1}-{row.seq - 1}"
            )
            problems.append(f"{missing} missing: deleted")
        if row.hash != row_hash(row.prev_hash, row):
            problems.append(f"row {row.seq}: contents do not match its hash: edited")
        # After a gap the link is broken by the deletion already reported.
        if row.prev_hash != prev_hash and row.seq == prev_seq + 1:
            problems.append(
                f"row {row.seq} does not follow row {prev_seq}: a row was inserted or "
                f"deleted before it, or row {prev_seq}'s hash was rewritten"
            )
        by_seq[row.seq] = row.hash
        prev_seq, prev_hash = row.seq, row.hash
    for seq, expected in anchors:
        found = by_seq.get(seq)
        if found is None:
            problems.append(f"anchor row {seq} is no longer in the log: deleted")
        elif not found.startswith(expected.lower()):
            problems.append(f"anchor row {seq} has a different hash than written down: rewritten")
    return Verification(count, prev_seq, prev_hash, tuple(problems))


def verify(session: Session, anchors: Sequence[tuple[int, str]] = ()) -> Verification:
    return verify_rows(session.scalars(select(Change).order_by(Change.seq)), anchors)
