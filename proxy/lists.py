"""The list sources the settings name, compiled into one index file, and their updates.

The proxy, ``check``, ``explain`` and ``lists lookup`` all get their index from
``build_matcher``, so they see the same entries. It verifies the compiled index
``DATA_DIR/lists.idx`` and maps a private snapshot of it (``DATA_DIR/mapped/``,
``blocklists.compiled.open_private``: every worker shares one copy, and nothing
written to ``lists.idx`` in place reaches it), compiling it first when it is
missing or older than its sources. ``index_stamp`` is what the running proxy
polls: it changes when a new index is renamed into place (by ``lists compile``
or ``lists update``), when ``lists.idx`` is touched at all, when a source changes
on disk, or when an index in use fails its checksum; the proxy then calls
``build_matcher`` again and swaps the new matcher in whole; requests in flight
keep the old mapping until they finish.

Failure policy: if compiling fails and an index is already there, that index
stays in use (a warning is logged). A ``lists.idx`` that fails its checksum is
compiled again from the sources; if that fails too, or there is no index at all,
``ListError`` (one line) is raised: the proxy keeps its last good filterset, or
refuses to start. An index in use that fails its checksum fails closed (every
lookup raises, the filter blocks) until a good one is swapped in.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blocklists.compiled import (
    CompiledBuilder,
    CompiledIndex,
    IndexFormatError,
    open_private,
    read_meta,
)
from blocklists.fetch import fetch, redact_url
from blocklists.formats import ListError, SourceReport, read_source
from blocklists.index import Matcher
from proxy.illegal import illegal_sources
from proxy.settings import Settings, Source

__all__ = [
    "ListError",
    "UpdateResult",
    "build_matcher",
    "compile_index",
    "index_path",
    "index_stamp",
    "update_sources",
]

log = logging.getLogger(__name__)

INDEX_FILE = "lists.idx"
UPDATES_LOG = "list-updates.jsonl"
SOURCES_DIR = "sources"
MAPPED_DIR = "mapped"


def index_path(settings: Settings) -> Path:
    return settings.data_dir / INDEX_FILE


def fetched_path(settings: Settings, name: str, source: Source) -> Path:
    """Where ``lists update`` keeps the fetched copy of a source with a ``url``."""
    suffix = ".tar.gz" if source.format == "ut1" else ".txt"
    return settings.data_dir / SOURCES_DIR / f"{name}{suffix}"


def source_path(settings: Settings, name: str, source: Source) -> Path | None:
    """The local copy to read: the fetched one when there is one, else ``path``."""
    if source.url:
        fetched = fetched_path(settings, name, source)
        if fetched.exists():
            return fetched
    return source.path


def _stamp_of(path: Path | None) -> list[Any]:
    """Newest mtime and file count of a file or a UT1 tree (two levels deep)."""
    if path is None or not path.exists():
        return [str(path), 0, 0]
    if path.is_file():
        return [str(path), path.stat().st_mtime_ns, 1]
    newest, count = path.stat().st_mtime_ns, 0
    with os.scandir(path) as top:
        for entry in top:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
            if entry.is_dir():
                with os.scandir(entry.path) as files:
                    for f in files:
                        newest = max(newest, f.stat().st_mtime_ns)
                        count += 1
    return [str(path), newest, count]


def sources_stamp(settings: Settings) -> dict[str, Any]:
    """What the index was built from: each source's format, copy and newest mtime."""
    return {
        name: {"format": src.format, "copy": _stamp_of(source_path(settings, name, src))}
        for name, src in settings.sources.items()
    }


@dataclass
class CompileResult:
    path: Path
    reports: dict[str, SourceReport]
    seconds: float


def compile_index(settings: Settings, *, out: Path | None = None) -> CompileResult:
    """Read every source and write the compiled index (to ``out``, default the live one)."""
    started = time.perf_counter()
    builder = CompiledBuilder()
    reports: dict[str, SourceReport] = {}
    stamp = sources_stamp(settings)  # before reading: a change while reading means stale
    for name, source in settings.sources.items():
        path = source_path(settings, name, source)
        if path is None:
            raise ListError(f"source {name!r} has no local copy yet: run `schoolgate lists update`")
        reports[name] = read_source(
            source.format, path, name, builder, max_bad=source.max_bad_lines
        )
    for name, report in reports.items():
        stamp[name]["entries"] = report.total
        stamp[name]["bad_lines"] = report.bad_count
        stamp[name]["aliases"] = report.aliases
        # lines read per list (aliases too): what the next `lists update` compares with
        stamp[name]["lists"] = report.entries
    builder.sources = stamp
    target = out or index_path(settings)
    builder.write(target, started=started)
    return CompileResult(target, reports, time.perf_counter() - started)


