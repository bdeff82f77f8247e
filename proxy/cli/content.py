"""``schoolgate content``: the pages content analysis learned, and the technician's decisions.

``content learned`` lists the entries of ``DATA_DIR/learned.jsonl`` with their
score and the phrases that decided (an image: the detector's confidence, the
class it saw, and the page that showed it); ``content confirm ENTRY`` makes one a
block in its category for every group (as a local block entry is) and
``content reject ENTRY`` means it is never analysed again. Each decision is
appended to the learned list, which every running worker reads within a
second, and recorded in change control in the same step, by
``proxy.content.decide`` as the console's decisions are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from proxy.cli.auth import prove
from proxy.cli.common import by_option, config_option, fail, open_store
from proxy.content import decide
from proxy.content.learned import LEARNED_FILE, LearnedList
from proxy.content.phrases import CATEGORY_WORDS


@click.group()
def content() -> None:
    """The pages content analysis learned: list, confirm, reject."""


@content.command("learned")
@click.option("--all", "everything", is_flag=True, help="Also the confirmed and rejected ones.")
@config_option
def content_learned(everything: bool, config_dir: Path) -> None:
    """List the learned pages awaiting a decision (score, category, the phrases that decided;
    an image: its detection and the page that showed it)."""
    store = open_store(config_dir)
    learned = LearnedList(store.fs.settings.data_dir / LEARNED_FILE)
    learned.refresh()
    shown = [e for e in learned.entries.values() if everything or e.state == "learned"]
    if not shown:
        click.echo("no learned pages" + ("" if everything else " awaiting a decision"))
    for entry in sorted(shown, key=lambda e: e.at):
        words = CATEGORY_WORDS.get(entry.category, entry.category)
        state = "" if entry.state == "learned" else f"  [{entry.state} by {entry.by}]"
        if entry.kind == "image":
            # an image's score is the detector's confidence, its phrases the class it saw
            click.echo(f"{entry.at[:16]}  image {entry.entry}  {words}, {entry.score}%{state}")
            click.echo(f"    detected: {', '.join(entry.phrases)}")
            if entry.page:
                click.echo(f"    shown on {entry.page}")
            continue
        click.echo(f"{entry.at[:16]}  {entry.entry}  {words}, score {entry.score}{state}")
        click.echo(f"    phrases: {', '.join(entry.phrases)}")


def _decide(
    entry_text: str, decision: decide.Decision, by: str, reason: str, config_dir: Path
) -> None:
    store = open_store(config_dir)
    learned = LearnedList(store.fs.settings.data_dir / LEARNED_FILE)
    learned.refresh()
    try:
        found = decide.find(learned, entry_text)
    except decide.NotAnAddress as exc:
        raise fail(str(exc)) from None
    except decide.NotLearned as exc:
        raise fail(f"{exc} (see `schoolgate content learned --all`)") from None
    now = datetime.now(UTC)
    _, proof = prove(store.engine, now, by, "policy", store.fs.settings)
    with store.session() as s:
        decided = decide.decide(
            s, learned, found, decision, by=by, reason=reason, now=now, proof=proof
        )
    click.echo(f"{found.entry}: {decided.state}")


@content.command("confirm")
@click.argument("entry")
@click.option("--reason", required=True, help="Why (recorded for the governor).")
@by_option
@config_option
def content_confirm(entry: str, reason: str, by: str, config_dir: Path) -> None:
    """Make a learned page a block in its category for every group."""
    _decide(entry, "confirm", by, reason, config_dir)


@content.command("reject")
@click.argument("entry")
@click.option("--reason", required=True, help="Why (recorded for the governor).")
@by_option
@config_option
def content_reject(entry: str, reason: str, by: str, config_dir: Path) -> None:
    """Open a learned page again; it is never analysed again."""
    _decide(entry, "reject", by, reason, config_dir)
