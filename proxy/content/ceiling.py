"""The most a page could score, read from its bytes before it is parsed.

Most pages a pupil reads could never reach a threshold: the words of the phrases
that would have to be there are not there, or not often enough. ``Ceiling``
finds that out in two Hyperscan passes over the page's bytes (C, about 0.15 ms
for 100 KB: character references, then the phrases' words as pure literals),
where the full analysis parses the HTML, folds its text and matches every phrase
(``proxy.content.phrases``): about 1.5 ms for a 100 KB page, on the request path.
A page whose ceiling is below the group's threshold in every category passes
without the full analysis; any other is analysed in full, as before. The
ceiling is an upper bound, never an estimate, so the shortcut changes no
verdict; ``tests/unit/proxy/content/test_ceiling.py`` checks it against the full
score on the labelled texts, the benign documents and hand-made evasions.

Why it is an upper bound. The full score is the sum, over the phrases with a
positive weight, of weight x min(count, cap) (negative phrases and exceptions
only lower it). The text scored is the page's title, its ``alt`` texts and its
body text (scripts, styles and the like removed), folded by ``phrases.fold``:
non-ASCII runs through Unicode's folding, then every ASCII byte through one
table (letters to lower case, digits to the letters they look like, anything
else to a space), then split into words. The bytes scanned here are the whole
page folded by the same two steps, markup and all, with the runs of spaces left
as they are: every word of the scored text is in them between two spaces (the
``<`` and ``>`` of a tag around it, and any punctuation, become spaces), so it
occurs here at least as often as there, and a phrase occurs at most as often as
its rarest counted word. Three things could put a word in the text that the
bytes do not hold:

- a character reference (``&#112;orn``, ``p&oacute;rn``): a page with a
  reference to anything that folds to a letter or digit gets no ceiling;
- a NUL byte, which the HTML parser drops from text (joining ``p\\0orn``): a
  page with one gets no ceiling;
- a charset other than UTF-8: the caller asks only for UTF-8 HTML pages (plain
  text is scored as mitmproxy decodes it, which may differ from these bytes).

Words in scripts, styles, attributes, tag names and comments are counted here
and not there: the ceiling is higher than it need be, never lower. The commonest
words (``COMMON``: "the", "to", "you"...) are looked for once, not counted: a
phrase made only of them counts as present up to the cap.

Hyperscan's Python wheels are built for x86_64 Linux and macOS. Without the
module (``available()`` is False) no page gets a ceiling and every page is
analysed in full.
"""

from __future__ import annotations

import contextlib
import functools
import html.entities
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import hyperscan
except ImportError:  # not built for this machine: every page is analysed in full
    hyperscan = None  # type: ignore[assignment]

# Looked for once, not counted: each is on most pages, many times (counting "the" would call
# back a thousand times a page), so its count would bound nothing anyway.
COMMON = frozenset(
    {
        *("a", "to", "no", "my", "the", "and", "for", "you", "your", "are", "how", "get"),
        *("now", "way", "end", "with", "this", "that", "have", "from", "make", "many"),
        *("free", "want", "pro", "de", "na", "sa", "te", "jak", "sie", "ale", "dla", "web"),
    }
)
# A character reference: numeric (with or without its ";", as parsers read them; matched
# with the byte after its digits, so each is found once, whole), or named; the named ones
# that stand for a letter or digit are listed in full.
_NUMERIC = b"&#(?:[0-9]+(?:[^0-9]|$)|[xX][0-9a-fA-F]+(?:[^0-9a-fA-F]|$))"
_DIGITS = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+))")


@dataclass(frozen=True, slots=True)
class CeilingPhrase:
    """One weighted phrase as the ceiling sees it: its category, weight and folded words."""

    category: str
    weight: int
    words: tuple[str, ...]


def available() -> bool:
    return hyperscan is not None


class _References:
    """The character references that could put a letter or digit in a page's text."""

    NAMED, NUMERIC = 0, 1

    def __init__(self, folds_to_nothing: Callable[[str], bool]) -> None:
        self.folds_to_nothing = folds_to_nothing
        # Without the ";": "&eacute" is read as "é" in text too (a legacy reference).
        letters = sorted(
            {
                name.rstrip(";")
                for name, value in html.entities.html5.items()
                if not folds_to_nothing(value)
            },
            key=len,
            reverse=True,
        )
        named = b"&(?:" + "|".join(letters).encode() + b")"
        self.database = hyperscan.Database()
        self.database.compile(
            expressions=[named, _NUMERIC],
            ids=[self.NAMED, self.NUMERIC],
            elements=2,
            flags=[hyperscan.HS_FLAG_SINGLEMATCH, hyperscan.HS_FLAG_SOM_LEFTMOST],
        )
        self._code_points: dict[int, bool] = {}
        self._seen: dict[bytes, bool] = {}  # "&#8217;" as matched: the same on every page
        self._local = threading.local()

    def any_letter(self, page: bytes) -> bool:
        """Whether ``page`` holds a reference that stands for a letter or a digit."""
        found: list[bool] = []

        def matched(ident: int, start: int, end: int, flags: int, context: Any) -> bool | None:
            if ident == self.NUMERIC:
                reference = page[start:end]
                harmless = self._seen.get(reference)
                if harmless is None:
                    harmless = self.harmless(reference)
                    if len(self._seen) < 4096:
                        self._seen[reference] = harmless
                if harmless:
                    return None
            found.append(True)
            return True  # stops the scan

        with contextlib.suppress(hyperscan.ScanTerminated):  # the callback stopped it
            self.database.scan(page, match_event_handler=matched, scratch=_scratch(self))
        return bool(found)

    def harmless(self, reference: bytes) -> bool:
        """Whether a numeric reference (``&#233;``, ``&#xE9 ``: with the byte after its
        digits, if there is one) stands for no letter or digit."""
        parsed = _DIGITS.match(reference)
        if parsed is None:
            return False
        hexadecimal, decimal = parsed.groups()
        code = int(hexadecimal, 16) if hexadecimal else int(decimal)
        found = self._code_points.get(code)
        if found is None:
            # 0x80-0x9F are read as windows-1252 (&#138; is "Š"): not harmless. Beyond
            # Unicode, a surrogate or 0: U+FFFD, which folds to a space.
            if 0x80 <= code <= 0x9F:
                found = False
            elif code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                found = True
            else:
                found = self.folds_to_nothing(chr(code))
            if len(self._code_points) < 4096:
                self._code_points[code] = found
        return found