def _is_stale(settings: Settings, path: Path) -> bool:
    try:
        recorded = read_meta(path).get("sources", {})
    except IndexFormatError:
        return True
    current = sources_stamp(settings)
    if recorded.keys() != current.keys():
        return True
    return any(
        recorded[n].get("format") != current[n]["format"]
        or recorded[n].get("copy") != current[n]["copy"]
        for n in current
    )


def mapped_dir(settings: Settings) -> Path:
    """The private folder of the verified snapshots the proxy maps (``open_private``)."""
    return settings.data_dir / MAPPED_DIR


# Every index build_matcher has handed out and someone still holds: what index_stamp
# verifies on the reload timer (usually one; two for a moment during a swap).
_LIVE: weakref.WeakSet[CompiledIndex] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # the reload builds in a thread while the loop verifies


def build_matcher(settings: Settings) -> Matcher:
    """The compiled index, compiled first if missing or stale; raises ``ListError``.

    It is mapped through a verified private snapshot (``open_private``). A live
    index that fails its checksum (changed in place, truncated, a foreign file)
    is compiled again from the sources; when that fails too, ``ListError`` says
    both in one line, and the caller keeps its last good index or refuses to start.
    """
    path = index_path(settings)
    compiled = False
    if not path.exists() or _is_stale(settings, path):
        try:
            compile_index(settings)
            compiled = True
        except (ListError, IndexFormatError, OSError) as exc:
            if not path.exists():
                raise ListError(str(exc)) from None
            log.warning("lists: cannot compile (%s); keeping the previous index %s", exc, path)
    try:
        index = open_private(path, mapped_dir(settings))
    except IndexFormatError as exc:
        if compiled:
            raise ListError(str(exc)) from None
        log.warning("lists: %s; compiling it again from the sources", exc)
        try:
            compile_index(settings)
            index = open_private(path, mapped_dir(settings))
        except (ListError, IndexFormatError, OSError) as again:
            raise ListError(f"{exc}, and it cannot be compiled again: {again}") from None
    with _LIVE_LOCK:
        _LIVE.add(index)
    return index


def index_stamp(settings: Settings) -> object:
    """Changes when a new index is renamed into place, a source's local copy changes, or
    an index in use fails its checksum (``CompiledIndex.verify``, on every call: 0.6 ms
    for the sample's 14.5 MB index, 3.5 ms at full size, 66 MB; a failed one fails
    closed until a good index is swapped in)."""
    try:
        st = index_path(settings).stat()
        index: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        index = None
    # fetched copies change only through `lists update`, which swaps the index itself
    copies = tuple(
        (name, tuple(_stamp_of(src.path)))
        for name, src in settings.sources.items()
        if not (src.url and fetched_path(settings, name, src).exists())
    )
    broken = []
    with _LIVE_LOCK:
        in_use = list(_LIVE)
    for live in in_use:
        known = bool(live.closed_reason)
        if not live.verify():
            broken.append(id(live))
            if not known:
                log.error("lists: %s; blocking everything until it is rebuilt", live.closed_reason)
    return (index, copies, tuple(sorted(broken)))


# -- updates ------------------------------------------------------------------------------


@dataclass
class UpdateResult:
    """One source's update: what the change log records."""

    source: str
    url: str
    result: str  # updated | refused | failed
    before: int | None = None
    after: int | None = None
    reason: str = ""
    bad_lines: list[str] = field(default_factory=list)
    # entries per list (a UT1 category, or the source's one list), before and after
    lists_before: dict[str, int] | None = None
    lists_after: dict[str, int] = field(default_factory=dict)
    # one line per list that disappeared, emptied or shrank too far ("ut1/adult: ...")
    problems: list[str] = field(default_factory=list)

    def list_counts(self) -> dict[str, list[int | None]]:
        """Every list's [before, after] (None where it is absent), for the change log;
        nothing when the new copy was never read (a failed download)."""
        if self.after is None:
            return {}
        before = self.lists_before or {}
        names = sorted(before.keys() | self.lists_after.keys())
        return {n: [before.get(n), self.lists_after.get(n)] for n in names}


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _credentials(name: str, source: Source) -> str | None:
    if source.credentials_env:
        value = os.environ.get(source.credentials_env)
        if not value:
            raise ListError(
                f"source {name!r}: environment variable {source.credentials_env} is not set"
            )
        return value.strip()
    if source.credentials_file:
        try:
            return source.credentials_file.read_text("utf-8").strip().splitlines()[0]
        except (OSError, IndexError):
            raise ListError(
                f"source {name!r}: cannot read credentials file {source.credentials_file}"
            ) from None
    return None


