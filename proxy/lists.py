"""Opening the list sources the settings name, as one ``Matcher``.

The proxy, ``check`` and ``explain`` all get their index from here, so they
see the same entries. ``index_stamp`` is what the running proxy polls to
notice that the lists have changed.
"""

from __future__ import annotations

from pathlib import Path

from blocklists.formats import ListError, read_iwf, read_ut1
from blocklists.index import IndexBuilder, Matcher
from proxy.settings import Settings

__all__ = ["ListError", "build_matcher", "index_stamp"]


def build_matcher(settings: Settings) -> Matcher:
    """Read every source into one index; raises ``ListError`` naming the file at fault."""
    builder = IndexBuilder()
    for name, source in settings.sources.items():
        if source.path is None:
            raise ListError(f"source {name!r} has no local copy yet: run `schoolgate lists update`")
        if source.format == "ut1":
            read_ut1(source.path, name, builder)
        elif source.format == "iwf":
            read_iwf(source.path, name, builder)
        else:
            raise ListError(f"source {name!r}: format {source.format!r} is not supported yet")
    return builder.freeze()


def _newest_mtime(path: Path) -> float:
    if not path.exists():
        return 0.0
    if path.is_file():
        return path.stat().st_mtime
    return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)


def index_stamp(settings: Settings) -> object:
    """Changes whenever a source changes on disk."""
    return tuple(
        (name, _newest_mtime(src.path) if src.path else 0.0)
        for name, src in settings.sources.items()
    )
