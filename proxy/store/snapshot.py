"""The last known overrides and suspensions, kept on disk for a start with the store down.

The proxy decides with a ``Controls`` snapshot read from the store every few
seconds. If it restarts while the store is down (or slow to answer), it would
otherwise start with none: a suspended pupil would get through until the store
came back. So each snapshot that differs from the last is written to
``DATA_DIR/controls.json`` and read back at start. The file holds names and
reasons, so it is private to the service user (0600), and it is written to a
temporary name and renamed, so a crash leaves the old file or the new one,
never half of one. Nothing here decides: an override or suspension read back
still applies only between its start and end (``Controls`` checks the time of
each request), so one that ended while the proxy was stopped does not apply.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from proxy.controls import ActiveOverride, ActiveSuspension, Controls, ScopeKind, WhatKind

SNAPSHOT_FILE = "controls.json"
VERSION = 1


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: Any) -> datetime:
    when = datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return when


def content(controls: Controls) -> dict[str, Any]:
    """The overrides and suspensions as JSON-able data (without ``loaded_at``)."""
    return {
        "overrides": [
            {
                "id": o.id,
                "what_kind": o.what_kind,
                "what": o.what,
                "scope_kind": o.scope_kind,
                "scope": o.scope,
                "starts": _time(o.starts),
                "ends": _time(o.ends),
                "approved_by": o.approved_by,
                "reason": o.reason,
            }
            for o in controls.overrides
        ],
        "suspensions": [
            {
                "id": s.id,
                "user": s.user,
                "starts": _time(s.starts),
                "ends": _time(s.ends),
                "reason": s.reason,
                "by": s.by,
            }
            for found in controls.suspensions.values()
            for s in found
        ],
    }


def to_json(controls: Controls) -> str:
    return json.dumps(
        {"version": VERSION, "loaded_at": _time(controls.loaded_at), **content(controls)},
        sort_keys=True,
        indent=1,
    )


def from_json(text: str) -> Controls:
    """The snapshot a file holds; raises ``ValueError`` when it is not one."""
    try:
        raw = json.loads(text)
        if raw.get("version") != VERSION:
            raise ValueError(f"unknown snapshot version {raw.get('version')!r}")
        overrides = [
            ActiveOverride(
                id=int(o["id"]),
                what_kind=cast(WhatKind, str(o["what_kind"])),
                what=str(o["what"]),
                scope_kind=cast(ScopeKind, str(o["scope_kind"])),
                scope=None if o["scope"] is None else str(o["scope"]),
                starts=_parse(o["starts"]),
                ends=_parse(o["ends"]),
                approved_by=str(o["approved_by"]),
                reason=str(o["reason"]),
            )
            for o in raw["overrides"]
        ]
        suspensions = [
            ActiveSuspension(
                int(s["id"]),
                str(s["user"]),
                _parse(s["starts"]),
                None if s["ends"] is None else _parse(s["ends"]),
                str(s["reason"]),
                str(s["by"]),
            )
            for s in raw["suspensions"]
        ]
        return Controls.of(overrides, suspensions, loaded_at=_parse(raw["loaded_at"]))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a snapshot of overrides and suspensions: {exc!r}") from None


def save(path: Path, controls: Controls) -> None:
    """Write ``controls`` over ``path``: private, whole (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode misses a file left by a crash
            f.write(to_json(controls))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path) -> Controls | None:
    """The snapshot in ``path``, or None when there is none; raises ``ValueError`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a snapshot of overrides and suspensions: {exc}") from None
    return from_json(text)
