"""Applying a policy under change control: validate, show the impact, record, install.

Shared by ``schoolgate policy apply`` and the console's policy page, so both
check the same way and write the same change-log row. ``preview`` changes
nothing; ``apply`` appends the ``policy.apply`` row and installs the file in
the same transaction (if writing the file fails, the row is rolled back).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from proxy.filterset import Filterset
from proxy.policy import Policy, parse_policy
from proxy.policydiff import impact, text_diff
from proxy.store import chain
from proxy.store.events import sha256
from proxy.store.models import Change
from proxy.trust import layered_policy, recorded_text


@dataclass(frozen=True)
class Preview:
    """What applying ``text`` would change: decision changes and the text diff."""

    text: str
    old_text: str
    policy: Policy
    changes: list[str]
    diff: str


def preview(fs: Filterset, text: str, source: Path) -> Preview:
    """Validate ``text`` as the policy (raises ``ConfigError``) and compare it with the one in
    force."""
    # Built as the proxy would build it: a policy that weakens an illegal list is refused here.
    # With a trust policy the text is this site's overlay on it (proxy/trust.py).
    trust = fs.settings.trust_policy
    parsed = layered_policy(text, source, trust) if trust else parse_policy(text, source)
    new = fs.with_policy(parsed).policy
    target = fs.policy.source
    old_text = target.read_text(encoding="utf-8") if target.exists() else ""
    return Preview(
        text, old_text, new, impact(fs.policy, new), text_diff(old_text, text, target.name)
    )


def install(target: Path, text: str) -> None:
    """Write ``text`` over ``target`` atomically (temporary file, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(
    session: Session,
    fs: Filterset,
    shown: Preview,
    *,
    by: str,
    reason: str,
    now: datetime,
    extra: dict[str, object] | None = None,
    approved_by: str | None = None,
) -> Change:
    """Record the change as ``by``'s (approved by ``approved_by`` when a second person had to)
    and install it, in the caller's transaction."""
    target = fs.policy.source
    # With a trust policy, the overlay and the trust's text under it, as the proxy records it.
    recorded = recorded_text(shown.text, fs.settings.trust_policy)
    previous = recorded_text(shown.old_text, fs.settings.trust_policy)
    row = chain.append(
        session,
        at=now,
        kind="policy.apply",
        actor=by,
        subject=f"policy {target}",
        reason=reason,
        approved_by=approved_by,
        details={
            "sha256": sha256(recorded),
            "previous_sha256": sha256(previous),
            "impact": shown.changes,
            "diff": shown.diff,
            "text": recorded,
            **(extra or {}),
        },
    )
    # Installed inside the transaction: if writing fails, the record is rolled back.
    install(target, shown.text)
    return row