@dataclass
class _Counts:
    """A copy's entries: in all, per list (aliases included), and which lists are aliases."""

    total: int
    lists: dict[str, int]
    aliases: set[str]


def _previous_counts(settings: Settings, names: list[str]) -> dict[str, _Counts]:
    """The counts of the copies in use: from the index's record of them, else by reading
    the copy itself (an index from before per-list counts, or one that cannot be read)."""
    try:
        recorded = read_meta(index_path(settings)).get("sources", {})
    except IndexFormatError:
        recorded = {}
    found: dict[str, _Counts] = {}
    for name in names:
        rec = recorded.get(name, {})
        if isinstance(rec.get("entries"), int) and isinstance(rec.get("lists"), dict):
            found[name] = _Counts(rec["entries"], rec["lists"], set(rec.get("aliases") or {}))
            continue
        source = settings.sources[name]
        path = source_path(settings, name, source)
        if path is None or not path.exists():
            continue  # the first fetch: nothing to compare with
        try:
            report = read_source(
                source.format, path, name, _CountingSink(), max_bad=source.max_bad_lines
            )
        except ListError:
            log.warning("lists: cannot count the copy in use of %r; no per-list check", name)
            continue
        found[name] = _Counts(report.total, report.entries, set(report.aliases))
    return found


def _record(settings: Settings, result: UpdateResult, by: str, forced: bool) -> None:
    row = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": by,
        "source": result.source,
        "url": result.url,
        "result": result.result,
        "before": result.before,
        "after": result.after,
        "forced": forced,
        "reason": result.reason,
        "lists": result.list_counts(),
        "problems": result.problems,
    }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (settings.data_dir / UPDATES_LOG).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def update_sources(
    settings: Settings,
    *,
    names: list[str] | None = None,
    force: bool = False,
    by: str | None = None,
) -> list[UpdateResult]:
    """Fetch sources with a ``url``, check them, compile, swap in; record every attempt.

    A new copy is refused (unless ``force``) when it fails to download whole or to parse,
    holds no entries, or when the source or any one of its lists (a UT1 category) has
    disappeared, emptied or shrunk by more than the source's ``max_shrink``: a bigger
    total must not hide a category gone (UT1 without ``adult/`` and the rest doubled).
    A source marked ``illegal`` is refused any shrinking at all, even with ``force``.
    Refused copies are deleted; the previous copy and index stay. The index is compiled
    to a temporary name and renamed over the live one, so the proxy swaps it in whole.
    """
    by = by or _login_name()
    wanted = names or [n for n, s in settings.sources.items() if s.url]
    for n in wanted:
        if n not in settings.sources:
            raise ListError(f"no source {n!r} in the settings")
        if not settings.sources[n].url:
            raise ListError(f"source {n!r} has no url to fetch")
    before = _previous_counts(settings, wanted)
    # Marked illegal: true, or an IWF-format list (illegal whatever the settings say).
    illegal_names = illegal_sources(settings)
    results: dict[str, UpdateResult] = {}
    downloads: dict[str, Path] = {}
    sources_dir = settings.data_dir / SOURCES_DIR
    sources_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in wanted:
            source = settings.sources[name]
            url = source.url or ""
            result = results[name] = UpdateResult(name, redact_url(url), "failed")
            previous = before.get(name)
            if previous is not None:
                result.before, result.lists_before = previous.total, previous.lists
            tmp = sources_dir / f".{name}.{os.getpid()}.download"
            try:
                fetch(url, tmp, credentials=_credentials(name, source))
                report = read_source(
                    source.format, tmp, name, _CountingSink(), max_bad=source.max_bad_lines
                )
            except ListError as exc:
                tmp.unlink(missing_ok=True)
                result.reason = str(exc)
                continue
            result.after, result.lists_after = report.total, report.entries
            result.bad_lines = report.bad_lines
            aliases = set(report.aliases) | (previous.aliases if previous else set())
            illegal = name in illegal_names
            refusal = _refusal(result, source.max_shrink, illegal, aliases)
            if refusal and illegal:
                tmp.unlink(missing_ok=True)
                result.result = "refused"
                result.reason = refusal + "; an illegal source may not shrink, even with --force"
                continue
            if refusal and not force:
                tmp.unlink(missing_ok=True)
                result.result, result.reason = "refused", refusal + "; use --force to accept"
                continue
            result.reason = refusal
            downloads[name] = tmp
        if downloads:
            _swap_in(settings, downloads, results)
    finally:
        for tmp in downloads.values():
            tmp.unlink(missing_ok=True)
        for result in results.values():
            _record(settings, result, by, force)
    return list(results.values())