@functools.cache
def _references_for(folds_to_nothing: Callable[[str], bool]) -> _References:
    """One compiled set of references per process (the phrases give one function)."""
    return _References(folds_to_nothing)


def _scratch(owner: Any) -> Any:
    """``owner``'s Hyperscan scratch space for this thread (scans may not share one)."""
    scratch = getattr(owner._local, "scratch", None)
    if scratch is None:
        scratch = hyperscan.Scratch(owner.database)
        owner._local.scratch = scratch
    return scratch


class Ceiling:
    """``of(folded)``: the most each category could score on a page, or None if it cannot tell."""

    def __init__(
        self,
        phrases: Iterable[CeilingPhrase],
        fold_ascii: bytes,
        cap: int,
        folds_to_nothing: Callable[[str], bool],
    ) -> None:
        if hyperscan is None:
            raise RuntimeError("hyperscan is not installed")
        self.cap = cap
        self.fold_ascii = fold_ascii
        self.phrases = [p for p in phrases if p.weight > 0 and p.words]
        words: dict[str, int] = {}
        for phrase in self.phrases:
            for word in phrase.words:
                words.setdefault(word, len(words))
        self._words = list(words)
        self._counted = [w not in COMMON for w in self._words]
        # For each word, the phrases it is part of.
        self._phrases_of: list[list[int]] = [[] for _ in self._words]
        for index, phrase in enumerate(self.phrases):
            for word in set(phrase.words):
                self._phrases_of[words[word]].append(index)
        self._phrase_words = [tuple(words[w] for w in p.words) for p in self.phrases]
        self._references = _references_for(folds_to_nothing)
        self.database = hyperscan.Database()
        if self._words:
            # Pure literals (Hyperscan's literal compiler: many GB/s): each word between
            # spaces, as it stands in the folded text.
            self.database.compile(
                expressions=[f" {w} ".encode() for w in self._words],
                ids=list(range(len(self._words))),
                elements=len(self._words),
                flags=[0 if c else hyperscan.HS_FLAG_SINGLEMATCH for c in self._counted],
                literal=True,
            )
        self._local = threading.local()

    def of(self, folded: bytes) -> dict[str, int] | None:
        """The ceiling per category (categories that could score nothing left out), or None
        when the page holds a reference to a letter or digit, or a NUL.

        ``folded``: the page with its non-ASCII runs folded (``phrases.fold``'s first step).
        """
        if b"\x00" in folded or self._references.any_letter(folded):
            return None
        ceiling: dict[str, int] = {}
        if not self._words:
            return ceiling
        # Then as fold does: ASCII letters and digits folded, anything else a space; so a
        # word of the text stands between spaces here too (markup around it becomes spaces
        # and letters of its own).
        text = b" " + folded.translate(self.fold_ascii) + b" "
        counts = [0] * len(self._words)

        def matched(ident: int, start: int, end: int, flags: int, context: Any) -> None:
            counts[ident] += 1

        self.database.scan(text, match_event_handler=matched, scratch=_scratch(self))
        seen: set[int] = set()
        for word, count in enumerate(counts):
            if not count:
                continue
            for index in self._phrases_of[word]:
                if index in seen:
                    continue
                seen.add(index)
                occurs = self._occurrences(self._phrase_words[index], counts)
                if occurs:
                    phrase = self.phrases[index]
                    ceiling[phrase.category] = (
                        ceiling.get(phrase.category, 0) + phrase.weight * occurs
                    )
        return ceiling

    def _occurrences(self, words: Sequence[int], counts: list[int]) -> int:
        """At most how often a phrase occurs (capped): its rarest counted word's count, the
        cap when it has only common words, 0 when a word is missing."""
        most = self.cap
        for word in words:
            if not counts[word]:
                return 0
            if self._counted[word]:
                most = min(most, counts[word])
        return most
