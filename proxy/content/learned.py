"""The list that learns: pages content analysis found, kept for every worker and the technician.

A page whose text crosses a group's threshold becomes an entry of the local
``learned`` list: its canonical URL (host and path, as list entries are
written), the category, the score, the phrases that decided and when. The
list is one JSON-lines file, ``DATA_DIR/learned.jsonl``, private to the
service, appended by whichever worker scored the page (one ``write`` of one
line on an ``O_APPEND`` file, so workers never interleave) and read by every
worker as it grows, so the next request for that page, from any worker, is
blocked without being analysed again.

The technician decides each entry (``schoolgate content confirm`` / ``reject``,
recorded in change control): a confirmed entry is a block in its category for
every group, as a local block entry is; a rejected one is never analysed
again, for anyone. The same file carries those decisions, so the last line
about an entry is its state.

An image the nudity detector scored high (``proxy.content.images``) is an
entry too, of ``kind: image``: its score is the detector's confidence in
percent, its phrases the detected class, and ``page`` the page that showed it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from proxy.jsonlines import JsonLinesTail
from proxy.policy import Group, Policy

LEARNED_FILE = "learned.jsonl"
State = Literal["learned", "confirmed", "rejected"]
Kind = Literal["text", "image"]


@dataclass(frozen=True, slots=True)
class LearnedEntry:
    """One page content analysis found, and what the technician made of it."""

    entry: str
    category: str
    score: int
    phrases: tuple[str, ...]
    at: str
    state: State = "learned"
    by: str | None = None
    kind: Kind = "text"
    page: str | None = None

    def to_json(self) -> str:
        extra: dict[str, object] = {}
        if self.kind != "text":  # text entries keep the lines they always had
            extra = {"kind": self.kind, "page": self.page}
        return json.dumps(
            {
                **extra,
                "entry": self.entry,
                "category": self.category,
                "score": self.score,
                "phrases": list(self.phrases),
                "at": self.at,
                "state": self.state,
                "by": self.by,
            },
            ensure_ascii=False,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> LearnedEntry:
        raw = json.loads(line)
        return cls(
            entry=str(raw["entry"]),
            category=str(raw["category"]),
            score=int(raw["score"]),
            phrases=tuple(str(p) for p in raw.get("phrases", ())),
            at=str(raw["at"]),
            state=raw.get("state", "learned"),
            by=raw.get("by"),
            kind="image" if raw.get("kind") == "image" else "text",
            page=raw.get("page"),
        )


def blocks(found: LearnedEntry, group: Group, policy: Policy) -> bool:
    """Whether ``found`` refuses the request for ``group`` (the proxy and ``explain`` alike).

    Rejected: never. Confirmed: as a local block entry in its category would, by the group's
    action for a policy category of that name (any group with content analysis when the
    policy has none). Learned: for a group whose content analysis blocks and whose threshold
    the score reaches (for an image, its ``image_threshold`` in percent, if it asks for images).
    """
    if found.state == "rejected":
        return False
    if found.state == "confirmed":
        category = policy.categories.get(found.category)
        if category is not None:  # as a local block: the group's action, times and users
            return group.action_for(category.name).kind != "acceptable"  # count as blocked
        return group.content is not None
    rule = group.content
    if rule is None or rule.action != "block":
        return False
    if found.kind == "image":
        return rule.images is not None and found.score >= round(rule.image_threshold * 100)
    threshold = rule.threshold_for().get(found.category)
    return threshold is not None and found.score >= threshold


def learned_now(entry: str, category: str, score: int, phrases: tuple[str, ...]) -> LearnedEntry:
    return LearnedEntry(entry, category, score, phrases, datetime.now(UTC).isoformat())


def append(path: Path, entry: LearnedEntry) -> None:
    """Append one entry as one line, in one write, to a file only the service can read."""
    line = (entry.to_json() + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class LearnedList:
    """The entries in force, by canonical URL; ``refresh`` reads what other workers appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, LearnedEntry] = {}
        self._tail = JsonLinesTail(path)
        self.bad_lines = 0

    def get(self, entry: str) -> LearnedEntry | None:
        return self.entries.get(entry)

    def add(self, entry: LearnedEntry) -> None:
        """Record ``entry`` in the file and in force here at once."""
        append(self.path, entry)
        self.entries[entry.entry] = entry

    def refresh(self) -> int:
        """Read the lines appended since the last call; returns how many were read."""
        lines = self._tail.new_lines()
        if self._tail.restarted:
            # A new or truncated file (retention, a restore): what it holds is all in force.
            self.entries.clear()
        read = 0
        for line in lines:
            try:
                found = LearnedEntry.from_json(line)
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            self.entries[found.entry] = found
            read += 1
        return read