def _swap_in(
    settings: Settings, downloads: dict[str, Path], results: dict[str, UpdateResult]
) -> None:
    """Put the checked copies in place, compile, rename the index over the live one.

    If compiling fails the previous copies are put back, and the live index was never
    touched: the proxy goes on with it.
    """
    tmp_index = index_path(settings).with_name(f".{INDEX_FILE}.{os.getpid()}.new")
    backups: dict[Path, Path | None] = {}
    try:
        for name, tmp in downloads.items():
            dest = fetched_path(settings, name, settings.sources[name])
            backup = None
            if dest.exists():
                backup = dest.with_name(f".{dest.name}.previous")
                os.replace(dest, backup)
            backups[dest] = backup
            os.replace(tmp, dest)
        compile_index(settings, out=tmp_index)
        os.replace(tmp_index, index_path(settings))
    except (ListError, IndexFormatError, OSError) as exc:
        for dest, backup in backups.items():
            if backup is not None:
                os.replace(backup, dest)
            else:
                dest.unlink(missing_ok=True)
        for name in downloads:
            results[name].result, results[name].reason = "failed", str(exc)
        return
    finally:
        tmp_index.unlink(missing_ok=True)
    for backup in backups.values():
        if backup is not None:
            backup.unlink(missing_ok=True)
    for name in downloads:
        results[name].result = "updated"


def _refusal(result: UpdateResult, max_shrink: float, illegal: bool, aliases: set[str]) -> str:
    """Why the new copy must not go in ("" if it may); fills ``result.problems``.

    ``max_shrink`` applies to the source's total and to each list on its own; for an
    ``illegal`` source any loss is too much. An alias (``ut1/porn`` -> ``ut1/adult``)
    counts its target's entries, so only its disappearance is its own problem.
    """
    limit = 0.0 if illegal else max_shrink
    problems = result.problems
    after = result.lists_after
    for name, was in sorted((result.lists_before or {}).items()):
        now = after.get(name)
        if now is None:
            problems.append(f"{name}: gone (was {was} entries)")
        elif was and not now:
            problems.append(f"{name}: emptied (was {was} entries)")
        elif name not in aliases and now < was * (1 - limit):
            problems.append(
                f"{name}: {was} -> {now} entries ({(now - was) / was:+.1%}, "
                f"more than the {limit:.0%} allowed)"
            )
    reasons: list[str] = []
    if result.after == 0:
        reasons.append("the new copy holds no entries")
    elif result.before and result.after is not None and result.after < result.before * (1 - limit):
        reasons.append(
            f"the new copy holds {result.after} entries, down from {result.before}: "
            f"more than {limit:.0%} fewer"
        )
    if problems:
        names = ", ".join(p.split(":", 1)[0] for p in problems)
        reasons.append(f"lists gone or shrunk: {names}")
    return "; ".join(reasons)


class _CountingSink:
    """A ``ListSink`` that only lets the reader check and count a new copy."""

    def declare(self, list_name: str) -> None:
        pass

    def add(self, list_name: str, entry: str) -> None:
        pass

    def add_many(self, list_name: str, entries: Iterable[str]) -> None:
        pass

    def add_hashed(self, list_name: str, digest: bytes, host: str | None = None) -> None:
        pass

    def alias(self, alias_name: str, list_name: str) -> None:
        pass
