"""The weighted phrase lists, compiled into one automaton, and a page's scores.

The file (``config/content-phrases.yaml``) gives, per category, phrases with
positive or negative weights and exception phrases, in any of the languages
the concerning-terms list covers. A page's score in a category is the sum of
the weights of the occurrences of its phrases (as e2guardian counts its
"naughtiness", but each phrase at most ``POSITIVE_CAP`` times), so a page that
says "porn" once in passing scores little and one made of such phrases a
lot; a negative phrase ("sex education", "breast cancer") pulls it down. An
exception phrase that occurs sets the category's score to nothing for that page.

Matching folds text much as ``proxy.incidents.searchterms`` does for
searches — case, accents, look-alike letters and digits (``p0rn`` = ``porn``)
— but by whole words: the text becomes its words joined by single spaces,
and a phrase matches only between spaces, so "sex" never matches "Essex" and
"rape" never matches "grape". Repeated letters are not collapsed on pages
(a search box's "pornnn" is a trick; a page's is a typo). Everything is done
with C-implemented steps (``bytes.translate``, ``split``, an Aho-Corasick
automaton from pyahocorasick) because a 100 KB page must score in a couple
of milliseconds on the request path (see ``fold``).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import ahocorasick
from pydantic import BaseModel, ConfigDict, StringConstraints

from proxy.incidents.searchterms import LOOKALIKE
from proxy.memo import short_keys
from proxy.yamlfile import ConfigError, Problem, load_yaml, validate

PHRASES_FILE = "content-phrases.yaml"
MIN_PHRASE_CHARS = 3
MAX_WEIGHT = 1000

# The categories a phrase file may score, in plain words for block pages and the console.
CATEGORY_WORDS = {
    "adult": "adult content",
    "self_harm": "self-harm or suicide",
    "extremism": "extremism or terrorism",
    "drugs": "drugs",
    "gambling": "gambling",
    "weapons": "weapons",
    "bullying": "bullying or hate",
}

# Marks and characters a reader never sees, removed so the letters either side join: accents
# and other combining marks, and the invisible format characters (zero-width spaces and
# joiners, the soft hyphen, direction marks and embeddings, word joiners, fillers, tags),
# with which "p\u00adorn" shows "porn".
_COMBINING = re.compile(r"[\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f"
                        r"\u0670\u06d6-\u06ed\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f"
                        r"\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0\ufff9-\ufffb"
                        r"\U000e0000-\U000e007f]+")  # fmt: skip
_NOT_WORD = re.compile(r"[\W_]+")
# Look-alike letters outside ASCII (Cyrillic, Greek, ł, ø): mapped inside the non-ASCII runs.
_WIDE_LOOKALIKE = {code: to for code, to in LOOKALIKE.items() if code > 0x7F}


def _ascii_table() -> bytes:
    """ASCII folded in one ``bytes.translate``: lower case, digits as letters, the rest a space.

    Only letters and digits map to letters: on a page "videos!!" is punctuation, not
    "videosii" (a search box is another matter: ``searchterms`` maps symbols too).
    """
    table = bytearray(range(256))
    for code in range(0x80):
        char = chr(code).lower()
        table[code] = ord(char) if char.isalnum() else 0x20
        mapped = LOOKALIKE.get(ord(char))
        if char.isalnum() and isinstance(mapped, str):
            table[code] = ord(mapped)
    return bytes(table)


_ASCII = _ascii_table()
# Control characters a browser shows as nothing (all of C0 but the white space).
INVISIBLE_CONTROLS = "".join(chr(code) for code in range(0x20) if chr(code) not in "\t\n\v\f\r")
# Where two pieces of a page's text meet (``proxy.content.extract``): a space in one reading,
# nothing in the other. The other invisible controls fold to it.
MARK = "\x01"
_MARKED = bytes(
    0x01 if chr(code) in INVISIBLE_CONTROLS else byte for code, byte in enumerate(_ASCII)
)
# How often one phrase counts on a page. e2guardian counts every occurrence, and so a manual
# that says "slots" 26 times scored as a casino; a page of the kind is made of many phrases,
# not one repeated. A negative phrase counts less often still, so a page cannot launder itself
# by repeating "safeguarding".
POSITIVE_CAP = 5
NEGATIVE_CAP = 3


# Short runs repeat (a page's no-break spaces, dashes and quotes, a language's common
# words): kept, up to 8,192 of them. A long run (a paragraph of Chinese has no ASCII space
# in it) is folded every time and never kept, so the cache stays under a few megabytes.
@short_keys(maxsize=8192, longest=64)
def _fold_wide(run: str) -> bytes:
    """A run of non-ASCII characters folded, as UTF-8."""
    folded = unicodedata.normalize("NFKC", run).casefold()
    folded = _COMBINING.sub("", unicodedata.normalize("NFKD", folded))
    return _NOT_WORD.sub(" ", folded.translate(_WIDE_LOOKALIKE)).encode("utf-8")


def _fold_error(error: UnicodeError) -> tuple[bytes, int]:
    """The ASCII encoder's error handler: each run of non-ASCII characters, folded."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return _fold_wide(error.object[error.start : error.end]), error.end


