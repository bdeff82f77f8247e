"""``schoolgate lists``: compile, update, look up and count the category lists.

Registered in ``proxy/cli/__init__.py`` with ``cli.add_command(lists.lists)``. Every command
takes ``--config DIR`` and fails with a one-line ``ClickException``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from blocklists.compiled import CompiledIndex, IndexFormatError
from blocklists.normalise import BadURL, normalise_url
from proxy.cli.common import config_option, fail
from proxy.lists import ListError, build_matcher, compile_index, index_path, update_sources
from proxy.settings import Settings, load_settings
from proxy.yamlfile import ConfigError


def _settings(config_dir: Path) -> Settings:
    try:
        return load_settings(config_dir)
    except ConfigError as exc:
        raise fail(str(exc.problems[0]) if exc.problems else str(exc)) from None


def _open_index(settings: Settings) -> CompiledIndex:
    try:
        matcher = build_matcher(settings)
    except ListError as exc:
        raise fail(str(exc)) from None
    if not isinstance(matcher, CompiledIndex):  # pragma: no cover - build_matcher's contract
        raise fail("the lists are not compiled")
    return matcher


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def lists() -> None:
    """Compile, update, look up and count the category lists."""


@lists.command("compile")
@config_option
def compile_cmd(config_dir: Path) -> None:
    """Build the compiled index in data_dir from every source in the settings."""
    settings = _settings(config_dir)
    try:
        result = compile_index(settings)
    except (ListError, IndexFormatError, OSError) as exc:
        raise fail(f"compile failed, the previous index stays: {exc}") from None
    for report in result.reports.values():
        for line in report.bad_lines:
            click.echo(f"warning: {line}", err=True)
        if report.bad_count > len(report.bad_lines):
            click.echo(
                f"warning: source {report.name!r}: {report.bad_count} bad lines in all", err=True
            )
    total = sum(r.total for r in result.reports.values())
    size = result.path.stat().st_size
    click.echo(
        f"compiled {total} entries from {len(result.reports)} sources into {result.path} "
        f"({size / 1e6:.1f} MB) in {result.seconds:.2f} s"
    )


@lists.command()
@config_option
@click.option(
    "--force",
    is_flag=True,
    help="Accept a copy that shrank, lost a list or holds no entries (never an illegal source).",
)
@click.option("--by", default=None, help="Who updates (for the change log); default: login name.")
@click.argument("names", nargs=-1)
def update(config_dir: Path, force: bool, by: str | None, names: tuple[str, ...]) -> None:
    """Fetch sources that have a url (all, or NAMES), check, compile and swap in.

    A copy that is truncated, fails to parse or holds no entries, or in which the
    source or any one list (a UT1 category) disappeared, emptied or shrank by more
    than the source's max_shrink, is refused unless --force (one line per list);
    a source marked illegal is refused any shrinking, even with --force. The
    previous copy and index stay. Every attempt, with the entries per list before
    and after, is appended to data_dir/list-updates.jsonl (the change-control log).
    """
    settings = _settings(config_dir)
    try:
        results = update_sources(settings, names=list(names) or None, force=force, by=by)
    except ListError as exc:
        raise fail(str(exc)) from None
    if not results:
        click.echo("no source has a url to fetch")
        return
    failed = []
    for r in results:
        before = "-" if r.before is None else r.before
        after = "-" if r.after is None else r.after
        counts = f"{before} -> {after} entries"
        line = f"{r.source}: {r.result} ({counts})"
        click.echo(line + (f": {r.reason}" if r.reason else ""))
        for problem in r.problems:
            click.echo(f"  {problem}")
        if r.result != "updated":
            failed.append(r.source)
    if failed:
        raise fail(f"not updated: {', '.join(failed)}; the previous lists stay in use")


@lists.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("url")
def lookup(config_dir: Path, as_json: bool, url: str) -> None:
    """Which lists hold URL, and by which entry."""
    try:
        canonical = normalise_url(url)
    except BadURL as exc:
        raise fail(f"not a URL: {exc}") from None
    index = _open_index(_settings(config_dir))
    started = time.perf_counter()
    hits = index.match(canonical.host, canonical.path)
    took = time.perf_counter() - started
    if as_json:
        rows = [{"list": h.list, "entry": h.entry} for h in hits]
        click.echo(json.dumps({"url": canonical.entry, "hits": rows}))
        return
    if not hits:
        click.echo(f"{canonical.entry}: in no list ({took * 1e6:.0f} µs)")
        return
    for hit in hits:
        click.echo(f"{hit.list}\t{hit.entry}")


@lists.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(config_dir: Path, as_json: bool) -> None:
    """Entries per list and source, index size, build and load times."""
    settings = _settings(config_dir)
    index = _open_index(settings)
    meta = index.meta
    aliases = index.aliases()
    per_source = {
        name: {k: v for k, v in src.items() if k in ("format", "entries", "bad_lines")}
        for name, src in meta.get("sources", {}).items()
    }
    data = {
        "index": str(index_path(settings)),
        "size_bytes": index.size,
        "built_at": datetime.fromtimestamp(meta["built_at"], UTC).isoformat(timespec="seconds"),
        "compile_seconds": meta.get("compile_seconds"),
        "load_ms": round(index.load_seconds * 1000, 2),
        "host_keys": meta["keys"],
        "hashed_entries": meta["hashed"],
        "sources": per_source,
        "lists": dict(sorted(index.counts().items())),
        "aliases": aliases,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"index     {data['index']} ({index.size / 1e6:.1f} MB)")
    click.echo(f"built     {data['built_at']} in {data['compile_seconds']} s")
    click.echo(f"load      {data['load_ms']} ms (map and checksum)")
    click.echo(f"keys      {data['host_keys']} hosts, {data['hashed_entries']} hashed entries")
    for name, src in per_source.items():
        click.echo(
            f"source    {name} ({src.get('format')}): {src.get('entries')} entries, "
            f"{src.get('bad_lines', 0)} bad lines"
        )
    for name, count in data["lists"].items():
        alias = f"  (= {aliases[name]})" if name in aliases else ""
        click.echo(f"  {count:>10}  {name}{alias}")
