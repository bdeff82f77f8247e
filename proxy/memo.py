"""ShortKeyCache: an LRU cache that keeps only answers for short keys.

The request path caches pure answers about strings a client sends (is this host
valid, which safe-search lock, how a run of letters folds). A client chooses those
strings, and a Host header may be 64 KiB: an LRU cache of 32,768 such keys would hold
2 GiB. So a key longer than ``longest`` is answered every time and never kept; the
answer is the same either way, only the time differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# Longer than any DNS name (253 characters, a trailing dot, brackets): a host of this
# length or less may be kept.
LONGEST_HOST = 255


class ShortKeyCache[R]:
    """``fn(key, *rest)`` with the answers for keys of up to ``longest`` items kept (LRU)."""

    def __init__(self, fn: Callable[..., R], *, maxsize: int, longest: int) -> None:
        self.fn = fn
        self.longest = longest
        self._cached = functools.lru_cache(maxsize=maxsize)(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, key: str | bytes, *rest: Any) -> R:
        if len(key) > self.longest:
            return self.fn(key, *rest)
        return self._cached(key, *rest)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()


def short_keys[R](*, maxsize: int, longest: int) -> Callable[[Callable[..., R]], ShortKeyCache[R]]:
    """Decorator form of ``ShortKeyCache``."""

    def wrap(fn: Callable[..., R]) -> ShortKeyCache[R]:
        return ShortKeyCache(fn, maxsize=maxsize, longest=longest)

    return wrap
