"""``schoolgate content``: the pages content analysis learned, and the technician's decisions.

``content learned`` lists the entries of ``DATA_DIR/learned.jsonl`` with their
score and the phrases that decided; ``content confirm ENTRY`` makes one a
block in its category for every group (as a local block entry is) and
``content reject ENTRY`` means it is never analysed again. Each decision is
appended to the learned list, which every running worker reads within a
second, and recorded in change control in the same step.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import click

from blocklists.normalise import BadURL, normalise_entry
from proxy.cli.auth import prove
from proxy.cli.common import by_option, config_option, fail, open_store
from proxy.content.learned import LEARNED_FILE, LearnedList
from proxy.content.phrases import CATEGORY_WORDS
from proxy.store import chain


@click.group()
def content() -> None:
    """The pages content analysis learned: list, confirm, reject."""


@content.command("learned")
@click.option("--all", "everything", is_flag=True, help="Also the confirmed and rejected ones.")
@config_option
def content_learned(everything: bool, config_dir: Path) -> None:
    """List the learned pages awaiting a decision (score, category, the phrases that decided)."""
    store = open_store(config_dir)
    learned = LearnedList(store.fs.settings.data_dir / LEARNED_FILE)
    learned.refresh()
    shown = [e for e in learned.entries.values() if everything or e.state == "learned"]
    if not shown:
        click.echo("no learned pages" + ("" if everything else " awaiting a decision"))
    for entry in sorted(shown, key=lambda e: e.at):
        words = CATEGORY_WORDS.get(entry.category, entry.category)
        state = "" if entry.state == "learned" else f"  [{entry.state} by {entry.by}]"
        click.echo(f"{entry.at[:16]}  {entry.entry}  {words}, score {entry.score}{state}")
        click.echo(f"    phrases: {', '.join(entry.phrases)}")


def _decide(
    entry_text: str, state: Literal["confirmed", "rejected"], by: str, reason: str, config_dir: Path
) -> None:
    store = open_store(config_dir)
    learned = LearnedList(store.fs.settings.data_dir / LEARNED_FILE)
    learned.refresh()
    try:
        key = normalise_entry(entry_text)
    except BadURL as exc:
        raise fail(f"{entry_text!r} is not a page address: {exc}") from None
    found = learned.get(key)
    if found is None:
        raise fail(f"{key} is not in the learned list (see `schoolgate content learned --all`)")
    decided = replace(found, state=state, by=by)
    now = datetime.now(UTC)
    _, proof = prove(store.engine, now, by, "policy", store.fs.settings)
    with store.session() as s:
        chain.append(
            s,
            at=now,
            kind="content.confirm" if state == "confirmed" else "content.reject",
            actor=by,
            subject=f"{key} ({CATEGORY_WORDS.get(found.category, found.category)})",
            reason=reason,
            details={"entry": key, "category": found.category, "score": found.score,
                     "phrases": list(found.phrases), **proof},
        )  # fmt: skip
        # Inside the transaction: a failed write rolls the change-log row back with it.
        learned.add(decided)
    click.echo(f"{key}: {state}")


@content.command("confirm")
@click.argument("entry")
@click.option("--reason", required=True, help="Why (recorded for the governor).")
@by_option
@config_option
def content_confirm(entry: str, reason: str, by: str, config_dir: Path) -> None:
    """Make a learned page a block in its category for every group."""
    _decide(entry, "confirmed", by, reason, config_dir)


@content.command("reject")
@click.argument("entry")
@click.option("--reason", required=True, help="Why (recorded for the governor).")
@by_option
@config_option
def content_reject(entry: str, reason: str, by: str, config_dir: Path) -> None:
    """Open a learned page again; it is never analysed again."""
    _decide(entry, "rejected", by, reason, config_dir)