_FOLD_ERRORS = "schoolgate-fold"
codecs.register_error(_FOLD_ERRORS, _fold_error)


def fold(text: str) -> str:
    """Text as matched: folded words joined by single spaces, with a space at each end.

    The non-ASCII runs (rare in most pages) get Unicode's treatment — NFKC, case folding,
    accents dropped, look-alikes mapped, punctuation made a space — and then the whole text
    is folded as bytes: UTF-8 leaves every ASCII byte alone in multi-byte characters, so
    one ``bytes.translate`` and ``split`` do the rest. The runs are found by the ASCII
    encoder itself, which calls the error handler above once per run of characters it
    cannot encode (and copies ASCII at C speed): a regular expression looking for them
    took 0.5-1 ms of a 100 KB page's 1 ms fold (``python -m bench.content``); the whole
    fold now takes about 0.55 ms. ``str.translate`` with a dict took 6 ms and a
    per-character loop 30 ms.
    """
    words = text.encode("ascii", _FOLD_ERRORS).translate(_ASCII).split()
    return (b" " + b" ".join(words) + b" ").decode("utf-8")


# Letters (and digits) as one byte, the rest as they are: for finding marks between letters.
_LETTERS_AS_A = bytes(0x61 if code not in (0x20, 0x01) else code for code in range(256))


def _between_letters(folded: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """``folded`` with each run of marks made one (it reads the same both ways), and where the
    marks stand between two letters ("foo\x01s"): the only places a page's two readings
    differ. C-speed ``replace``, ``translate`` and ``find`` rather than a regular expression,
    which costs a millisecond a page going through the thousands of marks."""
    while b"\x01\x01" in folded:
        folded = folded.replace(b"\x01\x01", b"\x01")
    letters = folded.translate(_LETTERS_AS_A)
    runs: list[tuple[int, int]] = []
    found = letters.find(b"a\x01a")
    while found >= 0:
        runs.append((found + 1, found + 2))
        found = letters.find(b"a\x01a", found + 2)
    return folded, runs


def _words_of(folded: bytes, mark: bytes) -> str:
    """Folded bytes as matched: words joined by single spaces, each mark read as ``mark``."""
    return (b" " + b" ".join(folded.replace(b"\x01", mark).split()) + b" ").decode("utf-8")


def _around(folded: bytes, runs: list[tuple[int, int]], words: int) -> list[tuple[int, int]]:
    """Byte ranges of ``folded`` holding the word of each run and ``words`` whole words
    either side of it, overlapping ones merged; each starts and ends where a word does."""
    ranges: list[tuple[int, int]] = []
    for run_start, run_end in runs:
        # The run's own word first, then ``words`` more each side.
        start = folded.rfind(b" ", 0, run_start) + 1
        found = folded.find(b" ", run_end)
        end = len(folded) if found < 0 else found
        for _ in range(words):
            while start > 0 and folded[start - 1] == 0x20:
                start -= 1
            start = folded.rfind(b" ", 0, start) + 1
            while end < len(folded) and folded[end] == 0x20:
                end += 1
            found = folded.find(b" ", end)
            end = len(folded) if found < 0 else found
        if ranges and start <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
        else:
            ranges.append((start, end))
    return ranges


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """A phrase that counted on a page: its category, weight and how often it occurred."""

    category: str
    phrase: str
    weight: int
    count: int


@dataclass(frozen=True, slots=True)
class Scores:
    """A page's score per category and the phrases that made it (most weight first)."""

    by_category: dict[str, int]
    hits: tuple[PhraseHit, ...]
    excepted: frozenset[str] = field(default_factory=frozenset)

    def crossed(self, thresholds: dict[str, int]) -> list[tuple[str, int]]:
        """The categories whose score reaches their threshold, highest score first."""
        over = [
            (category, score)
            for category, score in self.by_category.items()
            if category in thresholds and score >= thresholds[category]
        ]
        return sorted(over, key=lambda item: -item[1])

    def phrases_for(self, category: str) -> list[PhraseHit]:
        return [hit for hit in self.hits if hit.category == category]


NO_SCORES = Scores({}, ())


@dataclass(frozen=True, slots=True)
class _Entry:
    category: str
    phrase: str
    weight: int  # None-like 0 never occurs: exceptions are kept apart
    exception: bool


class PhraseScorer:
    """The compiled phrase lists; ``score(text)`` gives a page's ``Scores``."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.count = len(entries)
        self._automaton: ahocorasick.Automaton | None = None
        by_key: dict[str, list[_Entry]] = {}
        for entry in entries:
            by_key.setdefault(" " + fold(entry.phrase).strip() + " ", []).append(entry)
        # The most words in one phrase, less one: how far a phrase reaches from a word.
        self._most_words = max((len(key.split()) for key in by_key), default=1)
        if by_key:
            automaton = ahocorasick.Automaton()
            for key, found in by_key.items():
                automaton.add_word(key, tuple(found))
            automaton.make_automaton()
            self._automaton = automaton

    def score(self, text: str) -> Scores:
        """Scores of ``text`` (already extracted from its markup) in every category."""
        if self._automaton is None or not text:
            return NO_SCORES
        return self.scores_of(self.counts(fold(text)))

    def score_marked(self, marked: str) -> Scores:
        """Scores of a page's text with ``MARK`` where two of its pieces meet, read with a
        space there and with nothing: each phrase counts as often as the reading that finds
        it most often.

        The readings differ only around runs of letters with marks inside them ("foo|s"),
        a few on most pages: the text is folded once and matched with a space at each mark,
        and only the words around those runs are matched both ways, so the second reading
        costs a fraction of the first. A phrase within ``_most_words`` words of a run is in
        the range around it; farther ones are the same in both readings.
        """
        if self._automaton is None or not marked:
            return NO_SCORES
        folded, runs = _between_letters(marked.encode("ascii", _FOLD_ERRORS).translate(_MARKED))
        counts = self.counts(_words_of(folded, b" "))
        if runs:
            more: Counter[tuple[_Entry, ...]] = Counter()
            for start, end in _around(folded, runs, self._most_words):
                near = folded[start:end]
                more.update(self.counts(_words_of(near, b"")))
                more.subtract(self.counts(_words_of(near, b" ")))
            for found, extra in more.items():
                if extra > 0:  # found more often with nothing at the marks
                    counts[found] += extra
        return self.scores_of(counts)

    def counts(self, folded: str, after: int = 0) -> Counter[tuple[_Entry, ...]]:
        """How often each phrase occurs in ``folded`` text, counting matches that end past
        ``after`` (what a stream has already counted lies before it)."""
        if self._automaton is None:
            return Counter()
        # Phrases end on a space, and the next word starts on that same space: each match
        # consumes no separator of its own, so adjacent phrases both count.
        return Counter(found for end, found in self._automaton.iter(folded) if end >= after)

    def scores_of(self, counts: Counter[tuple[_Entry, ...]]) -> Scores:
        """The scores that phrase counts make, with the caps and exceptions applied."""
        totals: dict[str, int] = {}
        hits: list[PhraseHit] = []
        excepted: set[str] = set()
        for found, count in counts.items():
            for entry in found:
                if entry.exception:
                    excepted.add(entry.category)
                    continue
                counted = min(count, NEGATIVE_CAP if entry.weight < 0 else POSITIVE_CAP)
                totals[entry.category] = totals.get(entry.category, 0) + entry.weight * counted
                hits.append(PhraseHit(entry.category, entry.phrase, entry.weight, counted))
        for category in excepted:
            totals[category] = 0
        hits = [hit for hit in hits if hit.category not in excepted]
        hits.sort(key=lambda hit: -abs(hit.weight * hit.count))
        return Scores(totals, tuple(hits), frozenset(excepted))


_LAST_SEPARATOR = re.compile(r"[\W_][^\W_]*\Z")


class RunningScore:
    """Scores text that arrives in pieces (a streamed page, a chatbot's answer).

    A piece's last word may go on in the next piece, so it waits; the words before it
    are folded together with the end of the text before them (so a phrase split across
    two pieces is found), and only matches that end in the new words are counted. The
    total is what ``score`` gives the whole text; the cost is that of the new text alone.
    """

    TAIL = 256  # characters kept from the text before: longer than any phrase
    LONGEST_WORD = 1024  # an unfinished word kept past this is kept by its end only

    def __init__(self, scorer: PhraseScorer) -> None:
        self.scorer = scorer
        self.counts: Counter[tuple[_Entry, ...]] = Counter()
        self._tail = ""
        self._pending = ""
        self.scores = NO_SCORES

    def feed(self, text: str, *, final: bool = False) -> Scores:
        """Add the next piece (``final`` for the last) and return the scores so far."""
        if self.add(text, final=final):
            self.scores = self.scorer.scores_of(self.counts)
        return self.scores

    def add(self, text: str, *, final: bool = False) -> bool:
        """Count the phrases the next piece completes; whether any text was counted."""
        joined = self._pending + text
        if final:
            complete, self._pending = joined, ""
        else:
            seam = _LAST_SEPARATOR.search(joined)
            cut = seam.start() + 1 if seam else 0
            complete, self._pending = joined[:cut], joined[cut:]
            if len(self._pending) > self.LONGEST_WORD:
                # A word this long is no phrase's: keep its end only, so a text with no
                # separator in it (a bomb of one letter) is neither held nor copied whole.
                self._pending = self._pending[-self.LONGEST_WORD :]
        if not complete:
            return False
        seen = len(fold(self._tail).rstrip()) + 1 if self._tail else 0
        self.counts += self.scorer.counts(fold(self._tail + complete), after=seen)
        self._tail = (self._tail + complete)[-self.TAIL :]
        return True


class RunningReadings:
    """Text that arrives in pieces, read more than one way (a streamed page's markup with a
    space and with nothing in its place): each phrase counts as often as the reading that
    finds it most often, as ``PhraseScorer.score_marked`` counts a held page."""

    def __init__(self, scorer: PhraseScorer, ways: int) -> None:
        self.scorer = scorer
        self.readings = [RunningScore(scorer) for _ in range(ways)]
        self.scores = NO_SCORES

    def feed(self, texts: Sequence[str], *, final: bool = False) -> Scores:
        """Add the next piece of each reading (``final`` for the last); the scores so far."""
        counted = [
            reading.add(text, final=final)
            for reading, text in zip(self.readings, texts, strict=True)
        ]
        if not any(counted):
            return self.scores
        counts: Counter[tuple[_Entry, ...]] = Counter()
        for reading in self.readings:
            counts |= reading.counts
        self.scores = self.scorer.scores_of(counts)
        return self.scores


# ---- the file ------------------------------------------------------------------------------

Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$")]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Phrase = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CategoryPhrases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phrases: dict[Language, dict[Phrase, int]] = {}
    exceptions: dict[Language, list[Phrase]] = {}


class PhrasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[Key, CategoryPhrases]


def load_phrases(path: Path) -> PhraseScorer:
    """Load the phrase file; raises ``ConfigError`` with ``file:line`` per problem."""
    data, positions = load_yaml(path)
    spec = validate(PhrasesFile, data, positions)
    problems: list[Problem] = []
    entries: list[_Entry] = []

    def check(where: tuple[str | int, ...], phrase: str) -> None:
        if len(fold(phrase).strip()) < MIN_PHRASE_CHARS:
            problems.append(
                positions.problem(
                    where,
                    f"phrase {phrase!r} is too short to match safely "
                    f"(at least {MIN_PHRASE_CHARS} letters)",
                )
            )

    for category, lists in spec.categories.items():
        if category not in CATEGORY_WORDS:
            known = ", ".join(CATEGORY_WORDS)
            problems.append(
                positions.problem(
                    ("categories", category), f"unknown category {category!r} (one of {known})"
                )
            )
            continue
        for language, phrases in lists.phrases.items():
            for phrase, weight in phrases.items():
                where = ("categories", category, "phrases", language, phrase)
                check(where, phrase)
                if weight == 0 or abs(weight) > MAX_WEIGHT:
                    problems.append(
                        positions.problem(
                            where,
                            f"phrase {phrase!r}: the weight must be a whole number from "
                            f"-{MAX_WEIGHT} to {MAX_WEIGHT}, not 0",
                        )
                    )
                entries.append(_Entry(category, phrase, weight, exception=False))
        for language, words in lists.exceptions.items():
            for i, phrase in enumerate(words):
                check(("categories", category, "exceptions", language, i), phrase)
                entries.append(_Entry(category, phrase, 0, exception=True))
    if problems:
        raise ConfigError(problems)
    return PhraseScorer(entries)
